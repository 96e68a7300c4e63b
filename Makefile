# Two commands: `make run` (a running service on 127.0.0.1:8000) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := .data

.PHONY: help install run test lint stop-services

help:
	@echo "make run            the service on 127.0.0.1:8000 (operators: :8002) and a push dispatcher, until Ctrl-C"
	@echo "make test           lint, the JS client's tests, then the whole Python suite"
	@echo "make lint           ruff, mypy and the import-linter layers"
	@echo "make js             the JS client's tests alone (clients/js)"
	@echo "make bench          the benchmarks: bench/RESULTS.md (BENCH_ARGS='...' for flags)"
	@echo "make install        the venv (.venv) and the Python packages"
	@echo "make stop-services  stop the embedded Postgres and Redis of make run"
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Reinstalled whenever a requirements file changes.
$(BIN)/.installed: requirements.txt tests/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

install: $(BIN)/.installed

# The service on 127.0.0.1:8000 (and its operators' address on :8002) with one push dispatcher,
# until Ctrl-C: dev/run.py says what it uses and what it writes (.env).
run: install
	$(BIN)/python -m dev.run

# The Cluster and Sentinel tests start redis-server processes of Redis 7+ (a script flag they
# need) and join them with redis-cli: Debian's redis-server package, installed when missing.
.PHONY: redis-tools
redis-tools:
	@command -v redis-cli >/dev/null && redis-server --version | grep -q ' v=[7-9]' || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

# The JS client's browser tests drive Debian's chromium (playwright-core): apt installs it when missing.
.PHONY: browser
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# tests/ops runs Debian's prometheus and promtool (a process of its own on a free port): apt
# installs them when missing, without recommends, and the system service apt may start is
# stopped and disabled at once (the tests never use it).
.PHONY: prometheus
prometheus:
	@test -x /usr/bin/prometheus -a -x /usr/bin/promtool || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
		prometheus >/dev/null; $(SUDO) systemctl disable --now prometheus >/dev/null 2>&1 || \
		$(SUDO) service prometheus stop >/dev/null 2>&1 || true; }

# The JS client, clients/js (@counts/client): npm ci from its lockfile (again whenever the lockfile
# changes), then typecheck, unit tests, size budget, build, the API types against the service's
# /openapi.json, and the contract, React Native and browser tests against the real service
# (tests/support/js_server.py, run with this venv's Python, on the same Postgres and Redis as `test`).
.PHONY: js
JS := clients/js
$(JS)/node_modules/.installed: $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js: install redis-tools browser $(JS)/node_modules/.installed
	@set -e; set -a; eval "$$($(BIN)/python -m dev.services env --data-dir $(DATA) --prefer-local)"; set +a; \
	cd $(JS) && COUNTS_TEST_PYTHON="$(abspath $(BIN))/python" COUNTS_TEST_ADMIN_URL="$$DATABASE_URL" \
	COUNTS_TEST_REDIS_URL="$${REDIS_URL%/*}/13" npm test

# Against the machine's Postgres and Redis (started if down), else embedded ones. Tests create
# their own database and use Redis db 13 only.
test: lint redis-tools browser prometheus js
	@set -e; set -a; eval "$$($(BIN)/python -m dev.services env --data-dir $(DATA) --prefer-local)"; set +a; \
	COUNTS_TEST_ADMIN_URL="$$DATABASE_URL" COUNTS_TEST_REDIS_URL="$${REDIS_URL%/*}/13" SE_OFFLINE=true \
	$(BIN)/python -m pytest -n 2 --dist loadfile

# ruff, the types of counts/ (mypy), and the layers of counts/ (import-linter: pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

stop-services:
	$(BIN)/python -m dev.services stop --data-dir $(DATA)

# Benchmarks of issue #3 against a private Postgres and Redis (started and stopped by the run):
# writes bench/RESULTS.md and bench/results.png. Scale it up with e.g.
# make bench BENCH_ARGS='--duration 120 --users 20000' (python -m bench.run --help lists the flags).
.PHONY: bench
BENCH_ARGS ?=
$(BIN)/.bench-installed: $(BIN)/.installed bench/requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	@# wrk drives the hot-path benchmark; it is a Debian package, not a Python one.
	command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	touch $@

bench: $(BIN)/.bench-installed
	MAKE_BENCH=1 $(BIN)/python -m bench.run $(BENCH_ARGS)
