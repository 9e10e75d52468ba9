#!/usr/bin/env bash
# Install the Debian packages the test suite uses on the host, when run as root and missing.
# Every package is listed explicitly: the install uses --no-install-recommends, so nothing a
# lane needs may come in as a mere recommendation (bookworm's python3-pyarmnn only
# *recommends* its CpuRef backend).
#   gcc, libc6-dev    the C oracle of the preprocessing tests
#   python3-*, libarmnn*  the host lane: Debian's own python3 with the distribution's pyarmnn
#                  (bookworm: Arm NN 20.08, which armvww must detect as defective), the
#                  CpuRef backend library it loads at run time, and armvww's own
#                  dependencies (python3-tqdm, python3-flatbuffers)
#   util-linux, debian-archive-keyring   mmdebstrap's keyring for the trixie base images
#   mmdebstrap, arch-test, buildah, podman, runc   tools/images.sh (make images): the docker/
#                  images built without a Docker engine
# Without root it only says what is missing; the tests that need it then skip with a reason
# (and fail in strict mode, ARMVWW_STRICT=1, as in CI).
# To add packages: append them to PKGS (one array, one install call below).
set -euo pipefail
PKGS=(
  gcc libc6-dev
  python3 python3-numpy python3-pil python3-pytest python3-tqdm python3-flatbuffers
  python3-pyarmnn libarmnn22 libarmnntfliteparser22 libarmnn-cpuref-backend22
  util-linux debian-archive-keyring
  mmdebstrap arch-test buildah podman runc
)
APT=(apt-get -o DPkg::Lock::Timeout=900)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "host-deps: no apt-get; missing ${missing[*]} (tests needing them will skip)" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "host-deps: not root; missing ${missing[*]} (tests needing them will skip;" \
    "as root: apt-get install --no-install-recommends ${missing[*]})" >&2
  exit 0
fi
echo "host-deps: installing ${missing[*]}" >&2
"${APT[@]}" update -qq
DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "host-deps: installed ${missing[*]}" >&2
