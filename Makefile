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

.PHONY: install test test-slow lint format typecheck demo benchmark bench-sparse gpu-wheels gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml tools/install_system_deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[viz,dev]"
	bash tools/install_system_deps.sh
	$(PY) -c "import torch, open3d, pcseg; print('pcseg ready: torch', torch.__version__, '| open3d', open3d.__version__)"
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check pcseg tests
	$(VENV)/bin/ruff format --check pcseg tests

format: $(STAMP)
	$(VENV)/bin/ruff format pcseg tests
	$(VENV)/bin/ruff check --fix pcseg tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep instead of spinning between the many short
# parallel regions of sparse convolution; on a busy machine spinning threads slowed training >10x.
demo: $(STAMP)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(PY) -m pcseg demo --out $(DEMO_OUT)

# the real SemanticKITTI scan of the sparse benchmark's case c: passed when the folder exists
# (a checkout next to shared/data/real), else case c is skipped with a note
REAL_DATA ?= ../shared/data/real
REAL_DATA_ARG = $(if $(wildcard $(REAL_DATA)),--real-data $(REAL_DATA))

bench-sparse: $(STAMP)
	$(PY) -m pcseg.benchmarks sparse --amp bf16 $(REAL_DATA_ARG) --json bench_sparse.json

benchmark: bench-sparse
	$(PY) -m pcseg.benchmarks voxelize --json bench_voxelize.json

# GPU machines without network access: `make gpu-wheels` (on a networked machine, any Python)
# downloads the wheels of pcseg's dependencies that a CUDA image usually lacks, for the GPU
# machine's Python (GPU_PYVER); `make gpu-check` there installs them next to that Python's own
# CUDA torch (never replacing it) and runs the GPU tests, the CUDA sparse benchmark (pcseg vs
# spconv, case b) and a 200-iteration MinkUNet34C training with autocast (< 8 min).
GPU_PYTHON ?= python3
GPU_PYVER  ?= 3.12
GPU_WHEELS ?= .whl
GPU_SITE   ?= /tmp/pcseg-gpu-site
GPU_CUDA   ?= cu126
GPU_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
gpu-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version $(GPU_PYVER) \
	  --implementation cp $(GPU_PLATFORMS) -d $(GPU_WHEELS) \
	  plyfile==1.1.5 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
	  typing-inspection==0.4.5 spconv-$(GPU_CUDA)==2.3.8 cumm-$(GPU_CUDA)==0.7.11

gpu-check:
	@if ls $(GPU_WHEELS)/*.whl >/dev/null 2>&1; then \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
	    --upgrade --target $(GPU_SITE) $(GPU_WHEELS)/*.whl; fi
	PYTHONPATH=$(GPU_SITE):$(CURDIR) PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m pcseg.benchmarks.gpu_check

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
