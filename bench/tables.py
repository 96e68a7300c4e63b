"""The report's Markdown pieces and number formats, shared by every section's module."""

from pathlib import Path

import numpy as np


def pct(samples, q: float) -> float:
    """A percentile of samples (nan if none)."""
    return float(np.percentile(samples, q)) if len(samples) else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    """A number with thousands separators (nan as 'n/a')."""
    return "n/a" if value != value else f"{value:,.{digits}f}"  # noqa: PLR0124 - nan check


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def verdict(ok: bool) -> str:
    """Met or not, in words."""
    return "met" if ok else "**not met**"


def profile_lines(title: str, profile: dict | None) -> list[str]:
    """A py-spy summary: each part's share, and the hottest functions."""
    if not profile:
        return []
    if not profile.get("samples"):
        return [f"{title}: no profile ({profile.get('error')}).", ""]
    parts = [[name, f"{share:.1f} %"] for name, share in profile["parts"].items()]
    top = [[f"`{frame}`", f"{share:.1f} %"] for frame, share in profile["self"]]
    own = [[f"`{frame}`", f"{share:.1f} %"] for frame, share in profile.get("inclusive", [])]
    lines = [f"### {title}", "", f"{profile['samples']:,} samples of the GIL-holding thread "
             f"(`{Path(profile['file']).name}` in bench/out/). Each sample is charged to the "
             "innermost library it was in:", "", *table(["part", "share"], parts), "",
             "Hottest functions (self time):", "", *table(["function", "share"], top), ""]
    if own:
        lines += ["The service's own functions, callees included:", "",
                  *table(["function", "share"], own), ""]
    return lines
