#!/bin/sh
# GpuAcc-on-PoCL lane: run a command in a Debian trixie arm64 tree (Arm NN 23.08) where
# Arm NN's GpuAcc backend (Arm Compute Library OpenCL kernels) runs on PoCL's CPU OpenCL
# device, on the emulated arm64 CPU (qemu 10 via binfmt_misc).
#
#   FUNCTIONAL CHECK of GpuAcc's code path and numerics under emulation, NOT of Mali speed.
#   Timings from this lane say nothing about a real GPU.
#
# Steps: (1) build/refresh the tree (cached; a no-op when up to date), (2) build the OpenCL
# interposer tools/opencl-shim into the tree (cached), (3) run the command with
#   LD_LIBRARY_PATH=/usr/local/lib/opencl-shim   (the shim's libOpenCL.so first)
#   OCL_ICD_VENDORS=/etc/OpenCL/vendors          (PoCL's .icd)
#   POCL_CACHE_DIR=/var/cache/armvww-pocl        (bind of a persistent host folder: the
#                                                 second run skips PoCL's kernel compiles)
#   ARMVWW_GPUACC_LANE=pocl                       (so tests/tools can label results)
#   ARMVWW_PROBE_TIMEOUT=1800 unless set          (armvww's GpuAcc probe compiles its trial
#                                                 kernels cold: 150 s+ under qemu)
# plus ARMVWW_* / CI / TERM from the host (tools/debtree.py run passes them through).
#
# usage: tools/gpuacc_lane.sh [--tree DIR] [--bind SRC[:DST]]... [--env K=V]... [--] CMD [ARGS...]
#   e.g. tools/gpuacc_lane.sh -- python3 -m armvww backends
#        tools/gpuacc_lane.sh --bind /work/shared --env ARMVWW_SHARED=/work/shared -- \
#            python3 -m pytest -q tests
# env:
#   ARMVWW_POCL_TREE       tree directory (default /tmp/trees/trixie-arm64-pocl)
#   ARMVWW_POCL_CACHE_DIR  PoCL kernel cache on the host (default <repo>/.cache/pocl-kernels)
#   ARMVWW_CACHE_DIR       tools/debtree.py cache (default <repo>/.cache/debtree)
#   ARMVWW_SKIP_TREE_BUILD=1  use the tree as it is (no apt access at all)
#   OPENCL_SHIM_DEBUG=1    log every intervention of the shim to stderr
#   ARMVWW_SHARED          if set and a directory, it is bind-mounted at the same path
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PY=${PYTHON:-python3}
TREE=${ARMVWW_POCL_TREE:-/tmp/trees/trixie-arm64-pocl}
POCL_CACHE=${ARMVWW_POCL_CACHE_DIR:-$REPO/.cache/pocl-kernels}
EXTRA=""

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# Collect options; quote each for a later eval (paths may contain spaces).
q() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --tree) TREE=$2; shift 2 ;;
        --bind) EXTRA="$EXTRA --bind $(q "$2")"; shift 2 ;;
        --env) EXTRA="$EXTRA --env $(q "$2")"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }

echo "[gpuacc-lane] functional check of GpuAcc's code path and numerics under emulation (PoCL on qemu), not of Mali speed" >&2
ARMVWW_POCL_TREE=$TREE "$HERE/opencl-shim/build.sh" "$TREE"

mkdir -p "$POCL_CACHE"
if [ -z "${ARMVWW_PROBE_TIMEOUT:-}" ]; then
    EXTRA="$EXTRA --env ARMVWW_PROBE_TIMEOUT=1800"
fi
if [ -n "${ARMVWW_SHARED:-}" ] && [ -d "${ARMVWW_SHARED}" ]; then
    EXTRA="$EXTRA --bind $(q "$ARMVWW_SHARED")"
fi

eval "set -- $EXTRA -- \"\$@\""
exec $PY "$REPO/tools/debtree.py" run --tree "$TREE" \
    --bind "$POCL_CACHE:/var/cache/armvww-pocl" \
    --env LD_LIBRARY_PATH=/usr/local/lib/opencl-shim \
    --env OCL_ICD_VENDORS=/etc/OpenCL/vendors \
    --env POCL_CACHE_DIR=/var/cache/armvww-pocl \
    --env ARMVWW_GPUACC_LANE=pocl \
    "$@"
