"""Debian's real Prometheus (`apt-get install prometheus`: make test installs it when missing), as
a process of the test's own: a free port, a temporary config and TSDB directory, scraping fast.
Never the system's service: nothing is read from /etc/prometheus or written outside tmp."""

import json
import math
import subprocess
from pathlib import Path

import requests

from tests.support.services import free_port, wait_until

BINARY = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
SCRAPE_INTERVAL = "250ms"  # samples every quarter second: rates over 5m have data within a second


class Prometheus:
    """A Prometheus scraping `jobs` ({job name: [host:port, ...]}) with `rule_files` loaded."""

    def __init__(self, directory: Path, jobs: dict[str, list[str]], rule_files: tuple[Path, ...] = ()):
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                       "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in jobs.items()]}
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "Prometheus":
        """Start it; return once it says it is ready."""
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps(self.config))  # JSON is YAML
        self._log = open(self.dir / "prometheus.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [BINARY, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self._log, stderr=self._log)
        wait_until(self.ready, timeout=30, what="prometheus to be ready")
        return self

    def ready(self) -> bool:
        """Whether it answers /-/ready; fails at once if it exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n"
                                 + (self.dir / "prometheus.log").read_text()[-3000:])
        return requests.get(f"{self.url}/-/ready", timeout=1).ok

    def query(self, expression: str) -> list[dict]:
        """An instant query's result vector; fails on a query Prometheus refuses."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5)
        body = answer.json()
        assert body["status"] == "success", f"{expression}: {body.get('error')}"
        return body["data"]["result"]

    def values(self, expression: str) -> list[float]:
        """The finite values an instant query returns (NaN: a ratio of nothing, left out)."""
        return [value for sample in self.query(expression)
                if math.isfinite(value := float(sample["value"][1]))]

    def rules(self) -> list[dict]:
        """The loaded rules, with their state and last evaluation's health."""
        groups = requests.get(f"{self.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def stop(self) -> None:
        """SIGTERM it and wait."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Prometheus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """promtool with these arguments, its output captured."""
    return subprocess.run([PROMTOOL, *args], check=False, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
