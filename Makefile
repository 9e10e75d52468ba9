# armvww developer commands. Everything installs itself: `make test` on a bare machine with
# Python >= 3.11 (and apt, as root, for the Arm NN image lanes) is enough. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARMVWW := $(VENV)/bin/armvww
SHARED ?= $(abspath ../shared)
PYTEST_ARGS ?=

# Tests and the demo read the third-party models and photos from ../shared (never committed)
# when it exists; without it, `make detect` fetches them (pinned, verified) into the user
# cache, and the tests do the same (offline, the tests that need them skip, saying why).
export ARMVWW_SHARED ?= $(SHARED)
ifneq ($(wildcard $(SHARED)/models),)
export ARMVWW_MODEL_DIR ?= $(SHARED)/models
endif
ifneq ($(wildcard $(SHARED)/data/vww_samples),)
IMAGES ?= $(SHARED)/data/vww_samples
endif

.PHONY: help install host-deps images images-export clean-images armnn-delegate detect fetch test test-arm64-image test-arm64-lanes test-main test-gpuacc-small test-gpuacc test-tflite-runtime dist test-sdist lint format clean distclean

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "armvww needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[litert,test,dev]'
	touch $@

## install: create .venv and install armvww in it (editable, with LiteRT, test and dev tools)
install: $(VENV)/.installed

## detect: the main job - detect people in IMAGES on the embedded default backend (LiteRT);
##         without ../shared it first fetches vww2 and the 13 sample photos (verified)
detect: install
ifeq ($(wildcard $(SHARED)/models),)
	$(ARMVWW) fetch vww2
endif
ifeq ($(IMAGES),)
	$(ARMVWW) fetch samples
	$(ARMVWW) detect --backend LiteRT "$$($(ARMVWW) fetch samples)"
else
	$(ARMVWW) detect --backend LiteRT $(IMAGES)
endif

## fetch: download vww2, vww4 and the sample photos into the user cache (~/.cache/armvww)
fetch: install
	$(ARMVWW) fetch vww2 vww4 samples

## host-deps: Debian packages for the C oracle, the host pyarmnn lane and the images (root)
host-deps:
	bash tools/host-deps.sh

## armnn-delegate: build Arm NN's TfLite delegate with the `armnn-delegate` build stage of
##       docker/Dockerfile.x86 / .arm64 (the images' own recipe: buildah bud --target, root) and
##       copy it into .cache/armnn-delegate/<arch>/ (DELEGATE_ARCH=amd64|arm64|all, default
##       amd64; cached by buildah's layers: a no-op when built). `make test` builds the amd64
##       one (armvww:arm64 carries its own); arm64's stage cross-compiles on this machine.
DELEGATE_ARCH ?= amd64
armnn-delegate: host-deps
	@if [ "$$(id -u)" != 0 ]; then echo "armnn-delegate: needs root (buildah); not built" >&2; \
	else for a in $(if $(filter all,$(DELEGATE_ARCH)),amd64 arm64,$(DELEGATE_ARCH)); do \
	    bash tools/images.sh delegate $$(case $$a in amd64) echo x86;; *) echo $$a;; esac) || exit; \
	done; fi

## images: build armvww:x86 and armvww:arm64 from docker/ (mmdebstrap, buildah; root) into
##         the private image store .cache/images (cached: unchanged steps are reused)
IMAGE_NAMES ?= x86 arm64
images: host-deps
	@if [ "$$(id -u)" = 0 ]; then bash tools/images.sh build $(IMAGE_NAMES); \
	else echo "images: not root; the image lanes will skip (as root: make images)" >&2; fi

## images-export: the built images as OCI archives in .cache/images/export (podman/docker load)
images-export: images
	bash tools/images.sh export $(IMAGE_NAMES)

## clean-images: remove the image store (.cache/images) and the qemu binfmt entry it registered
clean-images:
	bash tools/images.sh clean

## test: the whole test suite, its Arm NN lanes inside the images (armvww:x86 runs the whole
##       suite, armvww:arm64 the Arm NN suites under qemu); as root it installs Debian
##       packages (tools/host-deps.sh), registers a binfmt_misc entry for arm64 and builds the
##       images into .cache/images (~3.5 GB; `make clean-images` removes it; see the README).
##       Three jobs, two at a time (TEST_JOBS=1: one after the other): armvww:arm64's build
##       and lanes (marker arm64); GpuAcc on PoCL with the small model (armvww:gpuacc-pocl,
##       once armvww:arm64 is built); everything else. Each job's output is shown when it ends.
TEST_JOBS ?= 2
GPUACC_SMALL := tests/trees/test_gpuacc_every_run.py
test: install host-deps
	@$(MAKE) --no-print-directory -k -j$(TEST_JOBS) --output-sync=target \
	    test-arm64-lanes test-main test-gpuacc-small

# (part of `make test`) armvww:arm64, once for the two jobs that need it
test-arm64-image:
	@$(MAKE) --no-print-directory images IMAGE_NAMES=arm64

# (part of `make test`) the lanes inside armvww:arm64 (qemu on x86)
test-arm64-lanes: test-arm64-image
	$(PY) -m pytest -m arm64 tests/trees $(PYTEST_ARGS)

## test-gpuacc-small: (part of `make test`) armvww:gpuacc-pocl (armvww:arm64 + PoCL + the
##       OpenCL shim) and GpuAcc on PoCL with the small model vww_ops_model, both Arm NN routes
##       vs LiteRT (~4-6 min with a cold PoCL kernel cache, as in CI; ~1 min warm)
test-gpuacc-small: test-arm64-image
	@$(MAKE) --no-print-directory images IMAGE_NAMES=gpuacc-pocl
	$(PY) -m pytest $(GPUACC_SMALL) $(PYTEST_ARGS)

# (part of `make test`) armvww:x86, the delegate for the host lane, and all but the arm64 lanes
test-main:
	@$(MAKE) --no-print-directory images IMAGE_NAMES=x86
	@$(MAKE) --no-print-directory armnn-delegate DELEGATE_ARCH=amd64
	$(PY) -m pytest -m "not arm64" --deselect $(GPUACC_SMALL) $(PYTEST_ARGS)

## test-gpuacc: opt-in GpuAcc-on-PoCL lane (functional check of GpuAcc, not Mali speed;
##              ~600 MB, ~30 min of kernel compiles per model on a cold cache)
test-gpuacc: install host-deps
	ARMVWW_GPUACC=1 $(PY) -m pytest tests/trees/test_gpuacc_lane.py $(PYTEST_ARGS)

## test-tflite-runtime: only the [tflite] lane (tflite-runtime 2.14, numpy < 2, its own
## Python 3.11 venv in .cache/venv-tflite); `make test` runs it too
test-tflite-runtime: install
	$(PY) -m pytest tests/trees/test_tflite_runtime_lane.py $(PYTEST_ARGS)

## dist: build the wheel and the sdist into dist/
dist: install
	rm -rf dist
	$(PY) -m build --sdist --wheel --outdir dist . >/dev/null
	@ls dist

## test-sdist: unpack the sdist, install it in a fresh venv and run its tests (no image lanes)
test-sdist: dist
	rm -rf build/sdist && mkdir -p build/sdist
	tar -xzf dist/armvww-*.tar.gz -C build/sdist
	$(PYTHON) -m venv build/sdist/venv
	build/sdist/venv/bin/python -m pip install -q "$$(ls build/sdist/armvww-*/ -d)[litert,test]"
	cd build/sdist/armvww-*/ && ../venv/bin/python -m pytest -p no:cacheprovider \
	    -m "not trees and not gpuacc" $(PYTEST_ARGS)

## lint: ruff check, ruff format --check, mypy strict
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## format: ruff format and ruff check --fix
format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## clean: remove the venv and build/lint caches
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

## distclean: clean, clean-images, and remove .cache/ (delegate builds, kernel caches); the user
##            cache of downloads (~/.cache/armvww) is left alone
distclean: clean clean-images
	rm -rf .cache
