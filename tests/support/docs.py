"""The project's documents as tests read them: the fenced code blocks under a markdown heading,
which the documentation tests run as a person would paste them."""

import re
from collections.abc import Iterator
from pathlib import Path

from tests.support import ROOT

README = ROOT / "README.md"
DESIGN = ROOT / "docs" / "DESIGN.md"
HEADING = re.compile(r"(#{1,6})\s+(.*?)\s*")
FENCE = re.compile(r"(```|~~~)\s*(\S*)")


def fenced(lines: list[str]) -> Iterator[tuple[str, str | None, bool]]:
    """Each line, the info string of the fenced block it is in (None outside any), and whether
    it is one of that block's fences. A `#` line inside a block is code, not a heading."""
    fence = info = None
    for line in lines:
        if fence is None and (opened := FENCE.match(line)):
            fence, info = opened.groups()
            yield line, info, True
        elif fence is not None and line.strip() == fence:
            yield line, info, True
            fence = info = None
        else:
            yield line, info, False


def section(path: Path, heading: str | None = None) -> list[str]:
    """The lines under `heading` (its exact text, without the #s) up to the next heading of the
    same or a higher level; the whole document when None."""
    lines = path.read_text().splitlines()
    if heading is None:
        return lines
    found: list[str] | None = None
    level = 0
    for line, info, _ in fenced(lines):
        title = HEADING.fullmatch(line) if info is None else None
        if title and found is not None and len(title.group(1)) <= level:
            break
        if found is not None:
            found.append(line)
        elif title and title.group(2) == heading:
            found, level = [], len(title.group(1))
    assert found is not None, f"{path.name} has no heading {heading!r}"
    return found


def code_blocks(path: Path, heading: str | None = None, lang: str = "sh") -> list[str]:
    """The ```lang blocks under `heading` (see section), in order: each one's lines, every line
    ended by a newline, without the fences."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line, info, is_fence in fenced(section(path, heading)):
        if info != lang:
            continue
        if is_fence and current is None:  # it opens
            current = []
        elif is_fence:  # it closes
            blocks.append("".join(f"{text}\n" for text in current))
            current = None
        else:
            current.append(line)
    return blocks
