# The two entry points a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-postgres lint setup system-deps bench bench-postgres

$(BIN)/cuaflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/cuaflow

setup: $(BIN)/cuaflow

# Runs the brief's setup-and-test workflow for real: a web server on a free
# port, a check against it, a human approval (answered here), cleanup.
demo: setup
	$(BIN)/cuaflow run examples/setup-and-test-scripted.json \
		--input port=$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') \
		--approve

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Chromium, Xvfb, xdotool, sshd and PostgreSQL for the machine and database tests.
system-deps:
	bash scripts/install-system-deps.sh

# Everything on SQLite (tests/postgres start their own PostgreSQL), then again on PostgreSQL.
test: system-deps lint
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-postgres

# The database-backed tests (store, engine, worker, API, webhooks, agents) on a
# throwaway PostgreSQL on a free loopback port. The machine and unit tests touch
# no database and tests/postgres ran in the first pass, so they are not repeated.
test-postgres: setup
	CUAFLOW_TEST_DATABASE=postgres $(BIN)/pytest -q \
		--ignore=tests/machines --ignore=tests/unit --ignore=tests/postgres

bench: setup
	$(BIN)/python bench/engine_bench.py

bench-postgres: setup
	$(BIN)/python bench/postgres_bench.py
