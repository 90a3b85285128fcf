# pcseg: two commands do all set-up on a fresh machine.
#   make demo   -> install everything, then synthetic data -> prepare -> train (sup-only, ERDA) -> test -> render
#   make test   -> install everything, then pytest (slow checks excluded; `make test-slow` runs them)
# Installation is idempotent: a stamp file records that .venv matches pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.pcseg-installed
DEMO_OUT ?= demo_out

.PHONY: install test test-slow demo benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml tools/install_system_deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev]"
	bash tools/install_system_deps.sh
	$(PY) -c "import torch, open3d, pcseg; print('pcseg ready: torch', torch.__version__, '| open3d', open3d.__version__)"
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep instead of spinning between the many short
# parallel regions of sparse convolution; on a busy machine spinning threads slowed training >10x.
demo: $(STAMP)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(PY) tools/demo.py --out $(DEMO_OUT)

benchmark: $(STAMP)
	$(PY) -m pcseg.benchmarks sparse --amp bf16 --json bench_sparse.json
	$(PY) -m pcseg.benchmarks voxelize --json bench_voxelize.json

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
