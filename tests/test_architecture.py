"""The layering of the package: every module imports only the subpackages below it (the README's
"Architecture" section), and `import sspnet` reaches every subpackage."""
import ast
from pathlib import Path

import sspnet

SRC = Path(sspnet.__file__).resolve().parent
BASE = {"io", "distributed"}
ALLOWED = {  # subpackage -> the sspnet subpackages its modules may import (besides itself)
    "io": set(),
    "distributed": {"io"},
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
