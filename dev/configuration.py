"""docs/configuration.md, written from the settings' own declarations.

    python -m dev.configuration > docs/configuration.md

A test fails when the committed page and the declarations differ, so a setting cannot be added,
renamed or given a new default without the page saying so.
"""

from dataclasses import is_dataclass
from typing import Any

from counts.push import providers
from counts.settings import SECTIONS, RedisTopology
from counts.settings.parse import declared

INTRO = """# Configuration

Every setting is an environment variable, read once at start-up by `counts/settings/` (the only
code that reads the environment; gunicorn.conf.py, the app, the push worker and the CLI all
start from it). A bad value stops the start with one line naming the variable. `make run`
writes the ones it sets to `.env`, which `flask --app app ...` reads too.

This page is generated from the declarations (`python -m dev.configuration`); a test fails when
the two differ.
"""


def sections() -> list[type]:
    """The service's sections, then each push provider's."""
    return [*SECTIONS, *(module.SETTINGS for module in providers.modules().values())]


def shown(default: Any) -> str:
    """A default as a person would write it in the environment."""
    if default is None or default == ():
        return "none"
    if isinstance(default, RedisTopology):
        return f"`{default.url}`"
    if isinstance(default, tuple):
        return "`" + ",".join(map(str, default)) + "`"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    return f"`{default}`"


def markdown() -> str:
    """The whole page."""
    parts = [INTRO.rstrip()]
    for section in sections():
        assert is_dataclass(section)
        title = (section.__doc__ or section.__name__).strip().splitlines()[0]
        parts.append(f"\n## {section.__name__.removesuffix('Settings')}\n\n{title}\n\n"
                     "| variable | default | meaning |\n|---|---|---|")
        for name, default, doc in declared(section):
            parts.append(f"| `{name}` | {shown(default)} | {doc} |")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
