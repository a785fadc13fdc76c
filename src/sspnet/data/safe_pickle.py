"""A restricted unpickler for the CIFAR-10 python batches.

Those files are Python-2 pickles of a dict of byte strings, lists of ints and one numpy uint8 array. Unpickling
them only needs three globals: numpy's array reconstructor (`numpy.core.multiarray._reconstruct`, spelled
`numpy._core.multiarray._reconstruct` by numpy >= 2), `numpy.ndarray` and `numpy.dtype` (plus
`numpy._core.numeric._frombuffer` for protocol-5 re-pickles). Any other global (os.system, builtins.eval,
subprocess.Popen, ...) is refused before anything is called, so a batch carrying a code-running payload fails
with ValueError and executes nothing. Plain `pickle.load` is never used in sspnet.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Any, Callable

import numpy as np


def _numpy_core(module: str) -> Any:
    # numpy >= 2 keeps the implementation in numpy._core; importing numpy.core there only warns.
    core = getattr(np, "_core", None)
    if core is None:  # pragma: no cover - numpy 1.x
        import numpy.core as core  # noqa: F811
    return getattr(core, module)


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    multiarray = _numpy_core("multiarray")
    numeric = _numpy_core("numeric")
    table: dict[tuple[str, str], Callable[..., Any]] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):
            table[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` admits only numpy array reconstruction."""

    def __init__(self, file: Any, *, source: str = "<pickle>", **kw: Any) -> None:
        super().__init__(file, **kw)
        self._source = source
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._table[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: a CIFAR batch only contains dicts, lists, strings and "
                f"numpy arrays") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent id: a CIFAR batch has none")


def safe_load(path: str | os.PathLike, *, encoding: str = "bytes") -> Any:
    """Unpickle `path` with `RestrictedUnpickler` (Python-2 strings as bytes). ValueError naming the file on
    a refused global or a corrupt/truncated pickle."""
    with open(path, "rb") as f:
        data = f.read()
    return safe_loads(data, source=str(path), encoding=encoding)


def safe_loads(data: bytes, *, source: str = "<pickle>", encoding: str = "bytes") -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{source}: not a valid CIFAR python batch: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, UnicodeDecodeError,
            OverflowError, MemoryError) as exc:
        raise ValueError(f"{source}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
