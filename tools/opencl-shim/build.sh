#!/bin/sh
# Build the OpenCL interposer (tools/opencl-shim/opencl_shim.c) for aarch64, inside the
# Debian trixie arm64 GpuAcc tree, with the tree's own clang-18 (run under qemu by
# tools/debtree.py). The PoCL packages already pull clang-18, binutils and libc6-dev into
# the tree, and ocl-icd-opencl-dev brings the OpenCL headers, so the host needs nothing
# beyond what tools/debtree.py needs (python3, apt, dpkg, util-linux; root for binfmt_misc).
#
# Functional check of GpuAcc's code path and numerics under emulation, not of Mali speed.
#
# usage: tools/opencl-shim/build.sh [TREE]
#   TREE defaults to $ARMVWW_POCL_TREE or /tmp/trees/trixie-arm64-pocl.  The tree is built
#   (or found up to date: a no-op) with docker/packages/trixie-armnn-arm64.txt +
#   docker/packages/trixie-pocl-arm64.txt (+ the LiteRT wheel, $ARMVWW_POCL_PIP, default
#   ai-edge-litert==2.3.0; set it empty for none).  Output: TREE/usr/local/lib/opencl-shim/libOpenCL.so
#   (the path inside the tree is /usr/local/lib/opencl-shim).  Rebuilt only when the source,
#   this script or the tree changed (hash in libOpenCL.so.sha256 next to it).
# env: ARMVWW_SKIP_TREE_BUILD=1 skips the tree build step (the tree must exist).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TREE=${1:-${ARMVWW_POCL_TREE:-/tmp/trees/trixie-arm64-pocl}}
PY=${PYTHON:-python3}
DEBTREE="$PY $REPO/tools/debtree.py"

PIP_SPEC=${ARMVWW_POCL_PIP-ai-edge-litert==2.3.0}
if [ "${ARMVWW_SKIP_TREE_BUILD:-0}" != 1 ]; then
    $DEBTREE build --suite trixie --arch arm64 --dest "$TREE" \
        --packages-file "$REPO/docker/packages/trixie-armnn-arm64.txt" \
        --packages-file "$REPO/docker/packages/trixie-pocl-arm64.txt" \
        ${PIP_SPEC:+--pip "$PIP_SPEC"} >&2
fi
[ -x "$TREE/usr/bin/clang-18" ] || { echo "build.sh: $TREE has no clang-18 (built without trixie-pocl-arm64.txt?)" >&2; exit 2; }
[ -f "$TREE/usr/include/CL/cl.h" ] || { echo "build.sh: $TREE has no CL/cl.h (ocl-icd-opencl-dev/opencl-c-headers missing)" >&2; exit 2; }

OUT_DIR_IN_TREE=/usr/local/lib/opencl-shim
OUT="$TREE$OUT_DIR_IN_TREE/libOpenCL.so"
KEY=$(cat "$HERE/opencl_shim.c" "$HERE/build.sh" "$TREE/.debtree-stamp.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ "$(cat "$OUT.sha256" 2>/dev/null)" = "$KEY" ]; then
    echo "build.sh: $OUT is up to date" >&2
    exit 0
fi
mkdir -p "$TREE$OUT_DIR_IN_TREE"
# Copy the source into the tree so the compile needs no bind mounts or path mapping.
cp "$HERE/opencl_shim.c" "$TREE$OUT_DIR_IN_TREE/opencl_shim.c"
start=$(date +%s)
# -l:libOpenCL.so.1: DT_NEEDED on the real ICD loader, so dlsym() on the shim's handle
# finds every entry point the shim does not override.  --no-as-needed keeps it.
$DEBTREE run --tree "$TREE" -- /usr/bin/clang-18 -O2 -g0 -Wall -Wextra -Werror -fPIC -shared \
    -fvisibility=hidden -o "$OUT_DIR_IN_TREE/libOpenCL.so.tmp" "$OUT_DIR_IN_TREE/opencl_shim.c" \
    -Wl,-soname,libOpenCL.so -Wl,--no-as-needed -l:libOpenCL.so.1 -ldl
mv "$OUT.tmp" "$OUT"
echo "$KEY" > "$OUT.sha256"
echo "build.sh: built $OUT in $(( $(date +%s) - start )) s" >&2
