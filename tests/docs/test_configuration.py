"""docs/configuration.md is what dev/configuration.py makes of the settings' declarations."""

from dev import configuration
from tests.support.docs import DOCS


def test_the_configuration_page_is_generated_from_the_settings():
    page = (DOCS / "configuration.md").read_text()
    assert page == configuration.markdown(), (
        "docs/configuration.md is stale: .venv/bin/python -m dev.configuration > docs/configuration.md")
    assert "| `COUNTS_JWT_SERVICE_AUDIENCE` |" in page
