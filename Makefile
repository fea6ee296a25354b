# Two entry points: `make run` (main job) and `make test` (test suite). Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test bench

$(BIN)/shortrun: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/shortrun

run: setup
	$(BIN)/shortrun run

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench
