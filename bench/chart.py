"""The chart of a run: Postgres reads per minute and bytes per poll, naive vs conditional;
latency CDF; the 200 path versus memberships."""

from pathlib import Path

import numpy as np

from bench.report import P99_TARGET_MS, Run, rate
from bench.tables import fmt


def write_chart(run: Run, path: Path) -> None:
    """Postgres reads/min and bytes per poll over time, naive vs conditional; latency CDF; scaling."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (reads_ax, bytes_ax), (cdf_ax, scale_ax) = axes
    for p in run.passes:
        times = [t for t, _ in p.pg_timeline]
        calls = [c for _, c in p.pg_timeline]
        per_min = [60 * (c1 - c0) / (t1 - t0) for t0, t1, c0, c1
                   in zip(times, times[1:], calls, calls[1:], strict=False) if t1 > t0]
        label = f"{p.mode} ({fmt(rate(p), 0)} polls/s)"
        reads_ax.plot(times[1:len(per_min) + 1], per_min, label=label, marker=".")
        # Per poll, not per minute: the faster mode serves more polls a minute, so its bytes per
        # minute look worse while every one of its polls costs fewer bytes.
        seconds = [(t, b["bytes"] / b["polls"]) for t, b in enumerate(p.timeline[:-1]) if b["polls"]]
        bytes_ax.plot([t for t, _ in seconds], [per_poll for _, per_poll in seconds], label=label)
        lat = np.sort(np.asarray(p.latency_ms))
        if len(lat):
            cdf_ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=label)
    reads_ax.set(title="Postgres unread-count queries per minute (pg_stat_statements)",
                 xlabel="seconds into the measurement", ylabel="queries/min", yscale="symlog")
    bytes_ax.set(title="Bytes on the wire per poll, request + response (client sockets)",
                 xlabel="seconds into the measurement", ylabel="bytes per poll", ylim=(0, None))
    cdf_ax.set(title="Poll latency CDF (from the scheduled time)", xlabel="ms", ylabel="share of polls",
               xscale="log")
    cdf_ax.axvline(P99_TARGET_MS, color="grey", linestyle=":", label="50 ms")
    cdf_ax.axhline(0.99, color="grey", linestyle="--", linewidth=0.8)
    if run.scaling is not None:
        sc = run.scaling
        probes = [p for p in sc.probes if p.unread is not None]  # k memberships, news in 10
        for size in sc.sizes:
            ks = [p.memberships for p in probes]
            scale_ax.plot(ks, [sc.http[size, p.label].p99 for p in probes], marker="o",
                          label=f"200 path p99, {size:,} msgs")
            scale_ax.plot(ks, [sc.query[size, p.label].p99 for p in probes], marker="x",
                          linestyle="--", label=f"query p99, {size:,} msgs")
        scale_ax.axhline(5, color="grey", linestyle=":", label="5 ms")
        scale_ax.set(title="200 path versus memberships", xlabel="memberships", ylabel="ms",
                     xscale="log", yscale="log")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.suptitle(run.command, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
