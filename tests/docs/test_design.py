"""docs/DESIGN.md cites tests as its evidence: every test it names exists."""

import re

from tests.support import ROOT
from tests.support.docs import DESIGN


def design_test_names() -> list[tuple[str, str]]:
    """(file, test) for every test docs/DESIGN.md names: `tests/x.py::name`, then `::other` for
    more of the same file."""
    design = DESIGN.read_text()
    named, current = [], None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", design):
        current = path or current
        if name:
            named.append((current, name))
    return named


def test_every_test_the_design_names_exists():
    names = design_test_names()
    assert len(names) > 20
    for path, name in names:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"
