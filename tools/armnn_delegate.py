#!/usr/bin/env python3
"""Build Arm NN's TfLite delegate (libarmnnDelegate.so) for amd64 or arm64, from the host.

The recipe is ``tools/armnn-delegate/build.sh`` (the Dockerfiles' build stage runs the same
script); this tool gives it a Debian trixie environment on any Debian host:

1. the armnn source package: ``build.sh fetch`` with a private APT configuration holding a
   ``deb-src`` entry for trixie (``.cache/armnn-delegate/apt``); the tarball is checked
   against the signed Sources index (and the .dsc when the mirror has it);
2. a trixie build tree (``tools/debtree.py``: ``docker/packages/trixie-armnn-<arch>.txt`` +
   ``trixie-delegate-build.txt``) in ``.cache/trees/trixie-<arch>-delegate-build``; arm64
   runs under qemu-user;
3. ``build.sh build`` inside it, with the TfLite headers bind-mounted.

Output: ``.cache/armnn-delegate/<arch>/libarmnnDelegate.so`` and ``stamp.json`` (Arm NN
version, the inputs' hashes). Cached by its inputs (source tarball hash, headers hash, the
recipe's hash, architecture): when the stamp matches, nothing is built and no tree is made.
armvww finds the library there (``armvww.backends.armnn_delegate``), also from inside the
project's trees and images, where the checkout is mounted.

usage::

    python3 tools/armnn_delegate.py build [--arch amd64|arm64|all] [--headers DIR] [--out DIR]

``--headers``: TfLite headers of the interpreter's vintage, a LiteRT checkout pinned to the
``ai-edge-litert`` release you run (default ``../shared/third_party/litert-tflite``). Needs
root (chroot; binfmt_misc for arm64) and apt access to Debian's archive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "tools" / "armnn-delegate"
DEBTREE = REPO / "tools" / "debtree.py"
CACHE = Path(os.environ.get("ARMVWW_DELEGATE_CACHE", REPO / ".cache" / "armnn-delegate"))
TREES = Path(os.environ.get("ARMVWW_TREES_DIR", REPO / ".cache" / "trees"))
DEFAULT_HEADERS = REPO.parent / "shared" / "third_party" / "litert-tflite"
ARCHES = ("amd64", "arm64")
SOURCES = """Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def log(msg: str) -> None:
    print(f"[armnn-delegate] {msg}", file=sys.stderr, flush=True)


def _apt_env() -> dict[str, str]:
    """A private APT configuration with trixie's deb-src entry (lists updated once)."""
    apt = CACHE / "apt"
    (apt / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list.d" / "trixie-src.sources").write_text(SOURCES)
    (apt / "status").touch()
    conf = apt / "apt.conf"
    conf.write_text(
        'Dir::Etc::sourcelist "/dev/null";\n'
        f'Dir::Etc::sourceparts "{apt}/sources.list.d";\n'
        f'Dir::State::Lists "{apt}/lists";\n'
        f'Dir::State::status "{apt}/status";\n'
        f'Dir::Cache "{apt}/cache";\n'
    )
    env = dict(os.environ, APT_CONFIG=str(conf))
    if not any((apt / "lists").glob("*Sources*")):
        subprocess.run(["apt-get", "-qq", "update"], env=env, check=True)
    return env


def fetch_source() -> tuple[Path, str]:
    """The verified armnn .orig.tar.xz and its SHA-256."""
    out = subprocess.run(
        ["sh", str(RECIPE / "build.sh"), "fetch", str(CACHE / "src")],
        env=_apt_env(),
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    tarball = Path(out.stdout.strip().splitlines()[-1])
    sha = subprocess.run(
        ["sha256sum", str(tarball)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.split()[0]
    return tarball, sha


def build(arch: str, headers: Path, out: Path) -> Path:
    """Build (or find up to date) the delegate for ``arch``; return the library's path."""
    tarball, sha = fetch_source()
    key = subprocess.run(
        [
            "sh",
            str(RECIPE / "build.sh"),
            "key",
            "--sha256",
            sha,
            "--headers",
            str(headers),
            "--arch",
            arch,
        ],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()
    lib = out / "libarmnnDelegate.so"
    stamp = out / "stamp.json"
    if lib.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        log(f"{lib} is up to date (key {key[:12]})")
        return lib
    start = time.monotonic()
    tree = TREES / f"trixie-{arch}-delegate-build"
    subprocess.run(
        [
            sys.executable,
            str(DEBTREE),
            "build",
            "--suite",
            "trixie",
            "--arch",
            arch,
            "--dest",
            str(tree),
            "--packages-file",
            str(REPO / "docker" / "packages" / f"trixie-armnn-{arch}.txt"),
            "--packages-file",
            str(REPO / "docker" / "packages" / "trixie-delegate-build.txt"),
        ],
        check=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    # Inside the tree: the checkout at /src, the tarball, the headers and OUT at their paths.
    subprocess.run(
        [
            sys.executable,
            str(DEBTREE),
            "run",
            "--tree",
            str(tree),
            "--bind",
            str(tarball.parent),
            "--bind",
            str(headers),
            "--bind",
            str(out),
            "--",
            "sh",
            "/src/tools/armnn-delegate/build.sh",
            "build",
            "--source",
            str(tarball),
            "--sha256",
            sha,
            "--headers",
            str(headers),
            "--out",
            str(out),
        ],
        check=True,
    )
    log(f"{arch}: {lib} in {time.monotonic() - start:.0f} s (tree + build)")
    return lib


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build libarmnnDelegate.so (cached by its inputs)")
    b.add_argument("--arch", default="all", choices=[*ARCHES, "all"])
    b.add_argument(
        "--headers",
        type=Path,
        default=DEFAULT_HEADERS,
        help="TfLite headers: a LiteRT checkout (default %(default)s)",
    )
    b.add_argument("--out", type=Path, help="output folder (default .cache/armnn-delegate/ARCH)")
    args = ap.parse_args(argv)
    headers = args.headers.resolve()
    if not headers.is_dir():
        log(f"error: no TfLite headers at {headers} (--headers DIR: a LiteRT checkout)")
        return 2
    for tool in ("apt-get", "dpkg-deb", "sha256sum"):
        if shutil.which(tool) is None:
            log(f"error: {tool} not found (a Debian host is needed)")
            return 2
    for arch in ARCHES if args.arch == "all" else (args.arch,):
        out = (args.out or CACHE / arch).resolve()
        print(build(arch, headers, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
