# Two commands: `make run` (a running service on 127.0.0.1:8000) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := .data

.PHONY: install run test lint stop-services

# Reinstalled whenever a requirements file changes.
$(BIN)/.installed: requirements.txt tests/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

install: $(BIN)/.installed

# Uses DATABASE_URL/REDIS_URL when set, else embedded Postgres and Redis under .data/. Writes .env
# so that `flask --app app ...` (token, bump, db upgrade) talks to the same services with the same
# JWT secret as the running server.
run: install
	@mkdir -p $(DATA)
	@test -s $(DATA)/jwt-secret || $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))' > $(DATA)/jwt-secret
	@set -e; set -a; eval "$$($(BIN)/python -m counts.devservices env --data-dir $(DATA))"; \
	COUNTS_JWT_SECRET=$${COUNTS_JWT_SECRET:-$$(cat $(DATA)/jwt-secret)}; set +a; \
	printf 'DATABASE_URL=%s\nREDIS_URL=%s\nCOUNTS_JWT_SECRET=%s\n' "$$DATABASE_URL" "$$REDIS_URL" "$$COUNTS_JWT_SECRET" > .env; \
	$(BIN)/flask --app app db upgrade; \
	echo "counts on http://127.0.0.1:8000 (Postgres $$DATABASE_URL, Redis $$REDIS_URL)"; \
	exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# The browser test drives Debian's chromium through chromedriver: apt installs them when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: browser
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
		chromium chromium-driver >/dev/null; }

# Against the machine's Postgres and Redis (started if down), else embedded ones. Tests create
# their own database and use Redis db 13 only.
test: install browser
	$(BIN)/ruff check .
	@set -e; set -a; eval "$$($(BIN)/python -m counts.devservices env --data-dir $(DATA) --prefer-local)"; set +a; \
	COUNTS_TEST_ADMIN_URL="$$DATABASE_URL" COUNTS_TEST_REDIS_URL="$${REDIS_URL%/*}/13" SE_OFFLINE=true \
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

stop-services:
	$(BIN)/python -m counts.devservices stop --data-dir $(DATA)

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
