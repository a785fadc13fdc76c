"""The layering of the package: every module imports only the subpackages below it (docs/architecture.md), no
module imports itself through a circle of imports, and `import sspnet` reaches every subpackage."""

import ast
import textwrap
from pathlib import Path

import pytest

import sspnet

SRC = Path(sspnet.__file__).resolve().parent
BASE = {"io", "distributed", "_version"}
ALLOWED = {  # subpackage -> the sspnet subpackages its modules may import (besides itself)
    "_version": set(),
    "io": {"_version"},
    "distributed": {"io", "_version"},
    "data": BASE,
    "nn": BASE | {"data"},
    "attacks": BASE | {"data", "nn"},
    "train": BASE | {"data", "nn", "attacks"},
    "eval": BASE | {"data", "nn", "attacks"},
    "experiments": BASE | {"data", "nn", "attacks", "train", "eval"},
    "cli": BASE | {"data", "nn", "attacks", "train", "eval", "experiments"},
}


def _imported_subpackages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module + "." + a.name for a in node.names] if node.module == "sspnet" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sspnet" and len(parts) > 1 and parts[1] != "__version__":
                out.add(parts[1])
    return out


def test_imports_point_one_way():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if len(rel.parts) == 1:  # sspnet/__init__.py, __main__.py, distributed.py
            owner = rel.stem
            if owner not in ALLOWED:
                continue
        else:
            owner = rel.parts[0]
        for sub in _imported_subpackages(path) - {owner} - ALLOWED[owner]:
            bad.append(f"{rel} imports sspnet.{sub}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_every_subpackage_is_reachable_from_the_package():
    assert sspnet.attacks.PGD.__name__ == "PGD"
    assert callable(sspnet.eval.evaluate) and callable(sspnet.train.train)
    assert callable(sspnet.experiments.compare.run_compare) and callable(sspnet.io.to_jsonable)
    assert sspnet.nn.registry.display_name("ark") == "SSP-adap"
    assert callable(sspnet.data.load) and callable(sspnet.cli.main)


def test_experiments_export_the_attack_experiment_lazily():
    import sspnet.experiments as experiments
    from sspnet.experiments.attack import AttackRunConfig, run_attack

    assert experiments.run_attack is run_attack and experiments.AttackRunConfig is AttackRunConfig
    assert experiments.attack.run_attack is run_attack and {"attack", "compare", "run_attack"} <= set(dir(experiments))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        experiments.no_such_name  # noqa: B018


def _module_graph(src: Path) -> dict[str, set[str]]:
    """module -> the modules of the package rooted at `src` (a package folder) it imports.

    Every import statement counts: absolute and relative, at module level and inside functions (a lazy import
    that closes a circle still ties the two modules together: neither can be understood, tested or moved without
    the other, and which one is imported first decides whether the other sees it half-initialised; making the
    import lazy only hides the circle). `from P import X` is an edge to module P.X when X is a module, else to P
    (its __init__). Importing P.X also runs P/__init__.py, but that implicit edge to the parent package is not
    counted: it is the package structure, not a dependency the module chose."""
    root = src.name
    paths = {}
    for path in src.rglob("*.py"):
        parts = [root, *path.relative_to(src).with_suffix("").parts]
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in paths)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                for a in node.names:
                    target = f"{module}.{a.name}"
                    if target in paths:
                        out.add(target)
                    elif module in paths:
                        out.add(module)
        out.discard(name)
        graph[name] = out
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest circle [a, b, ..., a] through the first module (sorted) of every strongly connected
    component of more than one module (Tarjan's algorithm, then a breadth-first search inside the component)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    circles = []
    for component in sorted(components, key=min):
        start = min(component)
        came_from, frontier = {start: None}, [start]
        while frontier and start not in [w for v in frontier for w in graph[v]]:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & component):
                    if w not in came_from:
                        came_from[w] = v
                        nxt.append(w)
            frontier = nxt
        last = next(v for v in frontier if start in graph[v])
        path = [last]
        while came_from[path[-1]] is not None:
            path.append(came_from[path[-1]])
        circles.append([*reversed(path), start])
    return circles


def test_cycle_finder_sees_lazy_relative_and_package_imports(tmp_path):
    pkg = tmp_path / "pkg"
    for name, text in {
        "__init__.py": "from pkg.a import f\n",
        "a.py": "from . import b\ndef f():\n    return b\n",
        "b.py": "def g():\n    from pkg.sub.c import h\n",
        "sub/__init__.py": "",
        "sub/c.py": "import pkg.a\nfrom pkg import sub\n",
        "d.py": "import pkg.a\nfrom pkg.sub import c\n",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(textwrap.dedent(text))
    graph = _module_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a", "pkg.sub"} and graph["pkg.d"] == {"pkg.a", "pkg.sub.c"}
    assert _cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    (pkg / "b.py").write_text("")
    assert _cycles(_module_graph(pkg)) == []


def test_no_import_cycles():
    circles = _cycles(_module_graph(SRC))
    assert not circles, "import circles (each module imports the next):\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_import_cycles_inside_each_subpackage():
    """Every subpackage (sspnet.nn, sspnet.experiments.compare, its executors, ...) on its own: the modules inside
    it import each other without a circle, lazy imports included (`_module_graph`)."""
    graph = _module_graph(SRC)
    packages = sorted(
        n for n in graph if n != SRC.name and (SRC.parent.joinpath(*n.split(".")) / "__init__.py").is_file()
    )
    assert "sspnet.experiments.compare" in packages and "sspnet.experiments.compare.executors" in packages
    bad = []
    for pkg in packages:
        inside = {
            n: {m for m in deps if m.startswith(pkg + ".")} for n, deps in graph.items() if n.startswith(pkg + ".")
        }
        bad += [f"{pkg}: " + " -> ".join(c) for c in _cycles(inside)]
    assert not bad, "import circles inside a subpackage:\n" + "\n".join(sorted(set(bad)))
