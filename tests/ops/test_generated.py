"""The committed dashboard and rules are what `python -m ops` makes, and promtool accepts them:
the rules check, and their unit tests (each alert firing and not) pass."""

import json

from ops import __main__ as generator
from ops import alerts, dashboard
from tests.support import ROOT
from tests.support.prometheus import promtool

RULES_DIR = ROOT / "ops" / "prometheus"


def test_the_committed_files_are_the_generators_output():
    stale = [str(path.relative_to(ROOT)) for path, text in generator.generated().items()
             if not path.exists() or path.read_text() != text]
    assert stale == [], f"run `python -m ops`: {stale} differ from the generator's output"
    assert generator.main(["--check"]) == 0


def test_the_dashboard_is_importable_grafana_json():
    model = json.loads(generator.DASHBOARD.read_text())
    assert model["uid"] == "counts" and model["templating"]["list"][0]["type"] == "datasource"
    graphs = [panel for panel in model["panels"] if panel["type"] == "timeseries"]
    assert [t["expr"] for panel in graphs for t in panel["targets"]] == dashboard.expressions()
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
    ids = [panel["id"] for panel in model["panels"]]
    assert len(set(ids)) == len(ids)
    # No two panels overlap on Grafana's 24-column grid.
    cells = [(panel["gridPos"]["x"] + dx, panel["gridPos"]["y"] + dy) for panel in model["panels"]
             for dx in range(panel["gridPos"]["w"]) for dy in range(panel["gridPos"]["h"])]
    assert len(cells) == len(set(cells)) and all(x < 24 for x, _ in cells)


def test_promtool_checks_the_rules_and_passes_their_unit_tests():
    checked = promtool("check", "rules", str(generator.RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in checked.stdout
    tested = promtool("test", "rules", "counts-alerts.test.yml", cwd=RULES_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    text = (RULES_DIR / "counts-alerts.test.yml").read_text()
    for alert in alerts.ALERTS:
        cases = text.split(f"alertname: {alert.name}\n")[1:]
        outcomes = {"fires" if case.lstrip().startswith("exp_alerts:\n") else "quiet" for case in cases}
        assert outcomes == {"fires", "quiet"}, alert.name
