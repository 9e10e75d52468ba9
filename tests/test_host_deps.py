"""tools/host-deps.sh lists every package the host lane needs, recommendations included.

The script installs with ``--no-install-recommends``; bookworm's ``python3-pyarmnn`` only
*recommends* its CpuRef backend library, without which Arm NN lists no backend at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .conftest import REPO

SCRIPT = REPO / "tools" / "host-deps.sh"


def listed_packages() -> list[str]:
    """The PKGS array of tools/host-deps.sh."""
    m = re.search(r"^PKGS=\((.*?)^\)", SCRIPT.read_text(), re.M | re.S)
    assert m, "tools/host-deps.sh has no PKGS=( ... ) array"
    return [w for line in m.group(1).splitlines() for w in line.split("#")[0].split()]


def test_install_is_explicit_and_waits_for_the_dpkg_lock() -> None:
    text = SCRIPT.read_text()
    assert "--no-install-recommends" in text
    assert "DPkg::Lock::Timeout=" in text
    assert text.count(" install -y") == 1, "one install call, fed by PKGS"


def test_arm_nn_recommendations_of_listed_packages_are_listed() -> None:
    if shutil.which("apt-cache") is None:
        pytest.skip("needs apt-cache (a Debian host)")
    pkgs = listed_packages()
    assert "python3-pyarmnn" in pkgs
    out = subprocess.run(
        [
            "apt-cache",
            "depends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *pkgs,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    recommended = set(re.findall(r"^\s+Recommends: (\S+)", out, re.M))
    armnn = {p for p in recommended if p.startswith("libarmnn")}
    assert armnn, "python3-pyarmnn recommends its backend libraries (apt-cache depends)"
    assert armnn <= set(pkgs), f"recommended Arm NN libraries not listed: {armnn - set(pkgs)}"
