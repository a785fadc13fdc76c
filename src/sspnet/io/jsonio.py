"""The one JSON sanitizer, the one canonical-JSON hash and the one YAML/JSON file reader of sspnet.

`to_jsonable` turns results (dataclasses, tensors, paths, tuples, non-finite floats) into plain JSON values;
`canonical_hash` names a configuration by its content (compare's run hashes, config.json's scheme hashes);
`read_mapping_file` reads a user's YAML or JSON file (configs, scheme files) with one clear error line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """A JSON-ready copy of obj: dataclasses -> dicts, tuples/sets -> lists, tensors/numpy scalars -> Python
    values, Paths -> str, dict keys -> str, NaN/inf -> None (JSON has no NaN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # torch / numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def canonical_hash(obj: Any) -> str:
    """16 hex digits of the sha256 of obj's canonical JSON dump (keys sorted, no spaces, str() for values JSON
    lacks): equal for equal content whatever the key order. Cached runs are found by it: never change it."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def from_jsonable_floats(obj: Any, keep_none: tuple[str, ...] = ()) -> Any:
    """Inverse of the NaN -> None step for numeric lists: None inside a list becomes NaN again; dict values
    under a key in `keep_none` stay None."""
    if isinstance(obj, dict):
        return {k: (v if k in keep_none and v is None else from_jsonable_floats(v, keep_none)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [math.nan if v is None else from_jsonable_floats(v, keep_none) for v in obj]
    return obj


def read_mapping_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping stored in a YAML (.yaml/.yml) or JSON file (any other suffix is tried as YAML, which
    also reads JSON). FileNotFoundError or ValueError with one line naming the file otherwise."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} {file} not found")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {file} is not UTF-8 text") from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what} {file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ValueError(f"{what} {file}: not valid YAML ({problem}{where})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {file} must hold a mapping of names to values, got {type(data).__name__}")
    return data
