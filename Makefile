# Every target builds its own virtualenv from pyproject.toml, so a fresh clone needs only python3 (>= 3.11).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck format bench bench-smoke bench-profile demo sandbox clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint typecheck
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m benchmarks

bench-smoke: $(STAMP)
	$(PY) -m benchmarks --smoke

bench-profile: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m benchmarks.profile startup
	$(PY) -m benchmarks.profile call

demo: $(STAMP)
	$(VENV)/bin/mcp-ci-tools demo

sandbox: $(STAMP)
	$(VENV)/bin/mcp-ci-tools sandbox

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache benchmarks/.node-peers benchmarks/.venv-peers
