# armvww developer commands. Everything installs itself: `make test` on a bare machine with
# Python >= 3.11 (and apt, as root, for the Arm NN trees) is enough.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
IMAGES ?= $(SHARED)/data/vww_samples
PYTEST_ARGS ?=

# Tests and the demo read the third-party models and photos from ../shared (never committed).
export ARMVWW_SHARED ?= $(SHARED)
ifneq ($(wildcard $(SHARED)/models),)
export ARMVWW_MODEL_DIR ?= $(SHARED)/models
endif

.PHONY: install host-deps detect test test-gpuacc lint format clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "armvww needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[litert,test,dev]'
	touch $@

install: $(VENV)/.installed

## detect: the main job - detect people in IMAGES on the embedded default backend (LiteRT)
detect: install
	$(VENV)/bin/armvww detect --backend LiteRT $(IMAGES)

## host-deps: Debian packages for the C oracle, the host pyarmnn lane and the trees (root)
host-deps:
	bash tools/host-deps.sh

## test: the whole test suite, Arm NN lanes in Debian trees included
test: install host-deps
	$(PY) -m pytest $(PYTEST_ARGS)

## test-gpuacc: opt-in GpuAcc-on-PoCL lane (functional check of GpuAcc, not Mali speed;
## ~600 MB, ~30 min of kernel compiles per model on a cold cache)
test-gpuacc: install host-deps
	ARMVWW_GPUACC=1 $(PY) -m pytest tests/trees/test_gpuacc_lane.py $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
