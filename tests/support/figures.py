"""What the fault tests report to the run's summary: each finished run's figures (a
faults.verdict.Figures or faults.live_traffic.LiveFigures), collected here and printed by the
root conftest's terminal-summary hook."""

FIGURES: list = []  # every finished run, for the session summary
