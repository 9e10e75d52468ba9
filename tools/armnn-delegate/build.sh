#!/bin/sh
# Build Arm NN's TfLite delegate (libarmnnDelegate.so, delegate/classic of Arm NN 23.08) from
# Debian trixie's `armnn` source package, against TfLite headers of the interpreter's vintage.
#
# This is THE recipe: the Dockerfiles' `armnn-delegate` build stage runs it (`make armnn-delegate`
# builds that stage and copies the library out: tools/images.sh delegate). It must run inside
# Debian trixie with
#   native: g++ libarmnn-dev flatbuffers-compiler libflatbuffers-dev libabsl-dev xz-utils
#           (docker/packages/trixie-delegate-build.txt)
#   cross (--target-arch arm64 on another build machine): g++-aarch64-linux-gnu
#           flatbuffers-compiler libarmnn-dev:arm64 libflatbuffers-dev:arm64 libabsl-dev:arm64
#           (docker/packages/trixie-delegate-cross-arm64.txt; `dpkg --add-architecture arm64`:
#           Debian's multiarch puts the arm64 libraries in /usr/lib/aarch64-linux-gnu, where
#           the cross g++ looks, and the headers are shared)
# so it links the very libarmnn.so.33 the runtime uses.
#
# usage:
#   build.sh fetch DIR
#       Download the `armnn` source package into DIR with the apt configuration in effect
#       (a deb-src entry for trixie; $APT_CONFIG may name a private one) and verify the
#       .orig.tar.xz: apt checks it against the signed Sources index; this script checks its
#       SHA-256 again against the .dsc (when the mirror has it) or against
#       `apt-cache showsrc`. Prints the tarball's path.
#   build.sh build --source TARBALL --sha256 HEX [--headers DIR] [--out DIR]
#                  [--target-arch ARCH] [--sysroot DIR]
#       Compile and link. --headers: a LiteRT checkout (or a copy of its `tflite/` folder,
#       e.g. ../shared/third_party/litert-tflite, the default); a TensorFlow checkout with
#       `tensorflow/lite/` works too. --out: output folder (default
#       .cache/armnn-delegate/<arch> in the repository). Writes OUT/libarmnnDelegate.so and
#       OUT/stamp.json (Arm NN version, inputs' hashes, toolchain, build time). A no-op when
#       the stamp's key (tarball hash, headers hash, this folder's hash, target architecture,
#       the compiler's target triplet and version) matches.
#       --target-arch: the Debian architecture to build for (default: this machine's). When
#       it is not this machine's, the compiler is $CXX, default <triplet>-g++ (e.g.
#       aarch64-linux-gnu-g++), and the target's libraries come from multiarch or --sysroot.
#       --sysroot: a folder holding the target's Debian packages unpacked (passed to $CXX).
#
# Headers: schema_generated.h is regenerated from the headers' schema.fbs with this
# environment's flatc (the checked-in one may need a newer flatbuffers), into a folder that
# comes first on the include path; <tensorflow/lite/...> includes resolve to `tflite/`
# through a symlink folder. The headers are third-party: never commit them.
# Only the delegate's entry points are exported (armnnDelegate.map), and the link uses
# -Wl,--no-undefined so a missing symbol fails here, not at load time.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LIB=libarmnnDelegate.so

die() { echo "armnn-delegate: $*" >&2; exit 2; }
log() { echo "armnn-delegate: $*" >&2; }

tarball_sha() { sha256sum "$1" | cut -d' ' -f1; }

# SHA-256 the source package declares for FILE: from the .dsc next to it, else from apt's
# (signed) Sources index.
declared_sha() {
    file=$1
    dsc=$(ls "$(dirname "$file")"/armnn_*.dsc 2>/dev/null | head -n 1 || true)
    if [ -n "$dsc" ]; then
        sed -n '/^Checksums-Sha256:/,/^[^ ]/p' "$dsc" | awk -v f="$(basename "$file")" '$3 == f { print $1; exit }'
    else
        apt-cache showsrc armnn 2>/dev/null \
            | sed -n '/^Checksums-Sha256:/,/^[^ ]/p' | awk -v f="$(basename "$file")" '$3 == f { print $1; exit }'
    fi
}

cmd_fetch() {
    [ $# -eq 1 ] || die "usage: build.sh fetch DIR"
    dir=$1
    mkdir -p "$dir"
    have=$(ls "$dir"/armnn_*.orig.tar.xz 2>/dev/null | head -n 1 || true)
    if [ -z "$have" ]; then
        # Mirrors may lack the .dsc and .debian.tar.xz (apt-get then fails): the
        # .orig.tar.xz is all the build needs, and it is checked below either way.
        (cd "$dir" && apt-get source --download-only -qq armnn >&2) \
            || log "apt-get source armnn reported errors (a missing .dsc is fine)"
        have=$(ls "$dir"/armnn_*.orig.tar.xz 2>/dev/null | head -n 1 || true)
        [ -n "$have" ] || die "no armnn_*.orig.tar.xz in $dir after apt-get source: is there a deb-src entry for trixie?"
    fi
    want=$(declared_sha "$have")
    [ -n "$want" ] || die "no declared SHA-256 for $(basename "$have") (.dsc or apt-cache showsrc)"
    got=$(tarball_sha "$have")
    if [ "$got" != "$want" ]; then
        rm -f "$have"
        die "$(basename "$have"): SHA-256 $got, the source package says $want (file removed)"
    fi
    log "$(basename "$have") verified (sha256 $got)"
    echo "$have"
}

# A hash of the header files that can reach the compiler (not a whole checkout's build files).
headers_hash() {
    (cd "$1" && find "$2" -type f \( -name '*.h' -o -name '*.cc' -o -name '*.fbs' \) -print \
        | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

recipe_hash() { cat "$HERE/build.sh" "$HERE/armnnDelegate.map" | sha256sum | cut -d' ' -f1; }
cache_key() { printf '%s\n' "$@" | sha256sum | cut -d' ' -f1; }
build_arch() {
    a=$(dpkg --print-architecture 2>/dev/null || uname -m)
    case "$a" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) echo "$a" ;; esac
}
triplet() {
    case "$1" in
        amd64) echo x86_64-linux-gnu ;;
        arm64) echo aarch64-linux-gnu ;;
        *) die "unsupported architecture $1 (amd64, arm64)" ;;
    esac
}
tfl_dir() {
    if [ -d "$1/tflite" ]; then echo tflite
    elif [ -d "$1/tensorflow/lite" ]; then echo tensorflow/lite
    else die "$1 has neither tflite/ (LiteRT) nor tensorflow/lite/ (TensorFlow)"
    fi
}

cmd_build() {
    src="" sha="" headers="$REPO/../shared/third_party/litert-tflite" out="" arch="" sysroot=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --source) src=$2; shift 2 ;;
            --sha256) sha=$2; shift 2 ;;
            --headers) headers=$2; shift 2 ;;
            --out) out=$2; shift 2 ;;
            --target-arch) arch=$2; shift 2 ;;
            --sysroot) sysroot=$2; shift 2 ;;
            *) die "unknown argument $1" ;;
        esac
    done
    [ -f "$src" ] || die "--source: no file '$src' (run: build.sh fetch DIR)"
    [ -n "$sha" ] || die "--sha256 is required (the hash printed by build.sh fetch)"
    [ "$(tarball_sha "$src")" = "$sha" ] || die "$src does not have SHA-256 $sha"
    [ -d "$headers" ] || die "--headers: no folder '$headers' (a LiteRT checkout)"
    headers=$(cd "$headers" && pwd)
    tfl=$(tfl_dir "$headers")
    schema=""
    for s in "$tfl/converter/schema/schema.fbs" "$tfl/schema/schema.fbs" "$tfl/compiler/mlir/lite/schema/schema.fbs"; do
        [ -f "$headers/$s" ] && { schema="$headers/$s"; break; }
    done
    [ -n "$schema" ] || die "no schema.fbs under $headers/$tfl"
    here=$(build_arch)
    arch=${arch:-$here}
    tr=$(triplet "$arch")
    if [ "$arch" = "$here" ]; then
        CXX=${CXX:-g++} list=trixie-delegate-build.txt
    else
        CXX=${CXX:-$tr-g++} list=trixie-delegate-cross-$arch.txt
    fi
    out=${out:-$REPO/.cache/armnn-delegate/$arch}
    for tool in "$CXX" flatc xz tar; do
        command -v "$tool" >/dev/null || die "$tool not found: run inside trixie with docker/packages/$list"
    done
    inc=${sysroot:+$sysroot}/usr/include
    [ -f "$inc/armnn/ArmNN.hpp" ] || die "no $inc/armnn (libarmnn-dev${sysroot:+ in the sysroot} missing)"
    set -- ${sysroot:+"--sysroot=$sysroot"}
    [ "$("$CXX" "$@" -print-file-name=libarmnn.so)" != libarmnn.so ] \
        || die "$CXX finds no libarmnn.so for $arch (libarmnn-dev:$arch missing; see docker/packages/$list)"
    machine=$("$CXX" -dumpmachine)
    case "$machine" in
        "$tr"|"$(echo "$tr" | sed 's/-linux-gnu$/-unknown-linux-gnu/')") ;;
        *) die "$CXX builds for $machine, not $arch ($tr)" ;;
    esac
    # The toolchain is part of the key: its target and version (a compiler update rebuilds).
    toolchain="$machine $("$CXX" -dumpfullversion)"

    hh=$(headers_hash "$headers" "$tfl")
    sh_=$(recipe_hash)
    key=$(cache_key "$sha" "$hh" "$sh_" "$arch" "$toolchain")
    if [ -f "$out/$LIB" ] && grep -q "\"key\": \"$key\"" "$out/stamp.json" 2>/dev/null; then
        log "$out/$LIB is up to date (key $key)"
        exit 0
    fi

    start=$(date +%s)
    work=$(mktemp -d "${TMPDIR:-/tmp}/armnn-delegate.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    tar -xJf "$src" -C "$work" --wildcards '*/delegate/classic' '*/delegate/common' \
        '*/include/armnnUtils' '*/profiling/common/include' '*/third-party/fmt' \
        '*/third-party/half' '*/third-party/ghc'
    s=$(ls -d "$work"/armnn-*)
    # <tensorflow/lite/...> -> the headers' TfLite folder; the regenerated schema goes first.
    mkdir -p "$work/inc/tensorflow" "$work/gen/tensorflow/lite/schema"
    ln -s "$headers/$tfl" "$work/inc/tensorflow/lite"
    flatc --cpp -o "$work/gen/tensorflow/lite/schema" "$schema"
    if [ "$tfl" = tflite ]; then
        mkdir -p "$work/gen/tflite/schema" "$work/gen/tflite/converter/schema"
        cp "$work/gen/tensorflow/lite/schema/schema_generated.h" "$work/gen/tflite/schema/"
        cp "$work/gen/tensorflow/lite/schema/schema_generated.h" "$work/gen/tflite/converter/schema/"
    fi
    cflags="${sysroot:+--sysroot=$sysroot} -std=c++17 -O2 -fPIC -DNDEBUG -DFMT_HEADER_ONLY -w
        -I$work/gen -I$work/inc -I$headers
        -I$s/delegate/classic/include -I$s/delegate/classic/src
        -I$s/delegate/common/include -I$s/delegate/common/src
        -I$s/include -I$s/profiling -I$s/third-party"
    set -- "$s/delegate/common/src/DelegateOptions.cpp" \
        "$s/delegate/classic/src/armnn_delegate.cpp" \
        "$s/delegate/classic/src/armnn_external_delegate.cpp" \
        "$s/delegate/classic/src/SharedFunctions.cpp" \
        "$headers/$tfl/core/c/common.cc" "$headers/$tfl/minimal_logging.cc" \
        "$headers/$tfl/minimal_logging_default.cc" "$headers/$tfl/array.cc"
    jobs=$(nproc 2>/dev/null || echo 1)
    pids="" objs="" i=0
    for f in "$@"; do
        i=$((i + 1))
        o="$work/$i.o"
        objs="$objs $o"
        # shellcheck disable=SC2086
        "$CXX" $cflags -c "$f" -o "$o" &
        pids="$pids $!"
        if [ $((i % jobs)) -eq 0 ]; then
            for p in $pids; do wait "$p" || die "compile failed (see above)"; done
            pids=""
        fi
    done
    for p in $pids; do wait "$p" || die "compile failed (see above)"; done
    # shellcheck disable=SC2086
    "$CXX" ${sysroot:+--sysroot=$sysroot} -shared -o "$work/$LIB" $objs -Wl,--version-script="$HERE/armnnDelegate.map" \
        -Wl,-soname,$LIB -Wl,--no-undefined -Wl,--as-needed -larmnn -lflatbuffers
    ver() { sed -n "s/^#define $2 \([0-9]*\).*/\1/p" "$1"; }
    vh=$inc/armnn/Version.hpp
    armnn_version="$(ver $vh ARMNN_MAJOR_VERSION).$(ver $vh ARMNN_MINOR_VERSION).$(ver $vh ARMNN_PATCH_VERSION)"
    dv="$s/delegate/classic/include/Version.hpp"
    delegate_version="$(ver "$dv" DELEGATE_MAJOR_VERSION).$(ver "$dv" DELEGATE_MINOR_VERSION).$(ver "$dv" DELEGATE_PATCH_VERSION)"
    release=$(basename "$src" | sed -n 's/^armnn_\(.*\)\.orig\.tar\.xz$/\1/p')
    mkdir -p "$out"
    cp "$work/$LIB" "$out/$LIB.tmp"
    mv "$out/$LIB.tmp" "$out/$LIB"
    cat > "$out/stamp.json" <<EOF
{
  "key": "$key",
  "arch": "$arch",
  "build_arch": "$here",
  "toolchain": "$toolchain",
  "armnn_release": "$release",
  "armnn_version": "$armnn_version",
  "delegate_version": "$delegate_version",
  "source": "$(basename "$src")",
  "source_sha256": "$sha",
  "headers": "$headers",
  "headers_sha256": "$hh",
  "recipe_sha256": "$sh_",
  "library_sha256": "$(tarball_sha "$out/$LIB")",
  "build_seconds": $(( $(date +%s) - start ))
}
EOF
    log "built $out/$LIB (Arm NN $release, $arch) in $(( $(date +%s) - start )) s"
}

[ $# -gt 0 ] || { sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }
cmd=$1; shift
case "$cmd" in
    fetch) cmd_fetch "$@" ;;
    build) cmd_build "$@" ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
    *) die "unknown command $cmd (fetch, build)" ;;
esac
