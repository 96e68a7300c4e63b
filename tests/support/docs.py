"""The project's documents as tests read them: the fenced code blocks under a markdown heading,
and a directory to paste them into, as a person would after `make run` installed everything."""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from dev.services import _pg_bin
from tests.support import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
DESIGN = DOCS / "DESIGN.md"
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


class Checkout:
    """A directory that looks like the repository after `make run`'s install (`.venv`, `app.py`,
    `examples/`), where a session runs exactly as a person pastes it: `.venv/bin/flask --app
    app`, `examples/supabase-chat/...` and `python -m tests...`/`dev...` resolve as they do in a
    clone. What it leaves (bob.etag, .data/) stays in the test's own directory."""

    def __init__(self, path: Path, examples: Path = ROOT / "examples"):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        (path / ".venv").symlink_to(Path(sys.executable).parent.parent)
        (path / "app.py").symlink_to(ROOT / "app.py")
        (path / "examples").symlink_to(examples)
        # psql as a person's PATH has it (Debian puts it in /usr/bin; the embedded Postgres in
        # its package's bin): the sessions call it by name.
        self.bin = path / ".bin"
        self.bin.mkdir()
        if shutil.which("psql") is None:
            (self.bin / "psql").symlink_to(_pg_bin() / "psql")

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """`env` on top of this process's, with the repository importable and psql on PATH."""
        merged = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        merged["PATH"] = f"{self.bin}{os.pathsep}{merged.get('PATH', '')}"
        return merged

    def run(self, script: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
        """`script` in bash as a pasted session runs, except that it stops at the first failure
        (not pipefail: a person's shell has none, and `curl | grep -m 1` ends curl on purpose)."""
        return subprocess.run(["bash", "-eu", "-c", script], cwd=self.path,
                              env=self.environment(env), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def exported(self, script: str, env: dict[str, str]) -> dict[str, str]:
        """The variables `script` exports (an `eval "$(... env)"` line), as a shell would have them."""
        done = self.run(script + "\nenv -0\n", env)
        assert done.returncode == 0, done.stderr
        before = self.environment(env)
        pairs = (item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
        shells_own = ("_", "PWD", "OLDPWD", "SHLVL")
        return {name: value for name, value in pairs
                if before.get(name) != value and name not in shells_own}


def without_make_run(block: str) -> str:
    """A terminal's block up to its closing `make run`, which the test replaces with the service
    `make run` would start (on ports of the test's own)."""
    lines = block.rstrip("\n").split("\n")
    assert lines[-1].startswith("make run"), lines[-1]
    return "\n".join(lines[:-1]) + "\n"
