"""armvww's imports point one way (README "Layout"), checked over the source's AST.

cli -> analysis -> detector -> select -> backends -> model / preprocess / images -> errors:
a module may import modules of its own layer or of layers below it, never above; the import
graph has no cycle; and no function-level import of an armvww module exists (one that dodges
a cycle is the sign of a layer in the wrong place). Every ``import`` statement counts, at any
depth. Runs in milliseconds, needs nothing but the sources.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "armvww"

#: Layers from the bottom up: (name, module prefixes). A module belongs to the layer of its
#: longest matching prefix. ``armvww`` itself (the public API) and ``__main__`` are the top.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("armvww.errors", "armvww._version", "armvww.hints")),
    (
        "model/preprocess/images",
        (
            "armvww.model",
            "armvww.preprocess",
            "armvww.images",
            "armvww.labels",
            "armvww.samples",
            "armvww.machine",
            "armvww.files",
        ),
    ),
    ("backends", ("armvww.backends",)),
    ("select", ("armvww.select",)),
    ("detector", ("armvww.detector", "armvww.pipeline")),
    ("analysis", ("armvww.analysis",)),
    ("cli", ("armvww.cli",)),
    ("api", ("armvww", "armvww.__main__")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for k, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), k
    if rank < 0:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS in {__file__}")
    return rank


def imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported armvww module, line, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node) if n is not node}
    for node in ast.walk(tree):
        nested = id(node) in in_function
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "armvww":
                    yield alias.name, node.lineno, nested
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "armvww":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # `from pkg import submodule` imports the submodule; else a name of `target`
                yield (sub if sub in known else target), node.lineno, nested


def edges() -> list[tuple[str, str, int, bool]]:
    mods = modules()
    known = set(mods)
    out = []
    for mod, path in mods.items():
        for target, line, nested in imports(mod, path, known):
            if target != mod:
                out.append((mod, target, line, nested))
    return out


def test_every_module_has_a_layer() -> None:
    for mod in modules():
        layer_of(mod)


def test_no_upward_import() -> None:
    upward = [
        f"{mod}:{line} imports {target} "
        f"({LAYERS[layer_of(mod)][0]} -> {LAYERS[layer_of(target)][0]}: upward)"
        for mod, target, line, _ in edges()
        if layer_of(target) > layer_of(mod)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_function_level_import_of_armvww() -> None:
    nested = [
        f"{mod}:{line} imports {target} inside a function"
        for mod, target, line, inner in edges()
        if inner
    ]
    assert not nested, "function-level imports (move them to the top):\n" + "\n".join(nested)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for mod, target, _, _ in edges():
        graph[mod].add(target)
    cycles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker itself: a relative import from the model layer up to cli is found."""
    src = tmp_path / "armvww" / "model" / "store.py"
    src.parent.mkdir(parents=True)
    src.write_text("def f():\n    from ..cli import common\n")
    known = {"armvww.cli", "armvww.cli.common", "armvww.model", "armvww.model.store"}
    got = list(imports("armvww.model.store", src, known))
    assert got == [("armvww.cli.common", 2, True)]
    assert layer_of("armvww.cli.common") > layer_of("armvww.model.store")


def test_every_package_folder_is_a_regular_package() -> None:
    """setuptools' ``find:`` ships only folders with ``__init__.py``: a folder without one
    works from the source tree and is missing from the wheel and the board images."""
    missing = [
        str(d.relative_to(REPO))
        for d in sorted({p.parent for p in PACKAGE.rglob("*.py")})
        if not (d / "__init__.py").is_file()
    ]
    assert not missing, f"package folders without __init__.py: {missing}"
