"""docs/DESIGN.md cites tests as its evidence: every test it names exists, the Python ones by
`tests/x.py::name`, the JS client's by file and quoted title."""

import re

from tests.support import ROOT
from tests.support.docs import DESIGN

JS_TESTS = ROOT / "clients" / "js" / "test"


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


def design_js_test_titles() -> list[tuple[str, str]]:
    """(file, title) for every JS test: in the paragraphs citing `clients/js/test/`,
    `dir/x.test.ts` then the quoted titles after it."""
    paragraphs = DESIGN.read_text().split("\n\n")
    # Titles may wrap across lines.
    text = " ".join(" ".join(p.split()) for p in paragraphs if "`clients/js/test/`" in p)
    named, current = [], None
    for path, title in re.findall(r'`([\w-]+/[\w.-]+\.test\.ts)`|"([^"]+)"', text):
        current = path or current
        if title and current:
            named.append((current, title))
    return named


def test_every_test_the_design_names_exists():
    names = design_test_names()
    assert len(names) > 20
    for path, name in names:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"


def test_every_js_test_the_design_names_exists():
    titles = design_js_test_titles()
    assert len(titles) >= 8
    for path, title in titles:
        assert f'it("{title}"' in (JS_TESTS / path).read_text(), f"{path}: {title}"
