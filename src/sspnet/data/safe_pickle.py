"""A restricted unpickler for the CIFAR-10 python batches.

Those files are Python-2 pickles of a dict of byte strings, lists of ints and one numpy uint8 array. Unpickling
them only needs three globals: numpy's array reconstructor (`numpy.core.multiarray._reconstruct`, spelled
`numpy._core.multiarray._reconstruct` by numpy >= 2), `numpy.ndarray` and `numpy.dtype` (plus
`numpy._core.numeric._frombuffer` for protocol-5 re-pickles, and `_codecs.encode(str, "latin1")`, restricted to
exactly that call, which is how Python 3 re-pickles bytes at protocol 2). Any other global (os.system, builtins.eval,
subprocess.Popen, ...) is refused before anything is called, so a batch carrying a code-running payload fails
with ValueError and executes nothing. Plain `pickle.load` is never used in sspnet.

Memory: numpy's own callables are never handed to the pickle. `numpy.ndarray` is a stand-in that may only be the
subtype argument of `_reconstruct(ndarray, (0,), b"b")` (the one call numpy's pickles make); calling it directly
(`numpy.ndarray((10**6, 3072))`, an allocation of any size from a few bytes of pickle) is refused, as is any other
`_reconstruct` shape. `numpy.dtype` admits only plain integer dtypes (no fields, subarrays or objects). An array
is built, after the whole pickle is read, from bytes stored in the file, whose length must equal its shape times
its itemsize, so arrays never take more memory than the file holds; `max_array_bytes` caps their total further
(CIFAR-10: one batch, 10,000 x 3,072 bytes) and `safe_load` refuses files over `MAX_FILE_BYTES` before reading.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

MAX_FILE_BYTES = 64 << 20  # an official batch is 31 MB; a protocol-2 re-pickle (bytes as latin1 text) up to ~62 MB
_INT_DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8")  # uint8 images; integer labels of re-pickles
_MAX_DEPTH = 8  # a CIFAR batch is a dict of lists: depth 2


def _text(value: Any) -> str | None:
    """A Python-2 str loaded as bytes, or a str, as text; None for anything else."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin1")
    return value if isinstance(value, str) else None


class _DType:
    """Stands in for `numpy.dtype(name, align, copy)` and its BUILD state: a plain integer dtype, nothing else."""

    def __init__(self, name: Any = None, align: Any = False, copy: Any = True) -> None:
        text = _text(name)
        if text not in _INT_DTYPES:
            shown = repr(text[:40]) if text is not None else type(name).__name__
            raise pickle.UnpicklingError(
                f"refusing numpy.dtype({shown}): only the integer dtypes {', '.join(_INT_DTYPES)} are admitted"
            )
        self.dtype = np.dtype(text)

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not (
            isinstance(state, tuple)
            and len(state) in (8, 9)
            and state[0] in (3, 4)
            and _text(state[1]) in ("|", "<", ">", "=")
            and state[2:5] == (None, None, None)
            and state[5:8] in ((-1, -1, 0), (self.dtype.itemsize, self.dtype.alignment, 0))
            and (len(state) == 8 or state[8] is None)
        ):
            raise pickle.UnpicklingError(
                "refusing a numpy.dtype state with fields, a subarray, metadata or an "
                "unknown layout: only plain integer dtypes are admitted"
            )
        order = _text(state[1])
        if order in ("<", ">") and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)


class _NDArrayType:
    """Stands in for `numpy.ndarray`: it may only be the subtype argument of `_reconstruct`."""

    def __call__(self, *args: Any, **kw: Any) -> Any:
        raise pickle.UnpicklingError(
            "refusing a direct numpy.ndarray(...) call: arrays are only rebuilt from the bytes stored in the file"
        )


_NDARRAY = _NDArrayType()


class _Global:
    """What `find_class` hands out: a fresh wrapper calling one admitted callable. A pickle can BUILD on any object
    it holds (setting attributes, `__defaults__`, `__class__`, ...); on this wrapper that is refused, so no load
    can change the admitted callables for the next one."""

    __slots__ = ("fn", "name")

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self.fn(*args, **kw)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set the state of {self.name}")


class _Array:
    """An array to be built after loading from bytes stored in the pickle: `spec` = (shape, dtype, fortran, raw)."""

    def __init__(self) -> None:
        self.spec: tuple | None = None

    def __setstate__(self, state: Any) -> None:
        # ndarray.__reduce__'s state: (version, shape, dtype, is_fortran, rawdata); very old pickles omit version
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("refusing an ndarray state that is not (shape, dtype, fortran, bytes)")
        self.spec = _array_spec(*state)

    def nbytes(self) -> int:
        if self.spec is None:
            raise pickle.UnpicklingError("refusing an ndarray without data")
        return len(self.spec[3])

    def build(self) -> np.ndarray:
        shape, dtype, fortran, raw = self.spec  # type: ignore[misc]
        flat = np.frombuffer(raw, dtype=dtype) if len(raw) else np.empty(0, dtype=dtype)
        return flat.reshape(shape, order="F" if fortran else "C").copy()


def _array_spec(shape: Any, dtype: Any, fortran: Any, raw: Any) -> tuple:
    """Validated (shape, dtype, fortran, raw bytes): the data must be bytes of exactly shape x itemsize."""
    if not isinstance(dtype, _DType):
        raise pickle.UnpicklingError("refusing an array whose dtype is not a plain integer numpy.dtype")
    if not (isinstance(shape, tuple) and len(shape) <= 4 and all(type(d) is int and d >= 0 for d in shape)):
        raise pickle.UnpicklingError("refusing an array shape that is not a tuple of at most 4 sizes")
    if isinstance(raw, str):
        raw = raw.encode("latin1")  # a Python-2 str loaded with encoding="latin1"
    elif isinstance(raw, pickle.PickleBuffer):
        raw = raw.raw()
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise pickle.UnpicklingError(
            f"refusing array data of type {type(raw).__name__}: only bytes stored in the "
            f"file are admitted (no object arrays)"
        )
    size = memoryview(raw).nbytes
    need = math.prod(shape) * dtype.dtype.itemsize
    if size != need:
        raise pickle.UnpicklingError(f"array data holds {size} bytes but shape {shape} of {dtype.dtype} needs {need}")
    return shape, dtype.dtype, bool(fortran), raw


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _Array:
    """`numpy.core.multiarray._reconstruct`, admitted only as numpy's pickles call it: (ndarray, (0,), b"b")."""
    if (
        not (type(subtype) is _Global and subtype.fn is _NDARRAY)
        or not (isinstance(shape, tuple) and shape == (0,))
        or _text(typecode) != "b"
    ):
        raise pickle.UnpicklingError(
            "refusing numpy _reconstruct with other arguments than (ndarray, (0,), 'b'): "
            "arrays are only rebuilt from the bytes stored in the file"
        )
    return _Array()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> _Array:
    """`numpy._core.numeric._frombuffer` of protocol-5 pickles, from in-band bytes only."""
    arr = _Array()
    arr.spec = _array_spec(shape, dtype, _text(order) == "F", buf)
    return arr


def _materialize(obj: Any, max_array_bytes: int | None) -> Any:
    """Replace the stand-ins in the loaded object by numpy arrays / dtypes, after checking the arrays' total size
    against `max_array_bytes`. Only dicts and lists are looked into (a tuple holding an array is refused)."""
    stack, seen, arrays, slots = [(obj, 0)], set(), [], []
    while stack:
        node, depth = stack.pop()
        if id(node) in seen or not isinstance(node, (dict, list, tuple)):
            continue
        seen.add(id(node))
        if depth > _MAX_DEPTH:
            raise pickle.UnpicklingError(f"refusing containers nested deeper than {_MAX_DEPTH} levels")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(key, (_Array, _DType, _NDArrayType)):
                raise pickle.UnpicklingError("refusing a numpy object used as a dict key")
            if isinstance(value, (_Array, _DType)):
                if isinstance(node, tuple):
                    raise pickle.UnpicklingError("refusing a numpy object inside a tuple")
                slots.append((node, key, value))
                if isinstance(value, _Array):
                    arrays.append(value)
            else:
                stack.append((value, depth + 1))
    if isinstance(obj, _Array):
        arrays.append(obj)
    total = sum(a.nbytes() for a in set(arrays))
    if max_array_bytes is not None and total > max_array_bytes:
        raise pickle.UnpicklingError(f"its arrays hold {total} bytes, more than the {max_array_bytes} admitted")
    built: dict[int, Any] = {}

    def real(value: Any) -> Any:
        if id(value) not in built:
            built[id(value)] = value.build() if isinstance(value, _Array) else value.dtype
        return built[id(value)]

    for node, key, value in slots:
        node[key] = real(value)
    return real(obj) if isinstance(obj, (_Array, _DType)) else obj


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """`_codecs.encode` as Python 3 pickles bytes at protocols <= 2 (`_codecs.encode(str, "latin1")`, as
    PyTorch's weights-only unpickler admits it): a str and the latin1 codec only, nothing else."""
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1") and errors == "strict"):
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode with {type(text).__name__} / {encoding!r}: only "
            f"str / 'latin1' (bytes pickled by Python 3 at protocol 2) is admitted"
        )
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    table: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _DType,
        ("_codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = _reconstruct
        table[(f"{pkg}.numeric", "_frombuffer")] = _frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` admits only numpy array reconstruction (from bytes in the file, at
    most `max_array_bytes` in all)."""

    def __init__(self, file: Any, *, source: str = "<pickle>", max_array_bytes: int | None = None, **kw: Any) -> None:
        super().__init__(file, **kw)
        self._source = source
        self._table = _allowed()
        self._max_array_bytes = max_array_bytes

    def load(self) -> Any:
        return _materialize(super().load(), self._max_array_bytes)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _Global(self._table[(module, name)], f"{module}.{name}")
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: a CIFAR batch only contains dicts, lists, strings and numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent id: a CIFAR batch has none")


def safe_load(
    path: str | os.PathLike,
    *,
    encoding: str = "bytes",
    max_array_bytes: int | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Any:
    """Unpickle `path` with `RestrictedUnpickler` (Python-2 strings as bytes). ValueError naming the file on
    a refused global, a file over `max_file_bytes` (checked before reading), arrays over `max_array_bytes` or a
    corrupt/truncated pickle."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_file_bytes:
            raise ValueError(
                f"{path}: not a CIFAR python batch: {size} bytes, more than the {max_file_bytes} a "
                f"batch can take (an official batch is about 31 MB)"
            )
        data = f.read(size + 1)  # not max_file_bytes + 1: read(n) allocates n bytes up front
    if len(data) > max_file_bytes:
        raise ValueError(f"{path}: not a CIFAR python batch: more than the {max_file_bytes} bytes a batch can take")
    return safe_loads(data, source=str(path), encoding=encoding, max_array_bytes=max_array_bytes)


def safe_loads(
    data: bytes, *, source: str = "<pickle>", encoding: str = "bytes", max_array_bytes: int | None = None
) -> Any:
    try:
        return RestrictedUnpickler(
            io.BytesIO(data), source=source, encoding=encoding, max_array_bytes=max_array_bytes
        ).load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{source}: not a valid CIFAR python batch: {exc}") from None
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
    ) as exc:
        raise ValueError(f"{source}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
