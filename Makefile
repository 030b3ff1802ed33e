# Two commands: `make run` and `make test`. Both build .venv and, unless DATABASE_URL /
# REDIS_URL are set, run against an embedded PostgreSQL and Redis kept under var/; unless
# STRIPE_SECRET_KEY is set, also against localstripe (config/embedded.py starts and stops it;
# `make run` registers SITE_URL's /billing/stripe/webhook/ with it, tests register their own).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DEMO ?= 1
PYTEST_ARGS ?=
SITE_URL ?= http://127.0.0.1:$(PORT)
export PORT DEMO SITE_URL
# `make run` serves plain HTTP on 127.0.0.1: no HTTPS redirect or HSTS, cookies allowed over
# HTTP, and a random SECRET_KEY kept in var/secret_key (the settings refuse the well-known
# development key when DEBUG is false). Set SECURE_HTTPS / SECRET_KEY to override.
run: export SECURE_HTTPS ?= false
run: export SECRET_KEY ?= $(shell test -s var/secret_key || { mkdir -p var && umask 077 && \
	$(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key; }; cat var/secret_key)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install run test test-fast e2e-deps bench bench-gateway bench-billing bench-dashboard bench-products fuzz clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m config.embedded --dir var -- sh -c '\
		$(BIN)/python manage.py migrate --noinput && \
		$(BIN)/python manage.py collectstatic --noinput --verbosity 0 && \
		{ [ "$(DEMO)" = "0" ] || $(BIN)/python manage.py demo_seed --upstream-secret-file var/demo_upstream_secret; } && \
		exec $(BIN)/honcho start --port $(PORT)'

# Debian's Chromium drives the browser tests (Playwright cannot download its own here).
e2e-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: run 'sudo apt-get install chromium' for the browser tests" >&2; fi; }

# Both test targets run pytest inside the same embedded services (var/test).
PYTEST_EMBEDDED := $(BIN)/python -m config.embedded --dir var/test --ephemeral -- $(BIN)/python -m pytest

test: install e2e-deps
	$(PYTEST_EMBEDDED) $(PYTEST_ARGS)

# The edit-test loop: no browser tests (so no Chromium) and none marked slow (real servers,
# processes, benchmarks). `make test` runs everything.
test-fast: install
	$(PYTEST_EMBEDDED) -m "not e2e and not slow" $(PYTEST_ARGS)

# Every bench takes BENCH_QUICK=1: a tiny run that needs neither wrk nor nginx (bench/load.py);
# the test suite runs each bench that way (tests/test_bench_smoke.py).
bench: install
	@[ "$${BENCH_QUICK:-0}" != "0" ] || command -v wrk >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m config.embedded --dir var/bench --ephemeral -- $(BIN)/python bench/hotpath.py

# An upstream called directly, through the gateway and through nginx, at 0 and 100 ms latency;
# plus the metered built-in view and /v1/verify (bench/gateway.py).
bench-gateway: install
	@[ "$${BENCH_QUICK:-0}" != "0" ] || { command -v wrk >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1; } || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null; }
	$(BIN)/python -m config.embedded --dir var/bench --ephemeral -- $(BIN)/python bench/gateway.py

# Month close for 10,000 customers with a month of usage each: seconds and SQL queries per batch.
bench-billing: install
	$(BIN)/python -m config.embedded --dir var/bench --ephemeral -- $(BIN)/python bench/billing_close.py

# /dashboard/ and /portal/ over 10,000 customers and 1,000,000 usage rows: server time and queries.
bench-dashboard: install
	$(BIN)/python -m config.embedded --dir var/bench --ephemeral -- $(BIN)/python bench/dashboard.py

# The slowest input found per product and its CPU time (no server or database needed).
bench-products: install
	$(BIN)/python bench/products_worst_case.py

# A longer schemathesis pass than the one the test suite runs.
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/python -m config.embedded --dir var/test --ephemeral -- \
		$(BIN)/python -m pytest metering/tests/test_schema_fuzz.py

clean:
	rm -rf var/test var/bench .pytest_cache
