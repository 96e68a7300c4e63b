"""The Prometheus alerting rules. Each alert is a measured quantity (a query of ops.queries, which
the tests prove returns data from a real service) and the threshold it must not cross for a while.
Their promtool unit tests, each alert firing and not, are ops/prometheus/counts-alerts.test.yml.
"""

from dataclasses import dataclass

from ops import queries as q


@dataclass(frozen=True)
class Alert:
    """One alerting rule: `quantity` compared with `threshold` for `duration`."""

    name: str
    quantity: str
    comparison: str
    threshold: float
    duration: str
    severity: str
    summary: str
    description: str

    @property
    def expr(self) -> str:
        """The rule's expression."""
        return f"({self.quantity}) {self.comparison} {self.threshold:g}"


ALERTS = [
    Alert("CountsPushSuccessRateLow", q.PUSH_SUCCESS.replace("[5m]", "[10m]"), "<", 0.9, "10m",
          "warning", "Push success rate for {{ $labels.provider }} is below 90 %",
          "Over 10 minutes only {{ $value | humanizePercentage }} of the pushes tried on live "
          "devices were accepted by {{ $labels.provider }}: credentials, the provider's status, "
          "and the dispatchers' logs (docs/push.md)."),
    Alert("CountsPushQueueStuck", q.QUEUE_AGE, ">", 60, "5m", "critical",
          "The oldest queued push waits for more than a minute",
          "The oldest push job is {{ $value | humanizeDuration }} old and has been over a minute "
          "for 5 minutes: no dispatcher runs, or they cannot keep up."),
    Alert("CountsHttp5xx", q.ERROR_SHARE, ">", 0.01, "5m", "critical",
          "More than 1 % of the API's answers are 5xx",
          "{{ $value | humanizePercentage }} of answers were 5xx over 5 minutes: /readyz on "
          "the operators' address names the dependency down."),
    Alert("CountsRedisErrors", q.REDIS_ERRORS, ">", 0.1, "5m", "warning",
          "Redis calls are failing",
          "{{ $value }} Redis calls a second failed over 5 minutes: the service answers from "
          "Postgres (slower, more reads) and bumps wait in the outbox until Redis answers."),
    Alert("CountsReplicaLagging", q.REPLICA_LAGGING_SHARE.replace("[5m]", "[10m]"), ">", 0.25,
          "10m", "warning", "Read replicas lag behind the writes",
          "{{ $value | humanizePercentage }} of the reads a replica could have answered went to "
          "the primary because no replica had replayed the write yet."),
]


def rules() -> dict:
    """The rule file's content."""
    return {"groups": [{"name": "counts", "rules": [
        {"alert": alert.name, "expr": alert.expr, "for": alert.duration,
         "labels": {"severity": alert.severity},
         "annotations": {"summary": alert.summary, "description": alert.description}}
        for alert in ALERTS]}]}
