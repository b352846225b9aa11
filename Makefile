# hwnas: two commands, nothing installed by hand.
#   make demo   creates .venv if missing, installs hwnas, runs the main job (hwnas run on the small MONAS-LQ
#               example; the report lands in runs/amc-monas-lq-small/report/index.html)
#   make test   creates .venv if missing, installs hwnas with test extras, runs the whole test suite
# torch is pinned to 2.13.0 everywhere (its CPU wheel is on this machine's disk); it is installed first
# and alone so nothing else can pull a different (CUDA) build.
# Two test environments (docs/install.md): .venv with constraints.txt (the upper ends of hwnas's dependency
# ranges, every extra) and .venv-finn with constraints-low.txt (the lower ends) beside finn-plus, where the FINN
# path and the files that exercise onnx/onnxruntime/qonnx/pydantic/optuna run again.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwnas-installed
FVENV  := .venv-finn
FPY    := $(FVENV)/bin/python
FSTAMP := $(FVENV)/.hwnas-installed
# the files run again at the lower bounds, beside finn-plus
LOW_TESTS := tests/test_export_finn.py tests/test_export_qonnx.py tests/test_config.py

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "hwnas needs Python 3.11 (torch 2.13.0 CPU wheel); set PYTHON=/path/to/python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

$(FSTAMP): pyproject.toml constraints-low.txt requirements-finn.txt
	@test -x $(FPY) || $(PYTHON) -m venv $(FVENV)
	$(FPY) -m pip install --quiet "torch==2.13.0"
	$(FPY) -m pip install --quiet -c constraints-low.txt -r requirements-finn.txt -e . "pytest>=8"
	$(FPY) -m pip install --quiet --no-deps "finn-plus==1.6.1"
	@touch $(FSTAMP)

install: $(STAMP) $(FSTAMP)

# One torch thread: the demo's output (trials, selected models) is then the same on every machine (torch sums
# floats in another order with another thread count), and these small models train faster on one thread.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m hwnas run examples/amc_monas_lq_small.yaml

test: $(STAMP) $(FSTAMP)
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5) - treated as a failure" >&2; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	echo "make test: the lower dependency bounds and the FINN path ($(FVENV))"; \
	OMP_NUM_THREADS=1 $(FPY) -m pytest -p no:cacheprovider $(LOW_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	$(PY) bench/qat_overhead.py
	$(PY) bench/amc_generation.py

clean:
	rm -rf $(VENV) $(FVENV) .pytest_cache .ruff_cache src/*.egg-info
