#!/usr/bin/env bash
# Install the Debian packages the test suite uses on the host, when run as root and missing:
#   gcc            the C oracle of the preprocessing tests
#   python3-*      the host lane: Debian's own python3 with the distribution's pyarmnn
#                  (bookworm: Arm NN 20.08, which armvww must detect as defective)
#   util-linux, debian-archive-keyring   tools/debtree.py (trees of Debian trixie)
# Without root it only says what is missing; the tests that need it then skip with a reason
# (and fail in strict mode, ARMVWW_STRICT=1, as in CI).
set -euo pipefail
pkgs=(gcc libc6-dev python3 python3-numpy python3-pil python3-pytest python3-pyarmnn
      util-linux debian-archive-keyring)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "host-deps: no apt-get; missing ${missing[*]} (tests needing them will skip)" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "host-deps: not root; missing ${missing[*]} (tests needing them will skip)" >&2
  exit 0
fi
echo "host-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
