# hwnas: two commands, nothing installed by hand.
#   make demo   creates .venv if missing, installs hwnas, runs the main job (hwnas run on the small MONAS-LQ
#               example; the report lands in runs/amc-monas-lq-small/report/index.html)
#   make test   creates .venv if missing, installs hwnas with test extras, runs the whole test suite
# torch is pinned to 2.13.0 everywhere (its CPU wheel is on this machine's disk); it is installed first
# and alone so nothing else can pull a different (CUDA) build.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwnas-installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "hwnas needs Python 3.11 (torch 2.13.0 CPU wheel); set PYTHON=/path/to/python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

# One torch thread: the demo's output (trials, selected models) is then the same on every machine (torch sums
# floats in another order with another thread count), and these small models train faster on one thread.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m hwnas run examples/amc_monas_lq_small.yaml

test: $(STAMP)
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5) - treated as a failure" >&2; fi; \
	exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	$(PY) bench/qat_overhead.py
	$(PY) bench/amc_generation.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
