# The two entry points a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint setup system-deps bench

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

test: system-deps lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/engine_bench.py
