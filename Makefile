# kdtools: the README's two commands.
#   make demo    builds the toy world and runs the workflow on it (CPU, minutes)
#   make test    runs the offline, CPU-only test suite
# (`make demo-all` runs every table and figure of the toy world: ~43 min on 2 cores.)
# Both run `setup` first: a .venv with the package and its dev extra.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.kdtools-setup
# CPU machines get the local CPU wheel of torch; a machine with a GPU gets the CUDA build that
# pip resolves, and an environment that already has torch keeps it (never replaced).
CPU_TORCH ?= torch==2.13.0
export DS_BUILD_OPS := 0
export TRL_EXPERIMENTAL_SILENCE := 1

.PHONY: setup demo demo-all test lint clean-demo bench-gpu bench-cpu

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "setup: keeping the installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "setup: GPU present, torch comes with the package's CUDA build"; \
	else \
	  echo "setup: no torch and no GPU: installing $(CPU_TORCH) (CPU)"; \
	  $(PIP) install --quiet $(CPU_TORCH); \
	fi
	$(PIP) install --quiet -e '.[dev]'
	@touch $(STAMP)

# The rules call `kdtools` from PATH (the cluster's env, or --use-conda's): put the venv's first.
demo: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/snakemake --profile profiles/local demo --config world=toy
	@echo "demo: tables in results/toy/demo/tables/, figures in results/toy/demo/figures/, models and evals in results/toy/"

demo-all: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/snakemake --profile profiles/local all_tables --config world=toy
	@echo "demo-all: tables in results/toy/tables/, figures in results/toy/figures/, models and evals in results/toy/"

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check kdtools tests
	$(VENV)/bin/snakemake --lint --config world=smoke

clean-demo:
	rm -rf results/toy

# Speed on a device, one table (benchmarks/device_table.py): the loss, a GKD step vs TRL, generation.
# bench-gpu: one H100/H200, the issue's sizes (1B/3B shapes, bf16), < 6 min; it uses the venv when
# there is one, else BENCH_PY (a GPU image's python3 with the project's packages on its path).
# bench-cpu: the same code at tiny sizes on a CPU.
BENCH_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
bench-gpu:
	$(BENCH_PY) benchmarks/device_table.py --device cuda $(BENCH_ARGS)

bench-cpu: setup
	$(PY) benchmarks/device_table.py --device cpu --tiny $(BENCH_ARGS)

# COMET runs in its own environment (unbabel-comet pins transformers<5 and numpy<2): kdtools eval
# --suite translation calls $(COMET_VENV)/bin/python as a subprocess (docs/eval.md). ~90 s, 1.6 GB.
COMET_VENV ?= envs/comet-venv
COMET_STAMP := $(COMET_VENV)/.kdtools-comet

.PHONY: comet-env
comet-env: $(COMET_STAMP)

$(COMET_STAMP): envs/comet-requirements.txt
	@test -x $(COMET_VENV)/bin/python || python3 -m venv $(COMET_VENV)
	@if $(COMET_VENV)/bin/python -c "import torch" 2>/dev/null; then \
	  echo "comet-env: keeping the installed torch"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(COMET_VENV)/bin/pip install --quiet torch; \
	else \
	  $(COMET_VENV)/bin/pip install --quiet $(CPU_TORCH); \
	fi
	$(COMET_VENV)/bin/pip install --quiet -r envs/comet-requirements.txt
	$(COMET_VENV)/bin/python -I -c "import comet; print('comet-env: unbabel-comet', comet.__version__)"
	@touch $@
