#!/bin/sh
# GpuAcc-on-PoCL lane: run a command in armvww:gpuacc-pocl (docker/Dockerfile.gpuacc-pocl:
# the board image armvww:arm64 plus PoCL and tools/opencl-shim), where Arm NN's GpuAcc
# backend (Arm Compute Library OpenCL kernels) runs on PoCL's CPU OpenCL device, on the
# emulated arm64 CPU (trixie's qemu-user via binfmt_misc).
#
#   FUNCTIONAL CHECK of GpuAcc's code path and numerics under emulation, NOT of Mali speed.
#   Timings from this lane say nothing about a real GPU.
#
# Steps: (1) build the image (tools/images.sh build gpuacc-pocl: cached, a no-op when up to
# date), (2) run the command in it (tools/images.sh run: the checkout at /src, ../shared
# mounted) with a persistent PoCL kernel cache mounted at /var/cache/armvww-pocl (the second
# run skips PoCL's kernel compiles) and ARMVWW_PROBE_TIMEOUT=1800 unless set (armvww's
# GpuAcc probe compiles its trial kernels cold: 150 s+ under qemu). The image sets
# LD_LIBRARY_PATH (the shim first), OCL_ICD_VENDORS, POCL_CACHE_DIR, ARMVWW_GPUACC_LANE=pocl.
#
# usage: tools/gpuacc_lane.sh [--bind SRC[:DST]]... [--env K=V]... [--] CMD [ARGS...]
#   e.g. tools/gpuacc_lane.sh -- python -m armvww backends
#        tools/gpuacc_lane.sh -- python -m pytest -q tests/gpuacc
# env:
#   ARMVWW_POCL_CACHE_DIR  PoCL kernel cache on the host (default <repo>/.cache/pocl-kernels)
#   ARMVWW_SKIP_IMAGE_BUILD=1  use armvww:gpuacc-pocl as it is (no build step)
#   OPENCL_SHIM_DEBUG=1    log every intervention of the shim to stderr
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
POCL_CACHE=${ARMVWW_POCL_CACHE_DIR:-$REPO/.cache/pocl-kernels}

case "${1:-}" in -h|--help|"") sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    [ -n "${1:-}" ]; exit $? ;; esac

echo "[gpuacc-lane] functional check of GpuAcc's code path and numerics under emulation (PoCL on qemu), not of Mali speed" >&2
if [ "${ARMVWW_SKIP_IMAGE_BUILD:-0}" != 1 ]; then
    bash "$HERE/images.sh" build gpuacc-pocl
fi
mkdir -p "$POCL_CACHE"
set -- --bind "$POCL_CACHE:/var/cache/armvww-pocl" "$@"
[ -n "${ARMVWW_PROBE_TIMEOUT:-}" ] || set -- --env ARMVWW_PROBE_TIMEOUT=1800 "$@"
[ -z "${OPENCL_SHIM_DEBUG:-}" ] || set -- --env "OPENCL_SHIM_DEBUG=$OPENCL_SHIM_DEBUG" "$@"
exec bash "$HERE/images.sh" run gpuacc-pocl "$@"
