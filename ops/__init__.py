"""What operators import into Grafana and Prometheus, generated here so that the dashboard, the
alert rules and the tests that prove them against a real Prometheus share one set of queries.

- `queries`: the PromQL, named: the seed's five metrics and the service's health.
- `dashboard`: the Grafana dashboard (ops/grafana/counts.json).
- `alerts`: the Prometheus alerting rules (ops/prometheus/counts-alerts.yml); their promtool unit
  tests are written by hand beside them (counts-alerts.test.yml).

`python -m ops` writes both files; `python -m ops --check` fails if the committed ones differ.
"""
