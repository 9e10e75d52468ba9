"""The docker/ recipes pin what they install, so a user's build gets what the lanes tested.

Every Debian package an image's list names has an exact version in its lock file (which the
Dockerfile installs as NAME=VERSION), and every pip requirement carries a hash and is
installed with --require-hashes. ``tools/images.sh lock IMAGE`` regenerates a lock.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import REPO

DOCKER = REPO / "docker"
#: image -> (Dockerfile, package lists it installs, its lock, pip requirements or None)
RECIPES = {
    "x86": ("Dockerfile.x86", ["trixie-armnn-amd64.txt"], "trixie-armnn-amd64.lock", "x86"),
    "arm64": ("Dockerfile.arm64", ["trixie-armnn-arm64.txt"], "trixie-armnn-arm64.lock", "arm64"),
    "gpuacc-pocl": (
        "Dockerfile.gpuacc-pocl",
        ["trixie-pocl-arm64.txt"],
        "trixie-pocl-arm64.lock",
        None,
    ),
}


def _names(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and ln[0] != "#"]


def _locked(image: str) -> dict[str, str]:
    """NAME -> VERSION of the image's lock and of the locks of the images it is built on."""
    chain = ["arm64", "gpuacc-pocl"] if image == "gpuacc-pocl" else [image]
    out: dict[str, str] = {}
    for name in chain:
        for line in _names(DOCKER / "packages" / RECIPES[name][2]):
            pkg, sep, version = line.partition("=")
            assert sep and version, f"{RECIPES[name][2]}: {line!r} is not NAME=VERSION"
            out[pkg] = version
    return out


@pytest.mark.parametrize("image", sorted(RECIPES))
def test_every_listed_package_has_a_locked_version(image: str) -> None:
    dockerfile, lists, lock, _ = RECIPES[image]
    text = (DOCKER / dockerfile).read_text()
    assert f"docker/packages/{lock}" in text, f"{dockerfile} does not install {lock}"
    locked = _locked(image)
    for listed in lists:
        missing = [p for p in _names(DOCKER / "packages" / listed) if p not in locked]
        assert not missing, f"not in {lock}: {missing} (tools/images.sh lock {image})"


@pytest.mark.parametrize("image", [k for k, v in RECIPES.items() if v[3]])
def test_pip_installs_only_hashed_pins(image: str) -> None:
    dockerfile, _, _, arch = RECIPES[image]
    text = (DOCKER / dockerfile).read_text()
    assert "--require-hashes" in text and f"requirements-{arch}.txt" in text
    reqs = (DOCKER / f"requirements-{arch}.txt").read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})", reqs, re.M
    )
    names = [e[0] for e in entries]
    assert "ai-edge-litert" in names
    requirement_lines = [ln for ln in reqs.splitlines() if ln and not ln.startswith(("#", " "))]
    assert len(requirement_lines) == len(entries), "a requirement without ==VERSION and a hash"
