#!/usr/bin/env python3
"""Build Debian file-system trees without Docker or debootstrap, and run commands in them.

A *tree* is a directory holding the unpacked contents of a set of Debian packages (and
their dependencies) for one suite and architecture, e.g. trixie/arm64 with Arm NN 23.08.

Subcommands
-----------
build
    Resolve and download packages with a private APT configuration (own architecture,
    own empty dpkg status, own lists and .deb cache under the cache folder), then
    ``dpkg-deb -x`` every .deb into the destination.  Fixes up what ``dpkg-deb -x``
    does not do: the merged-/usr symlinks (/bin, /lib, ...), the ``update-alternatives``
    links declared by maintainer scripts (e.g. libblas.so.3 / liblapack.so.3) and a
    minimal /etc/passwd.  A stamp file in the tree records a hash of the inputs, so a
    second build with the same inputs is a no-op; .debs stay cached so rebuilds need no
    download.  APT sources are derived at run time from the host's own APT sources,
    with the host's release name replaced by ``--suite``.
run
    Run a command inside a tree.  Default mode ``chroot``: a private mount namespace
    (``unshare --mount``; ``unshare --user --map-root-user`` when not root) in which
    /proc, /sys, /dev, the repository (at /src) and the host /tmp (at /tmp) are
    bind-mounted, then ``chroot``.  Mounts vanish with the namespace, even on a crash.
    Foreign-architecture trees need ``qemu-user-static`` and a binfmt_misc entry with
    the ``F`` flag; ``run`` registers it when it is missing and it is allowed to.
    Mode ``qemu`` (arm64 only, no root needed) runs ``qemu-aarch64-static -L TREE``
    with the repository at its host path; child processes of foreign binaries then
    only work if binfmt_misc is registered.
pip-wheel
    Download binary wheels (default ``ai-edge-litert==2.3.0``) for the tree's
    architecture and Python version with the host's pip, into a cache folder.

The cache folder is ``.cache/debtree`` in the repository unless ``ARMVWW_CACHE_DIR``
is set.  Example::

    python3 tools/debtree.py build --suite trixie --arch arm64 --dest /tmp/t64 \\
        --packages-file docker/packages/trixie-armnn-arm64.txt --pip ai-edge-litert==2.3.0
    python3 tools/debtree.py run --tree /tmp/t64 -- python3 -m pytest tests
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

TOOL_VERSION = "2"
REPO_ROOT = Path(__file__).resolve().parent.parent
STAMP_NAME = ".debtree-stamp.json"

#: Debian architecture -> (GNU multiarch triplet, qemu name, wheel machine name)
ARCHES: dict[str, tuple[str, str, str]] = {
    "amd64": ("x86_64-linux-gnu", "x86_64", "x86_64"),
    "arm64": ("aarch64-linux-gnu", "aarch64", "aarch64"),
}

#: ELF magic/mask for aarch64 binfmt_misc registration (used only when the host's
#: qemu-user-static package does not provide /usr/lib/binfmt.d/qemu-aarch64.conf).
_AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"

DEFAULT_PIP_SPECS = ["ai-edge-litert==2.3.0"]
PASS_ENV_PREFIXES = ("ARMVWW_",)
#: Removed after unpacking unless --keep-docs (like dpkg path-exclude in slim images).
DOC_DIRS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
)
#: Native helper tree used to byte-compile a foreign tree's Python files.
HELPER_PACKAGES = ["python3-minimal", "libpython3-stdlib"]
PASS_ENV = ("TERM", "COLUMNS", "LINES", "CI", "NO_COLOR", "FORCE_COLOR")


class DebtreeError(RuntimeError):
    """A user-facing failure."""


def log(msg: str) -> None:
    print(f"[debtree] {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> NoReturn:
    log(f"error: {msg}")
    sys.exit(2)


def cache_dir() -> Path:
    env = os.environ.get("ARMVWW_CACHE_DIR")
    return Path(env).resolve() if env else REPO_ROOT / ".cache" / "debtree"


def host_arch() -> str:
    machine = platform.machine()
    for arch, (_, qemu, _) in ARCHES.items():
        if machine == qemu:
            return arch
    return machine


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """One APT source entry (deb822 paragraph or one-line entry)."""

    uris: list[str]
    suites: list[str]
    components: list[str]
    signed_by: str | None = None
    origin: str = ""


def _parse_deb822(text: str, origin: str) -> list[Source]:
    out: list[Source] = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += "\n" + line.strip()
                continue
            if ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if not fields or "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        out.append(
            Source(
                uris=fields.get("uris", "").split(),
                suites=fields.get("suites", "").split(),
                components=fields.get("components", "").split(),
                signed_by=fields.get("signed-by") or None,
                origin=origin,
            )
        )
    return out


def _parse_one_line(text: str, origin: str) -> list[Source]:
    out: list[Source] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        opts: dict[str, str] = {}
        m = re.match(r"^(deb|deb-src)\s+\[([^\]]*)\]\s+(.*)$", line)
        if m:
            kind, optstr, rest = m.groups()
            for opt in optstr.split():
                k, _, v = opt.partition("=")
                opts[k.lower()] = v
        else:
            kind, _, rest = line.partition(" ")
        if kind != "deb":
            continue
        parts = rest.split()
        if len(parts) < 2:
            continue
        out.append(Source([parts[0]], [parts[1]], parts[2:], opts.get("signed-by"), origin))
    return out


def host_sources() -> list[Source]:
    """Every enabled binary source of the host's APT configuration."""
    etc = Path("/etc/apt")
    out: list[Source] = []
    main = etc / "sources.list"
    if main.is_file():
        out += _parse_one_line(main.read_text(), str(main))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for p in sorted(parts.iterdir()):
            if p.suffix == ".list":
                out += _parse_one_line(p.read_text(), str(p))
            elif p.suffix == ".sources":
                out += _parse_deb822(p.read_text(), str(p))
    return out


def host_codename() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"') or None
    except OSError:
        pass
    return None


def _is_debian_archive(src: Source) -> bool:
    if src.signed_by and "debian-archive" in src.signed_by:
        return True
    return any("debian" in u.split("://", 1)[-1].split("/", 1)[-1] for u in src.uris)


def derive_sources(suite: str) -> list[Source]:
    """Host's Debian sources with the host release name replaced by ``suite``."""
    codename = host_codename()
    srcs = host_sources()
    if not codename:
        # Fall back to the release name of the first Debian archive source.
        for s in srcs:
            if _is_debian_archive(s) and s.suites:
                codename = s.suites[0].split("-", 1)[0]
                break
    if not codename:
        raise DebtreeError("cannot determine the host's Debian release name")
    out: list[Source] = []
    for s in srcs:
        if not _is_debian_archive(s):
            continue
        suites = [
            suite + x[len(codename) :]
            for x in s.suites
            if x == codename or x.startswith(codename + "-")
        ]
        if suites:
            out.append(Source(s.uris, suites, s.components, s.signed_by, s.origin))
    if not out:
        raise DebtreeError(
            "no Debian archive found in the host's APT sources "
            "(/etc/apt/sources.list, /etc/apt/sources.list.d/*.sources|*.list)"
        )
    return out


def render_deb822(sources: Iterable[Source]) -> str:
    paras = []
    for s in sources:
        lines = [
            "Types: deb",
            f"URIs: {' '.join(s.uris)}",
            f"Suites: {' '.join(s.suites)}",
            f"Components: {' '.join(s.components)}",
        ]
        if s.signed_by:
            lines.append("Signed-By: " + s.signed_by.replace("\n", "\n "))
        paras.append("\n".join(lines))
    return "\n\n".join(paras) + "\n"


# --------------------------------------------------------------------------- apt


@dataclass
class AptEnv:
    """A private APT configuration for one suite/architecture."""

    suite: str
    arch: str
    root: Path
    debs: Path
    conf: Path = field(init=False)

    def __post_init__(self) -> None:
        self.conf = self.root / "apt.conf"

    def setup(self) -> None:
        r = self.root
        for d in ("lists/partial", "cache", "apt.conf.d", "sources.list.d", "preferences.d", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (self.debs / "partial").mkdir(parents=True, exist_ok=True)
        (r / "status").touch()
        (r / "sources.list").write_text("")
        (r / "preferences").write_text("")
        (r / "sources.list.d" / "debtree.sources").write_text(
            render_deb822(derive_sources(self.suite))
        )
        (r / "apt.conf.d" / "50host-acquire.conf").write_text(self._host_acquire_conf())
        conf = {
            "Dir::Etc::main": "/dev/null",
            "Dir::Etc::parts": f"{r}/apt.conf.d/",
            "Dir::Etc::sourcelist": f"{r}/sources.list",
            "Dir::Etc::sourceparts": f"{r}/sources.list.d/",
            "Dir::Etc::preferences": f"{r}/preferences",
            "Dir::Etc::preferencesparts": f"{r}/preferences.d/",
            "Dir::State": f"{r}/",
            "Dir::State::lists": f"{r}/lists/",
            "Dir::State::status": f"{r}/status",
            "Dir::Cache": f"{r}/cache/",
            "Dir::Cache::archives": f"{self.debs}/",
            "Dir::Log": f"{r}/log/",
            "APT::Architecture": self.arch,
            "APT::Install-Recommends": "false",
            "APT::Install-Suggests": "false",
            "APT::Get::Assume-Yes": "true",
            "Debug::NoLocking": "true",
            "Acquire::Languages": "none",
            "Acquire::GzipIndexes": "true",
            "Acquire::Retries": "3",
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled": "false",
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled": "false",
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled": "false",
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled": "false",
            "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled": "false",
        }
        if os.geteuid() == 0:
            conf["APT::Sandbox::User"] = "root"
        text = "".join(f'{k} "{v}";\n' for k, v in conf.items())
        text += f'APT::Architectures {{ "{self.arch}"; }};\n'
        self.conf.write_text(text)

    @staticmethod
    def _host_acquire_conf() -> str:
        """Network-related settings (proxies, validity checks) of the host's APT config."""
        try:
            dump = subprocess.run(
                ["apt-config", "dump"], check=True, capture_output=True, text=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return ""
        keep = re.compile(
            r"^Acquire::(([a-z]+::)?Proxy|[a-z]+::Proxy::|Check-Valid-Until|Check-Date|"
            r"https?::(Timeout|Pipeline-Depth|Verify-Peer|CaInfo)|ForceIPv4|ForceIPv6)",
            re.IGNORECASE,
        )
        return "".join(line + "\n" for line in dump.splitlines() if keep.match(line))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["APT_CONFIG"] = str(self.conf)
        env["DEBIAN_FRONTEND"] = "noninteractive"
        env["LC_ALL"] = "C"
        return env

    def apt_get(self, *args: str, capture: bool = False) -> str:
        cmd = ["apt-get", "-q", *args]
        proc = subprocess.run(
            cmd,
            env=self.env(),
            text=True,
            stdout=subprocess.PIPE if capture else sys.stderr,
            stderr=subprocess.PIPE if capture else None,
        )
        if proc.returncode != 0:
            detail = (proc.stderr or "") if capture else ""
            raise DebtreeError(f"{shlex.join(cmd)} failed ({proc.returncode})\n{detail}")
        return proc.stdout or ""

    def lists_age(self) -> float | None:
        rel = list((self.root / "lists").glob("*_Packages*"))
        if not rel:
            return None
        return time.time() - min(p.stat().st_mtime for p in rel)

    def update(self) -> None:
        self.apt_get("update")

    def resolve(self, packages: Sequence[str]) -> list[tuple[str, str, str]]:
        """(package, version, arch) of everything ``install`` would unpack."""
        out = self.apt_get("-s", "install", *packages, capture=True)
        pkgs = []
        for line in out.splitlines():
            m = re.match(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", line)
            if m:
                name, ver, arch = m.groups()
                pkgs.append((name.split(":", 1)[0], ver, arch))
        if not pkgs:
            raise DebtreeError("apt resolved no packages:\n" + out)
        return pkgs

    def download(self, packages: Sequence[str]) -> None:
        self.apt_get("install", "--download-only", *packages)

    def deb_path(self, name: str, ver: str, arch: str) -> Path:
        return self.debs / f"{name}_{ver.replace(':', '%3a')}_{arch}.deb"


# --------------------------------------------------------------------------- tree fix-ups


def read_package_files(files: Sequence[Path]) -> list[str]:
    pkgs: list[str] = []
    for f in files:
        for line in f.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                pkgs.extend(line.split())
    seen: set[str] = set()
    return [p for p in pkgs if not (p in seen or seen.add(p))]


def premake_usrmerge(tree: Path, arch: str) -> None:
    """Create the merged-/usr symlinks before unpacking (trixie is merged-/usr only)."""
    names = ["bin", "sbin", "lib"] + (["lib64"] if arch == "amd64" else [])
    for name in names:
        (tree / "usr" / name).mkdir(parents=True, exist_ok=True)
        link = tree / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(f"usr/{name}")


def _postinst_text(deb: Path) -> str:
    proc = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == "postinst":
                f = tar.extractfile(member)
                return f.read().decode("utf-8", "replace") if f else ""
    return ""


def _alternatives_from_script(text: str, triplet: str) -> list[tuple[str, str, str, int]]:
    """(link, name, path, priority) triples declared with ``update-alternatives --install``."""
    text = text.replace("\\\n", " ")
    out: list[tuple[str, str, str, int]] = []
    subst = {
        "DEB_HOST_MULTIARCH": triplet,
        "multiarch": triplet,
        "MULTIARCH": triplet,
        "triplet": triplet,
    }
    for line in text.splitlines():
        if "update-alternatives" not in line or "--install" not in line:
            continue
        for var, val in subst.items():
            line = line.replace("${" + var + "}", val).replace("$" + var, val)
        try:
            toks = shlex.split(line, comments=True)
        except ValueError:
            continue
        try:
            i = toks.index("--install")
            link, name, path, prio = toks[i + 1 : i + 5]
            priority = int(prio)
        except (ValueError, IndexError):
            continue
        out.append((link, name, path, priority))
        j = i + 5
        while j + 3 < len(toks) and toks[j] == "--slave":
            out.append((toks[j + 1], toks[j + 2], toks[j + 3], priority))
            j += 4
    return [x for x in out if "$" not in "".join(x[:3])]


def make_alternatives(tree: Path, debs: Sequence[Path], triplet: str) -> list[str]:
    """Create the links ``update-alternatives`` would make; returns a log of them."""
    best: dict[str, tuple[int, str, str]] = {}
    for deb in debs:
        script = _postinst_text(deb)
        if "update-alternatives" not in script:
            continue
        for link, name, path, prio in _alternatives_from_script(script, triplet):
            if not (tree / path.lstrip("/")).exists():
                continue
            if name not in best or prio > best[name][0]:
                best[name] = (prio, link, path)
    made = []
    for _name, (_, link, path) in sorted(best.items()):
        dst = tree / link.lstrip("/")
        if dst.exists() and not dst.is_symlink():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink():
            dst.unlink()
        dst.symlink_to(os.path.relpath(tree / path.lstrip("/"), dst.parent))
        made.append(f"{link} -> {path}")
    return made


def basic_etc(tree: Path) -> None:
    etc = tree / "etc"
    etc.mkdir(exist_ok=True)
    if not (etc / "passwd").exists():
        (etc / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
    if not (etc / "group").exists():
        (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for d, mode in (
        ("tmp", 0o1777),
        ("root", 0o700),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
    ):
        p = tree / d
        p.mkdir(exist_ok=True)
        p.chmod(mode)


def tree_python(tree: Path) -> str | None:
    """``3.13`` for a tree with /usr/bin/python3.13."""
    vers = sorted(
        (
            p.name[len("python") :]
            for p in (tree / "usr/bin").glob("python3.*")
            if re.fullmatch(r"python3\.\d+", p.name)
        ),
        key=lambda v: int(v.split(".")[1]),
    )
    return vers[-1] if vers else None


# --------------------------------------------------------------------------- wheels


def wheel_platforms(arch: str) -> list[str]:
    machine = ARCHES[arch][2]
    plats = [f"manylinux2014_{machine}"]
    plats += [f"manylinux_2_{minor}_{machine}" for minor in range(17, 42)]
    return plats


def pip_download(specs: Sequence[str], arch: str, pyver: str, dest: Path) -> list[Path]:
    """Download binary wheels (no dependencies) for ``arch``/``pyver`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    tag = pyver.replace(".", "")
    have = []
    for spec in specs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", spec.strip())
        norm = re.sub(r"[-_.]+", "_", m.group(1)).lower() if m else ""
        hits = [
            w
            for w in dest.glob("*.whl")
            if m
            and w.name.lower().startswith(f"{norm}-{m.group(2)}-")
            and _wheel_ok(w, arch)
            and (f"cp{tag}" in w.name or "-none-" in w.name or "abi3" in w.name)
        ]
        if not hits:
            break
        have += hits
    else:
        log("wheels already cached: " + ", ".join(w.name for w in have))
        return sorted(dest.glob("*.whl"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--no-deps",
        "--python-version",
        pyver,
        "--implementation",
        "cp",
        "--abi",
        f"cp{tag}",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for plat in [*wheel_platforms(arch), "any"]:
        cmd += ["--platform", plat]
    cmd += ["-d", str(dest), *specs]
    log("$ " + shlex.join([*cmd[:3], "...", *specs]))
    proc = subprocess.run(cmd, stdout=sys.stderr)
    if proc.returncode != 0:
        raise DebtreeError(f"pip download failed ({proc.returncode})")
    return sorted(dest.glob("*.whl"))


def _wheel_ok(whl: Path, arch: str) -> bool:
    tags = whl.name[:-4].split("-")[-1]
    return any(t == "any" or t.endswith(ARCHES[arch][2]) for t in tags.split("."))


def unpack_wheel(whl: Path, tree: Path) -> None:
    site = tree / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            name = info.filename
            top, _, rest = name.partition("/")
            if top.endswith(".data") and rest:
                kind, _, sub = rest.partition("/")
                if kind in ("purelib", "platlib"):
                    target = site / sub
                elif kind == "scripts":
                    target = tree / "usr/bin" / sub
                else:
                    continue
            else:
                target = site / name
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (info.external_attr >> 16) & 0o777
            target.chmod(mode if mode else (0o755 if "/bin/" in str(target) else 0o644))


# --------------------------------------------------------------------------- build


def _file_digest(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_key(args: argparse.Namespace, packages: list[str], wheels: list[Path]) -> str:
    blob = json.dumps(
        {
            "tool": TOOL_VERSION,
            "suite": args.suite,
            "arch": args.arch,
            "packages": sorted(packages),
            "wheels": [(w.name, _file_digest(w)) for w in wheels],
            "pip": sorted(args.pip or []),
            "keep_docs": bool(args.keep_docs),
            "compile": not args.no_compile,
            "qemu": not args.no_qemu,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def read_stamp(tree: Path) -> dict[str, object] | None:
    try:
        data = json.loads((tree / STAMP_NAME).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def cmd_build(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    dest = Path(args.dest).resolve()
    packages = read_package_files([Path(f) for f in args.packages_file])
    wheels: list[Path] = []
    for d in args.wheel_dir or []:
        wheels += sorted(Path(d).glob("*.whl"))
    for w in wheels:
        if not _wheel_ok(w, args.arch):
            raise DebtreeError(f"wheel {w.name} is not for {args.arch}")
    key = build_key(args, packages, wheels)
    stamp = read_stamp(dest)
    if stamp and stamp.get("key") == key and not args.force:
        log(f"{dest} is up to date ({time.monotonic() - t0:.2f} s)")
        _print_tree_env(dest, stamp)
        return 0
    if dest.exists() and any(dest.iterdir()) and stamp is None and not args.force:
        raise DebtreeError(f"{dest} exists, is not empty and is not a debtree tree (use --force)")

    cache = cache_dir()
    apt = AptEnv(args.suite, args.arch, cache / "apt" / f"{args.suite}-{args.arch}", cache / "debs")
    apt.setup()
    age = apt.lists_age()
    if args.refresh or age is None or age > args.max_age_hours * 3600:
        log(f"apt-get update ({args.suite}/{args.arch})")
        apt.update()
    else:
        log(
            f"package lists are {age / 3600:.1f} h old; skipping apt-get update "
            "(--refresh forces it)"
        )
    resolved = apt.resolve(packages)
    log(f"{len(resolved)} packages to unpack")
    missing = [r for r in resolved if not apt.deb_path(*r).is_file()]
    if missing:
        log(f"downloading {len(missing)} .debs")
        apt.download(packages)
    debs = [apt.deb_path(*r) for r in resolved]
    absent = [d.name for d in debs if not d.is_file()]
    if absent:
        raise DebtreeError("not in the .deb cache after download: " + ", ".join(absent))
    t_dl = time.monotonic()

    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    premake_usrmerge(partial, args.arch)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    triplet = ARCHES[args.arch][0]
    made = make_alternatives(partial, debs, triplet)
    for m in made:
        log(f"alternative: {m}")
    basic_etc(partial)
    pyver = tree_python(partial)
    if args.pip:
        if not pyver:
            raise DebtreeError("--pip given but the tree has no python3.X")
        wdir = cache / "wheels" / f"{args.arch}-cp{pyver.replace('.', '')}"
        got = pip_download(args.pip, args.arch, pyver, wdir)
        names = {
            re.sub(r"[-_.]+", "_", s.split("=")[0].split("<")[0].split(">")[0]).lower()
            for s in args.pip
        }
        wheels += [w for w in got if w.name.split("-")[0].lower() in names]
    for w in wheels:
        log(f"unpacking wheel {w.name}")
        unpack_wheel(w, partial)
    (partial / "src").mkdir(exist_ok=True)
    qemu_path = None
    if args.arch != host_arch() and not args.no_qemu:
        qemu_path = str(fetch_suite_qemu(args.suite, args.arch))
    if not args.keep_docs:
        for sub in DOC_DIRS:
            shutil.rmtree(partial / sub, ignore_errors=True)
    if pyver and not args.no_compile:
        precompile(partial, args.arch, args.suite, pyver)

    stamp_data: dict[str, object] = {
        "key": key,
        "suite": args.suite,
        "arch": args.arch,
        "python": pyver,
        "packages": [f"{n}={v} [{a}]" for n, v, a in resolved],
        "wheels": [w.name for w in wheels],
        "alternatives": made,
        "ld_library_path": _ld_library_path(partial, triplet),
        "qemu": qemu_path,
        "built_unix": int(time.time()),
    }
    (partial / STAMP_NAME).write_text(json.dumps(stamp_data, indent=1) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    t1 = time.monotonic()
    log(
        f"built {dest}: {len(debs)} packages, resolve+download {t_dl - t0:.1f} s, "
        f"unpack {t1 - t_dl:.1f} s, total {t1 - t0:.1f} s"
    )
    _print_tree_env(dest, stamp_data)
    return 0


def precompile(tree: Path, arch: str, suite: str, pyver: str) -> None:
    """Byte-compile the tree's Python files (Debian does it in postinst, dpkg-deb -x does not).

    Without .pyc files every import compiles from source, which under qemu makes
    ``import numpy`` take ~25 s. A foreign tree is compiled by a native helper tree
    of the same suite (same Python minor version, and .pyc files are
    architecture-independent): a few seconds instead of minutes under emulation.
    """
    t0 = time.monotonic()
    native = host_arch()
    dirs = [f"/usr/lib/python{pyver}", "/usr/lib/python3/dist-packages"]
    me = [sys.executable, str(Path(__file__).resolve())]
    if arch == native:
        argv = [
            *me,
            "run",
            "--tree",
            str(tree),
            "--no-repo",
            "--no-tmp",
            "--",
            "python3",
            "-m",
            "compileall",
            "-q",
            "-j0",
            *dirs,
        ]
    else:
        helper = cache_dir() / "helper" / f"{suite}-{native}"
        hfile = cache_dir() / "helper" / "packages.txt"
        hfile.parent.mkdir(parents=True, exist_ok=True)
        hfile.write_text("\n".join(HELPER_PACKAGES) + "\n")
        hb = subprocess.run(
            [
                *me,
                "build",
                "--suite",
                suite,
                "--arch",
                native,
                "--dest",
                str(helper),
                "--packages-file",
                str(hfile),
                "--no-compile",
            ],
            stdout=sys.stderr,
        )
        if hb.returncode != 0 or tree_python(helper) != pyver:
            log(f"warning: no native python{pyver} helper; .pyc files will be written lazily")
            return
        argv = [
            *me,
            "run",
            "--tree",
            str(helper),
            "--no-repo",
            "--no-tmp",
            "--bind",
            f"{tree}:/target",
            "--",
            "python3",
            "-m",
            "compileall",
            "-q",
            "-j0",
            "-s",
            "/target",
            "-p",
            "/",
            *("/target" + d for d in dirs),
        ]
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        log(f"warning: byte-compiling failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    else:
        log(f"byte-compiled {', '.join(dirs)} in {time.monotonic() - t0:.1f} s")


def fetch_suite_qemu(suite: str, arch: str) -> Path:
    """Static qemu-user for ``arch`` from ``suite``'s host-architecture ``qemu-user`` package.

    bookworm's qemu 7.2 segfaults in LiteRT (XNNPACK and builtin kernels) and runs
    Arm NN 3-5x slower than trixie's qemu 10; the suite's qemu is statically linked, so
    it runs on any host.  Cached as <cache>/qemu/<suite>/qemu-<name>; the .deb is deleted.
    """
    qname = ARCHES[arch][1]
    out_dir = cache_dir() / "qemu" / suite
    binary = out_dir / f"qemu-{qname}"
    if binary.is_file():
        return binary
    native = host_arch()
    apt = AptEnv(suite, native, cache_dir() / "apt" / f"{suite}-{native}", cache_dir() / "debs")
    apt.setup()
    if apt.lists_age() is None:
        apt.update()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.deb"):
        old.unlink()
    log(f"downloading {suite}'s qemu-user ({native}) for qemu-{qname}")
    r = subprocess.run(
        ["apt-get", "-q", "download", "qemu-user"], cwd=out_dir, env=apt.env(), stdout=sys.stderr
    )
    debs = list(out_dir.glob("qemu-user_*.deb"))
    if r.returncode != 0 or not debs:
        raise DebtreeError(f"could not download {suite}'s qemu-user")
    fs = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=fs.stdout, mode="r|") as tar:
        for m in tar:
            if m.name in (f"./usr/bin/qemu-{qname}", f"usr/bin/qemu-{qname}") and m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                tmp = binary.with_suffix(".tmp")
                with open(tmp, "wb") as dst:
                    shutil.copyfileobj(f, dst)
                tmp.chmod(0o755)
                tmp.rename(binary)
                break
    if fs.stdout:
        fs.stdout.close()
    fs.kill()
    fs.wait()
    debs[0].unlink()
    if not binary.is_file():
        raise DebtreeError(f"qemu-{qname} not found in {debs[0].name}")
    return binary


def _ld_library_path(tree: Path, triplet: str) -> str:
    """Directories a program needs on LD_LIBRARY_PATH if alternatives links are missing."""
    dirs = []
    for sub in ("blas", "lapack"):
        base = f"/usr/lib/{triplet}"
        if (tree / base.lstrip("/") / sub).is_dir() and not (
            tree / base.lstrip("/") / f"lib{sub}.so.3"
        ).exists():
            dirs.append(f"{base}/{sub}")
    return ":".join(dirs)


def _print_tree_env(tree: Path, stamp: dict[str, object]) -> None:
    ldp = stamp.get("ld_library_path")
    if ldp:
        print(f"LD_LIBRARY_PATH={ldp}")


# --------------------------------------------------------------------------- run


def tree_arch(tree: Path) -> str:
    stamp = read_stamp(tree)
    if stamp and isinstance(stamp.get("arch"), str):
        return str(stamp["arch"])
    for arch, (triplet, _, _) in ARCHES.items():
        if (tree / "usr/lib" / triplet / "libc.so.6").exists():
            return arch
    raise DebtreeError(f"cannot tell the architecture of {tree} (use --arch)")


BINFMT = Path("/proc/sys/fs/binfmt_misc")


def choose_qemu(tree: Path, arch: str, override: str | None) -> str:
    """--qemu / $ARMVWW_QEMU, else the suite's qemu fetched by build, else the host's."""
    qname = ARCHES[arch][1]
    cand = override or os.environ.get("ARMVWW_QEMU")
    if not cand:
        q = (read_stamp(tree) or {}).get("qemu")
        if isinstance(q, str) and Path(q).is_file():
            cand = q
    if not cand:
        cand = shutil.which(f"qemu-{qname}-static") or shutil.which(f"qemu-{qname}")
    if not cand or not Path(cand).is_file():
        raise DebtreeError(
            f"no qemu-{qname}: rebuild the tree without --no-qemu or "
            "apt-get install qemu-user-static"
        )
    return str(Path(cand).resolve())


def binfmt_entry(qemu_bin: str) -> str:
    """Name of this tool's binfmt_misc entry for one qemu binary."""
    digest = hashlib.sha256(qemu_bin.encode()).hexdigest()[:8]
    return f"debtree-{Path(qemu_bin).name}-{digest}"


def binfmt_ok(name: str, qemu_bin: str) -> bool:
    entry = BINFMT / name
    try:
        text = entry.read_text()
    except OSError:
        return False
    m = re.search(r"^flags: *(\S*)", text, re.M)
    return (
        text.startswith("enabled")
        and f"interpreter {qemu_bin}\n" in text
        and bool(m and "F" in m.group(1))
    )


def register_binfmt(name: str, qemu_bin: str, arch: str) -> None:
    """Register ``qemu_bin`` (flags OCF: the binary is opened now, so it works in chroots).

    The kernel tries the most recently registered matching entry first, so this entry
    takes precedence over a qemu-user-static entry registered before it.
    """
    if arch != "arm64":
        raise DebtreeError(f"no binfmt_misc magic known for {arch}")
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    if (BINFMT / name).exists():
        (BINFMT / name).write_text("-1")
    (BINFMT / "register").write_text(f":{name}:M::{_AARCH64_MAGIC}:{_AARCH64_MASK}:{qemu_bin}:OCF")
    log(f"registered binfmt_misc entry {name} -> {qemu_bin}")


@dataclass
class Bind:
    src: Path
    dst: str


def parse_binds(specs: Sequence[str]) -> list[Bind]:
    out = []
    for s in specs:
        src, sep, dst = s.partition(":")
        if not sep:
            dst = src
        if not dst.startswith("/"):
            raise DebtreeError(f"--bind {s}: destination must be absolute")
        out.append(Bind(Path(src).resolve(), dst))
    return out


def run_env(extra: Sequence[str], repo_path: str | None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if repo_path:
        env["PYTHONPATH"] = repo_path
    for k, v in os.environ.items():
        if k in PASS_ENV or k.startswith(PASS_ENV_PREFIXES):
            env[k] = v
    for item in extra:
        k, sep, v = item.partition("=")
        if not sep:
            raise DebtreeError(f"--env {item}: expected K=V")
        env[k] = v
    return env


def _inside_workdir(binds: Sequence[Bind], default: str) -> str:
    cwd = Path.cwd().resolve()
    for b in binds:
        try:
            rel = cwd.relative_to(b.src)
        except ValueError:
            continue
        return str(Path(b.dst) / rel)
    return default


def cmd_run(args: argparse.Namespace) -> int:
    tree = Path(args.tree).resolve()
    if not (tree / "usr/bin").is_dir():
        raise DebtreeError(f"{tree} is not a tree (no usr/bin)")
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise DebtreeError("no command given (run --tree T -- CMD ...)")
    arch = args.arch or tree_arch(tree)
    foreign = arch != host_arch()
    mode = args.mode
    qemu_bin = choose_qemu(tree, arch, args.qemu) if foreign else ""
    if foreign and mode in ("auto", "chroot"):
        name = binfmt_entry(qemu_bin)
        ok = binfmt_ok(name, qemu_bin)
        if not ok and os.geteuid() == 0:
            try:
                register_binfmt(name, qemu_bin, arch)
                ok = binfmt_ok(name, qemu_bin)
            except (OSError, subprocess.CalledProcessError, DebtreeError) as e:
                log(f"could not register binfmt_misc for {qemu_bin}: {e}")
        if not ok:
            if mode == "chroot":
                raise DebtreeError(
                    f"chroot into a {arch} tree needs a binfmt_misc entry (run as root)"
                )
            log("binfmt_misc unavailable: falling back to --mode qemu")
            mode = "qemu"
    if mode == "auto":
        mode = "chroot"
    if mode == "qemu":
        return _run_qemu(args, tree, arch, cmd, qemu_bin)
    return _run_chroot(args, tree, cmd)


def _run_chroot(args: argparse.Namespace, tree: Path, cmd: list[str]) -> int:
    binds: list[Bind] = []
    if not args.no_repo:
        binds.append(Bind(REPO_ROOT, args.repo_dest))
    if not args.no_tmp:
        binds.append(Bind(Path("/tmp"), "/tmp"))
    binds += parse_binds(args.bind or [])
    repo_inside = None if args.no_repo else args.repo_dest
    env = run_env(args.env or [], repo_inside)
    # The most specific bind wins: --bind entries, then /tmp, then the repository.
    workdir = args.workdir or _inside_workdir(binds[::-1], repo_inside or "/")
    spec = {
        "tree": str(tree),
        "binds": [[str(b.src), b.dst] for b in binds],
        "env": env,
        "workdir": workdir,
        "cmd": cmd,
    }
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[1:1] = ["--user", "--map-root-user"]
    argv = [
        *unshare,
        "--",
        sys.executable,
        str(Path(__file__).resolve()),
        "_enter",
        json.dumps(spec),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


def cmd_enter(args: argparse.Namespace) -> int:
    """Inside the private mount namespace: bind-mount, chroot, exec."""
    spec = json.loads(args.spec)
    tree = Path(spec["tree"])
    system = [("/proc", "/proc"), ("/sys", "/sys"), ("/dev", "/dev")]
    for src, dst in system + [tuple(b) for b in spec["binds"]]:
        target = tree / dst.lstrip("/")
        if Path(src).is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        r = subprocess.run(["mount", "--rbind", src, str(target)], capture_output=True, text=True)
        if r.returncode != 0:
            raise DebtreeError(f"mount --rbind {src} {target}: {r.stderr.strip()}")
    os.chroot(tree)
    try:
        os.chdir(spec["workdir"])
    except OSError:
        os.chdir("/")
    cmd = spec["cmd"]
    try:
        os.execvpe(cmd[0], cmd, spec["env"])
    except OSError as e:
        log(f"cannot execute {cmd[0]} in {tree}: {e}")
        return 127


def _resolve_in_tree(tree: Path, name: str) -> str:
    if "/" in name:
        return str(tree / name.lstrip("/")) if name.startswith("/") else name
    for d in ("usr/local/bin", "usr/bin", "usr/sbin"):
        p = tree / d / name
        if p.exists():
            return str(p)
    raise DebtreeError(f"{name} not found in {tree}")


def _run_qemu(args: argparse.Namespace, tree: Path, arch: str, cmd: list[str], qbin: str) -> int:
    if not qbin:
        raise DebtreeError("--mode qemu is for foreign-architecture trees")
    if args.bind:
        log("--mode qemu: --bind is ignored; host paths are visible as they are")
    repo = None if args.no_repo else str(REPO_ROOT)
    env = run_env(args.env or [], repo)
    env["QEMU_LD_PREFIX"] = str(tree)
    stamp = read_stamp(tree) or {}
    ldp = stamp.get("ld_library_path")
    if ldp and "LD_LIBRARY_PATH" not in env:
        env["LD_LIBRARY_PATH"] = str(ldp)
    argv = [qbin, "-L", str(tree), _resolve_in_tree(tree, cmd[0]), *cmd[1:]]
    workdir = args.workdir or os.getcwd()
    proc = subprocess.run(argv, env=env, cwd=workdir)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def cmd_pip_wheel(args: argparse.Namespace) -> int:
    dest = (
        Path(args.dest)
        if args.dest
        else (cache_dir() / "wheels" / f"{args.arch}-cp{args.python_version.replace('.', '')}")
    )
    got = pip_download(args.specs or DEFAULT_PIP_SPECS, args.arch, args.python_version, dest)
    for w in got:
        print(w)
    return 0


# --------------------------------------------------------------------------- CLI


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="debtree.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Cache folder: $ARMVWW_CACHE_DIR or <repo>/.cache/debtree. "
        "See the module docstring.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,run,pip-wheel}")

    b = sub.add_parser("build", help="build a tree from package lists")
    b.add_argument("--suite", required=True, help="Debian suite, e.g. trixie")
    b.add_argument("--arch", required=True, choices=sorted(ARCHES))
    b.add_argument("--dest", required=True, help="tree directory to create or update")
    b.add_argument(
        "--packages-file",
        action="append",
        required=True,
        metavar="FILE",
        help="package list, one per line, '#' comments (repeatable)",
    )
    b.add_argument(
        "--wheel-dir",
        action="append",
        metavar="DIR",
        help="unpack every *.whl in DIR into /usr/lib/python3/dist-packages (repeatable)",
    )
    b.add_argument(
        "--pip",
        action="append",
        metavar="SPEC",
        help="download SPEC's wheel for the tree (pip download --no-deps) and unpack it, "
        "e.g. ai-edge-litert==2.3.0 (repeatable)",
    )
    b.add_argument("--refresh", action="store_true", help="always run apt-get update")
    b.add_argument(
        "--max-age-hours",
        type=float,
        default=24.0,
        help="re-run apt-get update when the cached lists are older (default 24)",
    )
    b.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    b.add_argument(
        "--keep-docs",
        action="store_true",
        help="keep /usr/share/{doc,man,info,locale,lintian} (removed by default)",
    )
    b.add_argument(
        "--no-qemu",
        action="store_true",
        help="foreign arch: do not fetch the suite's static qemu-user (use the host's)",
    )
    b.add_argument(
        "--no-compile", action="store_true", help="do not byte-compile the tree's Python files"
    )
    b.set_defaults(func=cmd_build)

    r = sub.add_parser(
        "run",
        help="run a command inside a tree",
        description="Run CMD inside TREE. chroot mode: repo at --repo-dest (default /src, also "
        "on PYTHONPATH), host /tmp at /tmp, cwd mapped when inside a bind. "
        "qemu mode: host paths as they are, PYTHONPATH=<repo>.",
    )
    r.add_argument("--tree", required=True)
    r.add_argument("--arch", choices=sorted(ARCHES), help="default: from the tree's stamp")
    r.add_argument(
        "--bind", action="append", metavar="SRC[:DST]", help="extra bind mount (repeatable)"
    )
    r.add_argument(
        "--env", action="append", metavar="K=V", help="environment variable (repeatable)"
    )
    r.add_argument(
        "--mode",
        choices=("auto", "chroot", "qemu"),
        default="auto",
        help="auto: chroot, or qemu -L for a foreign tree when binfmt_misc is unavailable",
    )
    r.add_argument(
        "--qemu",
        metavar="PATH",
        help="qemu-user binary (default: $ARMVWW_QEMU, the suite's qemu fetched by build, "
        "then the host's qemu-<arch>-static)",
    )
    r.add_argument("--repo-dest", default="/src", help="where the repository appears (chroot mode)")
    r.add_argument("--no-repo", action="store_true", help="do not make the repository visible")
    r.add_argument("--no-tmp", action="store_true", help="do not bind the host /tmp at /tmp")
    r.add_argument("--workdir", help="working directory inside the tree")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("pip-wheel", help="download wheels for a tree's arch/Python")
    w.add_argument("--arch", required=True, choices=sorted(ARCHES))
    w.add_argument("--python-version", default="3.13")
    w.add_argument("--dest", help="default: <cache>/wheels/<arch>-cpXY")
    w.add_argument(
        "specs", nargs="*", metavar="SPEC", help=f"default: {' '.join(DEFAULT_PIP_SPECS)}"
    )
    w.set_defaults(func=cmd_pip_wheel)

    e = sub.add_parser("_enter", help=argparse.SUPPRESS)
    e.add_argument("spec")
    e.set_defaults(func=cmd_enter)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DebtreeError as e:
        die(str(e))


if __name__ == "__main__":
    sys.exit(main())
