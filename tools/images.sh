#!/usr/bin/env bash
# Build armvww's images from docker/ and run commands in them, on a host without a Docker
# engine: mmdebstrap makes the Debian trixie base image, buildah builds the Dockerfiles
# unchanged, podman runs them. Everything lives in a private image store under
# .cache/images (ARMVWW_IMAGES_DIR); `make clean-images` removes it.
#
#   tools/images.sh build IMAGE...       build armvww:IMAGE (and what it is built on);
#                                        cached: buildah --layers reuses every unchanged step
#   tools/images.sh delegate IMAGE [OUT] build only the Dockerfile's `armnn-delegate` stage
#                                        (buildah bud --target) and copy libarmnnDelegate.so
#                                        and stamp.json out of it into OUT (default
#                                        .cache/armnn-delegate/ARCH): `make armnn-delegate`
#   tools/images.sh has-delegate IMAGE   exit status 0 when armvww:IMAGE holds the delegate
#   tools/images.sh run IMAGE [OPTS] -- CMD [ARGS...]
#                                        podman run CMD in armvww:IMAGE, the checkout at /src
#                                        (the working directory), ../shared at its own path,
#                                        no network; OPTS: --bind SRC[:DST] (default: the
#                                        same path inside), --env K=V; ARMVWW_* variables
#                                        pass through
#   tools/images.sh export IMAGE...      buildah push armvww:IMAGE to an OCI archive,
#                                        .cache/images/export/armvww-IMAGE.oci.tar
#                                        (load it: podman load -i FILE, or docker load)
#   tools/images.sh lock IMAGE...        write docker/packages/*.lock: NAME=VERSION of every Debian
#                                        package the Dockerfile adds to its base (from the built
#                                        image); the Dockerfile installs exactly these versions
#   tools/images.sh exists IMAGE         exit status 0 when armvww:IMAGE is built
#   tools/images.sh env                  print the variables that point podman/buildah at the
#                                        private store (eval "$(tools/images.sh env)")
#   tools/images.sh clean                remove the store and the qemu binfmt entry this
#                                        script registered
# IMAGE: x86 (docker/Dockerfile.x86, amd64), arm64 (docker/Dockerfile.arm64, run under
# qemu-user on a non-arm host), gpuacc-pocl (docker/Dockerfile.gpuacc-pocl, FROM armvww:arm64).
#
# Needs root and: mmdebstrap, arch-test, buildah, podman, runc (tools/host-deps.sh installs
# them). On an x86 host, arm64 steps run through binfmt_misc: trixie's qemu-aarch64 (from its
# qemu-user package; bookworm's 7.2 crashes LiteRT) is registered as `qemu-aarch64`, flags OCF.
# This machine's pip configuration and CA bundle are mounted into the builds when they exist
# (buildah bud -v), never copied into an image.
#
# The delegate stage of armvww:arm64 on a non-arm64 host: the stage cross-compiles on the
# build platform (FROM --platform=$BUILDPLATFORM ... AS armnn-delegate), so it is built with
# this machine's --arch, then given to the image's build as the build context
# `armnn-delegate` (buildah 1.28 ignores --platform in FROM; the stage is not run again).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DIR=${ARMVWW_IMAGES_DIR:-$REPO/.cache/images}
SHARED=${ARMVWW_SHARED:-$(cd "$REPO/.." && pwd)/shared}
SUITE=trixie
MIRROR=http://deb.debian.org/debian
BASE_MANIFEST=docker.io/library/debian:trixie-slim
# aarch64 ELF header magic and mask (as in qemu's own binfmt.d/qemu-aarch64.conf)
AARCH64_MAGIC='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
AARCH64_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
BINFMT=/proc/sys/fs/binfmt_misc

log() { echo "[images] $*" >&2; }
die() { log "error: $*"; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

export CONTAINERS_CONF="$DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$DIR/storage.conf"

# Write $2 to file $1 only if it differs (keeps mtimes stable).
put() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ] || printf '%s\n' "$2" > "$1"; }

# Container ulimits: podman's defaults (1048576) exceed this machine's hard limits, and
# without CAP_SYS_RESOURCE runc cannot raise them; podman runs conmon with nproc 32768 at most.
NOFILE=$(ulimit -Hn)
NPROC=$(ulimit -Hu)
[ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ] && NPROC=32768
[ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 1048576 ] && NOFILE=1048576

setup() {
    mkdir -p "$DIR/storage" "$DIR/run" "$DIR/tmp"
    # crun 1.8 refuses the cgroup setup here: runc.
    put "$DIR/containers.conf" "[containers]
default_ulimits = [\"nofile=$NOFILE:$NOFILE\", \"nproc=$NPROC:$NPROC\"]
[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
tmp_dir = \"$DIR/tmp\""
    put "$DIR/storage.conf" "[storage]
driver = \"overlay\"
graphroot = \"$DIR/storage\"
runroot = \"$DIR/run\""
}

host_arch() { dpkg --print-architecture 2>/dev/null || uname -m; }

image_arch() {
    case "$1" in
        x86) echo amd64 ;;
        arm64|gpuacc-pocl) echo arm64 ;;
        *) die "unknown image '$1' (x86, arm64, gpuacc-pocl)" ;;
    esac
}

# --- qemu-user for arm64 on another host -------------------------------------------------
qemu_ok() {
    [ -f "$BINFMT/qemu-aarch64" ] && grep -qx enabled "$BINFMT/qemu-aarch64" \
        && grep -q '^flags: .*F' "$BINFMT/qemu-aarch64"
}

ensure_qemu() {
    [ "$(host_arch)" = arm64 ] && return 0
    [ -d "$BINFMT" ] && [ -f "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" \
        || die "binfmt_misc is not available (needed to run arm64 steps)"
    if qemu_ok; then
        interp=$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")
        log "binfmt_misc: qemu-aarch64 -> $interp"
        return 0
    fi
    [ -f "$BINFMT/qemu-aarch64" ] && die "a binfmt_misc entry qemu-aarch64 exists without flag F" \
        "(not ours, left alone); remove it or register trixie's qemu-aarch64 with flags OCF"
    qemu="$DIR/qemu/qemu-aarch64"
    if [ ! -x "$qemu" ]; then
        log "fetching $SUITE's qemu-user (static qemu-aarch64)"
        mkdir -p "$DIR/qemu"
        mmdebstrap --variant=extract --mode=root --architectures="$(host_arch)" \
            --include=qemu-user --format=null \
            --extract-hook="copy-out /usr/bin/qemu-aarch64 $DIR/qemu" \
            "$SUITE" /dev/null "deb $MIRROR $SUITE main" >&2
    fi
    # O: open the binary (not via a wrapper), C: credentials of the binary, F: fix the
    # interpreter at registration so it works inside containers and chroots.
    printf ':qemu-aarch64:M::%s:%s:%s:OCF' "$AARCH64_MAGIC" "$AARCH64_MASK" "$qemu" \
        > "$BINFMT/register"
    log "binfmt_misc: registered qemu-aarch64 -> $qemu ($("$qemu" --version | head -1))"
}

# --- base image: Debian trixie minbase, signed by the host's debian-archive-keyring -------
base() {
    arch=$1
    name=localhost/armvww-base:$SUITE-$arch
    if podman image exists "$name"; then return 0; fi
    [ "$arch" = "$(host_arch)" ] || ensure_qemu
    tar="$DIR/base-$arch.tar"
    log "mmdebstrap $SUITE $arch (minbase)"
    start=$(date +%s)
    rm -rf "$tar.tmp"
    # APT sources as in Docker's debian:trixie-slim (deb822 debian.sources, no sources.list):
    # the Dockerfiles' build stages edit that file.
    printf '%s\n' "Types: deb" "URIs: $MIRROR" "Suites: $SUITE $SUITE-updates" \
        "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" "" \
        "Types: deb" "URIs: http://deb.debian.org/debian-security" "Suites: $SUITE-security" \
        "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
        > "$DIR/debian.sources"
    mmdebstrap --variant=minbase --mode=root --architectures="$arch" --format=tar \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --aptopt='Acquire::Languages "none"' \
        --customize-hook="upload $DIR/debian.sources /etc/apt/sources.list.d/debian.sources" \
        --customize-hook='rm -f "$1/etc/apt/sources.list"' \
        "$SUITE" "$tar.tmp" \
        "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
        "deb http://deb.debian.org/debian-security $SUITE-security main" >&2
    mv "$tar.tmp" "$tar"
    log "mmdebstrap $arch: $(( $(date +%s) - start )) s"
    podman import --arch "$arch" --os linux --change 'CMD ["bash"]' "$tar" "$name" >/dev/null
    rm -f "$tar"
}

# One manifest list holding the bases, under the name the Dockerfiles' FROM line uses, so
# `buildah bud --arch ARCH --pull=never` resolves it per architecture. Only added to, never
# recreated: another build (make test builds x86 and arm64 side by side) may be reading it.
base_manifest() {
    buildah manifest inspect "$BASE_MANIFEST" >/dev/null 2>&1 \
        || buildah manifest create "$BASE_MANIFEST" >/dev/null
    for a in amd64 arm64; do
        if podman image exists "localhost/armvww-base:$SUITE-$a" \
            && ! buildah manifest inspect "$BASE_MANIFEST" | grep -q "\"architecture\": \"$a\""; then
            buildah manifest add --arch "$a" "$BASE_MANIFEST" \
                "containers-storage:localhost/armvww-base:$SUITE-$a" >/dev/null
        fi
    done
}

# Mounts of this machine's package-access configuration for RUN steps (never baked in):
# its pip configuration (cert pointed at the mounted CA bundle) and its CA bundle, mounted
# beside the image's own /etc/ssl/certs (which ca-certificates writes during the build).
build_mounts() {
    ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    conf=
    for f in /etc/pip.conf /etc/xdg/pip/pip.conf; do [ -f "$f" ] && conf=$f && break; done
    if [ -f "$ca" ]; then
        printf ' -v %s:/run/host-ca/ca-certificates.crt:ro' "$ca"
        { if [ -n "$conf" ]; then grep -v '^[[:space:]]*cert[[:space:]]*=' "$conf"; else echo '[global]'; fi
          echo 'cert = /run/host-ca/ca-certificates.crt'; } > "$DIR/pip.conf"
        conf=$DIR/pip.conf
    fi
    [ -n "$conf" ] && printf ' -v %s:/etc/pip.conf:ro' "$conf"
    return 0
}

# Does Dockerfile $1 compile its delegate stage on the build platform (a cross compile)?
cross_stage() { grep -Eq '^FROM --platform=\$\{?BUILDPLATFORM\}? .* AS armnn-delegate' "$1"; }

# Where the delegate stage of Dockerfile $1 leaves its output (the final stage's COPY source).
stage_out() {
    sed -n 's|^COPY --from=armnn-delegate \(/[^ ]*\)/libarmnnDelegate\.so .*|\1|p' "$1" | head -n 1
}

# build_one IMAGE [TARGET]: armvww:IMAGE, or only its stage TARGET as armvww-TARGET:IMAGE.
# A delegate stage that cross-compiles on the build platform is built with the build
# machine's --arch (buildah 1.28 ignores FROM --platform=$BUILDPLATFORM) and handed to the
# image's build as the build context `armnn-delegate` (the stage is then not run again).
build_one() {
    local img=$1 target=${2:-} arch build_arch file tag start ctx out
    arch=$(image_arch "$img")
    build_arch=$arch
    case "$img" in
        gpuacc-pocl) build_one arm64 ;;
        *)  # parallel builds share the store: one base build per architecture, one
            # manifest update at a time
            flock "$DIR/base-$arch.lock" bash "$0" base "$arch"
            flock "$DIR/manifest.lock" bash "$0" manifest ;;
    esac
    [ "$arch" = "$(host_arch)" ] || ensure_qemu
    set --
    if [ -n "$target" ]; then
        file=$REPO/docker/Dockerfile.$img tag=armvww-$target:$img
        set -- --target "$target"
        if [ "$target" = armnn-delegate ] && cross_stage "$file"; then
            build_arch=$(host_arch)
            flock "$DIR/base-$build_arch.lock" bash "$0" base "$build_arch"
            flock "$DIR/manifest.lock" bash "$0" manifest
        fi
    else
        file=$REPO/docker/Dockerfile.$img tag=armvww:$img
        if grep -q '^COPY --from=armnn-delegate ' "$file" && cross_stage "$file" \
            && [ "$arch" != "$(host_arch)" ]; then
            out=$DIR/delegate-context-$img$(stage_out "$file")
            delegate_one "$img" "$out" >/dev/null
            set -- --build-context "armnn-delegate=$DIR/delegate-context-$img"
        fi
    fi
    log "buildah bud $file ${target:+--target $target }-> $tag ($build_arch)"
    start=$(date +%s)
    # the TfLite headers of the delegate build stage (docker/README.md), when present
    ctx=
    [ -d "$SHARED/third_party/litert-tflite" ] && ctx="--build-context tflite=$SHARED/third_party/litert-tflite"
    # shellcheck disable=SC2046,SC2086
    buildah bud --pull=never --layers --network=host --arch "$build_arch" $(build_mounts) $ctx \
        --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC" \
        "$@" -f "$file" -t "$tag" "$REPO" >&2
    log "buildah bud $tag: $(( $(date +%s) - start )) s"
}

# The delegate of IMAGE's build stage, copied out of it into OUT: the images' own recipe.
delegate_one() {
    local img=$1 out c mnt src
    out=${2:-$REPO/.cache/armnn-delegate/$(image_arch "$img")}
    build_one "$img" armnn-delegate
    src=$(stage_out "$REPO/docker/Dockerfile.$img")
    [ -n "$src" ] || die "docker/Dockerfile.$img copies nothing from its armnn-delegate stage"
    c=$(buildah from --pull=never "armvww-armnn-delegate:$img")
    mnt=$(buildah mount "$c")
    mkdir -p "$out"
    cp "$mnt$src/libarmnnDelegate.so" "$mnt$src/stamp.json" "$out/"
    buildah umount "$c" >/dev/null
    buildah rm "$c" >/dev/null
    log "armvww-armnn-delegate:$img -> $out/libarmnnDelegate.so"
    echo "$out/libarmnnDelegate.so"
}

run_one() {
    img=$1; shift
    arch=$(image_arch "$img")
    set -- "$@"
    opts="--rm --network=none --arch $arch -v $REPO:/src -w /src -e PYTHONDONTWRITEBYTECODE=1"
    [ -d "$SHARED" ] && opts="$opts -v $SHARED:$SHARED:ro -e ARMVWW_SHARED=$SHARED"
    if [ "$arch" != "$(host_arch)" ]; then
        ensure_qemu
        opts="$opts -e ARMVWW_EMULATION=qemu-user_${arch}_on_$(host_arch)"
    fi
    for v in $(env | sed -n 's/^\(ARMVWW_[A-Za-z0-9_]*\)=.*/\1/p'); do
        case "$v" in ARMVWW_SHARED|ARMVWW_MODEL_DIR|ARMVWW_IMAGES_DIR) ;; *) opts="$opts -e $v" ;; esac
    done
    while [ $# -gt 0 ]; do
        case "$1" in
            --bind) case "$2" in *:*) opts="$opts -v $2" ;; *) opts="$opts -v $2:$2" ;; esac
                    shift 2 ;;
            --env) opts="$opts -e $2"; shift 2 ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    [ $# -gt 0 ] || die "run: no command"
    # shellcheck disable=SC2086
    exec podman run $opts "armvww:$img" "$@"
}

export_one() {
    mkdir -p "$DIR/export"
    out="$DIR/export/armvww-$1.oci.tar"
    rm -f "$out"
    start=$(date +%s)
    buildah push "armvww:$1" "oci-archive:$out:armvww:$1" >&2
    log "exported armvww:$1 -> $out ($(du -h "$out" | cut -f1), $(( $(date +%s) - start )) s)"
}

# The lock file of an image, and the image its lock is relative to.
lock_file() {
    case "$1" in
        x86) echo "$REPO/docker/packages/$SUITE-armnn-amd64.lock" ;;
        arm64) echo "$REPO/docker/packages/$SUITE-armnn-arm64.lock" ;;
        gpuacc-pocl) echo "$REPO/docker/packages/$SUITE-pocl-arm64.lock" ;;
    esac
}

lock_one() {
    img=$1
    arch=$(image_arch "$img")
    case "$img" in
        gpuacc-pocl) below=armvww:arm64 ;;
        *) below=localhost/armvww-base:$SUITE-$arch ;;
    esac
    q='dpkg-query -W -f "\${Package}=\${Version}\n" | sort'
    podman run --rm --network=none --arch "$arch" "$below" sh -c "$q" > "$DIR/below.txt"
    podman run --rm --network=none --arch "$arch" "armvww:$img" sh -c "$q" > "$DIR/image.txt"
    out=$(lock_file "$img")
    # what the Dockerfile adds, and every package its list names (some are in the base too)
    names=$(grep -hv -e '^#' -e '^$' "${out%.lock}.txt")
    { echo "# Exact versions of the Debian packages docker/Dockerfile.$img installs on $below"
      echo "# (generated by: tools/images.sh lock $img, from the image that passed the tests)."
      { comm -13 "$DIR/below.txt" "$DIR/image.txt"
        for n in $names; do grep "^$n=" "$DIR/image.txt" || true; done; } | sort -u; } > "$out"
    log "wrote $out ($(grep -vc '^#' "$out") packages)"
}

clean() {
    if [ -f "$BINFMT/qemu-aarch64" ] \
        && grep -qx "interpreter $DIR/qemu/qemu-aarch64" "$BINFMT/qemu-aarch64"; then
        echo -1 > "$BINFMT/qemu-aarch64"
        log "binfmt_misc: removed qemu-aarch64 (registered by this script)"
    fi
    # only ever our own store: never let podman fall back to the system one
    if [ -d "$DIR/storage" ] && [ -f "$DIR/storage.conf" ] && command -v podman >/dev/null; then
        podman system reset --force >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    log "removed $DIR"
}

[ $# -gt 0 ] || { usage >&2; exit 2; }
cmd=$1; shift
case "$cmd" in
    -h|--help) usage; exit 0 ;;
    clean) clean; exit 0 ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (image builds, binfmt_misc)"
setup
case "$cmd" in
    build) for i in "$@"; do build_one "$i"; done ;;
    delegate) [ $# -ge 1 ] || die "delegate IMAGE [OUT]"; delegate_one "$@" ;;
    has-delegate) podman run --rm --network=none --arch "$(image_arch "${1:?has-delegate IMAGE}")" \
        "armvww:$1" test -f /usr/local/lib/libarmnnDelegate.so ;;
    run) [ $# -gt 0 ] || die "run IMAGE -- CMD"; run_one "$@" ;;
    export) for i in "$@"; do export_one "$i"; done ;;
    lock) for i in "$@"; do lock_one "$i"; done ;;
    exists) podman image exists "armvww:${1:?exists IMAGE}" ;;
    base) base "${1:?base ARCH}" ;;   # internal (build_one, under a lock)
    manifest) base_manifest ;;         # internal (build_one, under a lock)
    env) echo "export CONTAINERS_CONF='$CONTAINERS_CONF' CONTAINERS_STORAGE_CONF='$CONTAINERS_STORAGE_CONF'" ;;
    *) usage >&2; exit 2 ;;
esac
