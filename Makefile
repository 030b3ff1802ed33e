# Two commands: `make run` and `make test`. Both build .venv and, unless DATABASE_URL /
# REDIS_URL are set, run against an embedded PostgreSQL and Redis kept under var/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DEMO ?= 1
PYTEST_ARGS ?=
SITE_URL ?= http://127.0.0.1:$(PORT)
export PORT DEMO SITE_URL
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install run test e2e-deps bench fuzz clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m config.embedded --dir var -- sh -c '\
		$(BIN)/python manage.py migrate --noinput && \
		$(BIN)/python manage.py collectstatic --noinput --verbosity 0 && \
		{ [ "$(DEMO)" = "0" ] || $(BIN)/python manage.py demo_seed; } && \
		exec $(BIN)/honcho start --port $(PORT)'

# Debian's Chromium drives the browser tests (Playwright cannot download its own here).
e2e-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: run 'sudo apt-get install chromium' for the browser tests" >&2; fi; }

test: install e2e-deps
	$(BIN)/python -m config.embedded --dir var/test --ephemeral -- $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m config.embedded --dir var/bench --ephemeral -- $(BIN)/python bench/hotpath.py

# A longer schemathesis pass than the one the test suite runs.
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/python -m config.embedded --dir var/test --ephemeral -- \
		$(BIN)/python -m pytest metering/tests/test_schema_fuzz.py

clean:
	rm -rf var/test var/bench .pytest_cache
