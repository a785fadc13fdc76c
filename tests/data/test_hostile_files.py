"""Hostile data files: the restricted unpickler of CIFAR batches, and memory / disk bombs (CIFAR pickles, gzip
IDX, downloads, TinyImageNet headers, blocks per group). Nothing executes or allocates before it is checked."""

from __future__ import annotations

import gzip
import http.server
import io
import pickle
import struct
import warnings
import zlib

import numpy as np
import pytest
from bombs import gzip_zeros as _gzip_zeros
from bombs import peak_below as _peak_below
from local_http import serve

from sspnet import data
from sspnet.data import synthetic
from sspnet.data.idx import read_idx
from sspnet.data.safe_pickle import safe_load, safe_loads


class _CreatesFile:
    """Unpickling this calls open(target, "w"), which creates the file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_cifar_batch_refused_and_not_executed(tmp_path):
    target = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _CreatesFile(target), b"labels": [0]}, protocol=4)
    # the payload is live: an unrestricted unpickler would create the file
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesFile(probe), protocol=4)).close()
    assert probe.exists()
    folder = tmp_path / "cifar-10-batches-py"
    synthetic.write_cifar_python(folder, n_per_batch=2)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(
        ValueError, match=r"test_batch: not a valid CIFAR python batch: refusing global (io|builtins)\.open"
    ):
        data.load("cifar10", tmp_path, "test")
    assert not target.exists()


@pytest.mark.parametrize(
    "module,name",
    [
        ("os", "system"),
        ("builtins", "eval"),
        ("subprocess", "Popen"),
        ("numpy", "load"),
        ("pickle", "loads"),
        ("numpy.testing", "assert_"),
    ],
)
def test_any_other_global_is_refused(module, name):
    blob = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"U\x04true\x85R."
    with pytest.raises(ValueError, match=f"refusing global {module}.{name}"):
        safe_loads(blob, source="evil")


def test_restricted_unpickler_reads_modern_numpy_pickles(tmp_path):
    arr = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    for proto in (3, 4, 5):
        obj = safe_loads(pickle.dumps({b"data": arr, b"labels": [1, 2]}, protocol=proto))
        np.testing.assert_array_equal(obj[b"data"], arr)
    p = tmp_path / "b"
    p.write_bytes(synthetic.py2_pickle({b"data": arr, b"labels": [3, 4]}))
    obj = safe_load(p)
    np.testing.assert_array_equal(obj[b"data"], arr)
    assert obj[b"labels"] == [3, 4]


def test_codecs_encode_admitted_only_as_latin1_of_a_str(tmp_path):
    import _codecs

    from sspnet.data.safe_pickle import safe_loads

    class Call:
        def __init__(self, *args):
            self.args = args

        def __reduce__(self):
            return (_codecs.encode, self.args)

    assert safe_loads(pickle.dumps(Call("\xff\x00a", "latin1"), protocol=2)) == b"\xff\x00a"
    for args in (("x", "rot13"), ("eJw=", "base64"), (b"x", "latin1"), ("x", "latin1", "ignore")):
        with pytest.raises(ValueError, match="refusing _codecs.encode"):
            safe_loads(pickle.dumps(Call(*args), protocol=2))


# --- memory and disk bombs ---------------------------------------------------------------------------------
class _NDArrayCall:
    """A pickle calling numpy.ndarray(shape) directly: an uninitialised array of any size from a few bytes."""

    def __init__(self, rows):
        self.rows = rows

    def __reduce__(self):
        return (np.ndarray, ((self.rows, 3072), "u1"))


_NP_CORE = getattr(np, "_core", None) or np.core  # numpy >= 2 / 1.x


class _Reduce:
    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def test_cifar_ndarray_call_bomb_refused_before_allocating(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    synthetic.write_cifar_python(folder, n_per_batch=2)
    for i in range(1, 6):  # five tiny files claiming 200,000 images each: 1,000,000 images, 3 GB
        blob = pickle.dumps({b"data": _NDArrayCall(200_000), b"labels": [0]}, protocol=2)
        assert len(blob) < 200
        (folder / f"data_batch_{i}").write_bytes(blob)
    with _peak_below(20 << 20), pytest.raises(ValueError) as info:
        data.load("cifar10", tmp_path, "train")
    assert str(info.value) == (
        f"{folder / 'data_batch_1'}: not a valid CIFAR python batch: refusing a direct "
        f"numpy.ndarray(...) call: arrays are only rebuilt from the bytes stored in the file"
    )


@pytest.mark.parametrize(
    "obj,match",
    [
        # numpy's reconstructor asked for a big empty array instead of numpy's own (ndarray, (0,), b"b")
        (
            _Reduce(_NP_CORE.multiarray._reconstruct, (np.ndarray, (10**6, 3072), b"b")),
            r"refusing numpy _reconstruct with other arguments",
        ),
        # an array state claiming a shape its bytes do not fill
        (
            _Reduce(
                _NP_CORE.multiarray._reconstruct,
                (np.ndarray, (0,), b"b"),
                (1, (10**6, 3072), np.dtype(np.uint8), False, b"x" * 10),
            ),
            r"array data holds 10 bytes but shape \(1000000, 3072\) of uint8 needs 3072000000",
        ),
        # protocol-5 reconstruction with a shape its buffer does not fill
        (
            _Reduce(_NP_CORE.numeric._frombuffer, (b"x" * 10, np.dtype(np.uint8), (10**6, 3072), "C")),
            r"array data holds 10 bytes but shape",
        ),
        # object, float and structured dtypes (object arrays would run the pickle inside the array)
        (np.array([1, "a"], dtype=object), r"refusing numpy.dtype\('O8'\)"),
        (np.zeros(3), r"refusing numpy.dtype\('f8'\)"),
        (np.zeros(2, dtype=[("a", "u1")]), r"refusing numpy.dtype\('V1'\)"),
    ],
)
def test_array_reconstruction_is_checked_before_allocating(obj, match):
    for proto in (2, 4):
        blob = pickle.dumps({b"data": obj, b"labels": [0]}, protocol=proto)
        with _peak_below(20 << 20), pytest.raises(ValueError, match=f"evil: not a valid CIFAR python batch: {match}"):
            safe_loads(blob, source="evil")


def test_admitted_globals_cannot_be_changed_by_a_pickle():
    # GLOBAL _frombuffer, then BUILD with slot state {"__defaults__": ("F",)}: would change it for later loads
    blob = b"\x80\x02cnumpy.core.numeric\n_frombuffer\nN}X\x0c\x00\x00\x00__defaults__X\x01\x00\x00\x00F\x85s\x86b."
    with pytest.raises(ValueError, match=r"refusing to set the state of numpy.core.numeric._frombuffer"):
        safe_loads(blob, source="x")
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(safe_loads(pickle.dumps(arr, protocol=5)), arr)


def test_array_bytes_capped_and_cifar_files_checked_before_reading(tmp_path):
    arr = np.zeros((2, 3072), np.uint8)
    with pytest.raises(ValueError, match=r"its arrays hold 6144 bytes, more than the 3072 admitted"):
        safe_loads(pickle.dumps({b"data": arr}, protocol=2), source="x", max_array_bytes=3072)
    assert safe_loads(pickle.dumps({b"data": arr}, protocol=2), max_array_bytes=6144)[b"data"].shape == (2, 3072)
    folder = tmp_path / "cifar-10-batches-py"
    synthetic.write_cifar_python(folder, n_per_batch=2)
    with open(folder / "test_batch", "r+b") as f:  # sparse: 65 MB that take no disk
        f.truncate(65 << 20)
    with (
        _peak_below(8 << 20),
        pytest.raises(
            ValueError,
            match=r"test_batch: not a CIFAR python batch: 68157440 "
            r"bytes, more than the 67108864",
        ),
    ):
        data.load("cifar10", tmp_path, "test")
    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    synthetic.write_cifar_binary(binary, n_per_batch=2)
    with open(binary / "test_batch.bin", "r+b") as f:
        f.truncate(10001 * 3073)
    with (
        _peak_below(8 << 20),
        pytest.raises(
            ValueError,
            match=r"test_batch.bin: 30733073 bytes, more than a "
            r"CIFAR-10 binary batch holds",
        ),
    ):
        data.load("cifar10", tmp_path / "bin", "test")


def test_idx_gzip_bomb_refused_after_the_promised_bytes(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    synthetic.write_mnist(raw, n_train=10, n_test=10, gz=True)
    images = raw / "train-images-idx3-ubyte.gz"
    header = gzip.compress(synthetic.idx_bytes(np.zeros((10, 28, 28), np.uint8))[:16], mtime=0)
    images.write_bytes(header + _gzip_zeros(64))  # 64 KB on disk, 64 MB of zeros after the 10 images
    assert images.stat().st_size < 100_000
    with _peak_below(8 << 20), pytest.raises(ValueError) as info:
        data.load("mnist", tmp_path, "train")
    assert str(info.value) == (
        f"{images}: oversized IDX file: header says shape (10, 28, 28) (7840 bytes of data), "
        f"found more (not read further)"
    )


@pytest.mark.parametrize(
    "shape,match",
    [
        ((10**9, 28, 28), r"header says 1000000000 items \(shape \(1000000000, 28, 28\)\), more than the 60000"),
        ((10, 4096, 4096), r"wrong image size 4096x4096, expected 28x28"),
    ],
)
def test_idx_header_checked_against_the_spec_before_reading(tmp_path, shape, match):
    raw = tmp_path / "MNIST" / "raw"
    synthetic.write_mnist(raw, n_train=10, n_test=10, gz=True)
    images = raw / "train-images-idx3-ubyte.gz"
    header = b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in shape)
    images.write_bytes(gzip.compress(header, mtime=0) + _gzip_zeros(16))
    with _peak_below(4 << 20), pytest.raises(ValueError, match=f"train-images-idx3-ubyte.gz: {match}"):
        data.load("mnist", tmp_path, "train")
    # the same without the spec: read_idx caps what a header may promise
    big = tmp_path / "big-idx3-ubyte"
    big.write_bytes(b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (2**31, 28, 28)))
    with pytest.raises(ValueError, match=r"big-idx3-ubyte: header says shape .* more than the 1073741824 bytes"):
        read_idx(big)


class _EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200, optionally no Content-Length, and a body of server.body_size zero bytes."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        if self.server.announce:
            self.send_header("Content-Length", str(self.server.body_size))
        self.end_headers()
        block = bytes(1 << 16)
        sent = 0
        try:
            while sent < self.server.body_size:
                self.wfile.write(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def endless():
    yield from serve(_EndlessHandler, announce=False, body_size=64 << 20)


@pytest.mark.parametrize("announce", [False, True])
def test_mirror_sending_more_than_the_published_size_is_cut_off(tmp_path, endless, monkeypatch, capsys, announce):
    from sspnet import cli
    from sspnet.data import download as dl
    from sspnet.data.sources import SOURCES

    endless.announce = announce
    official = SOURCES["mnist"][3]  # t10k-labels-idx1-ubyte.gz, 4,542 bytes
    assert official.size == 4542
    monkeypatch.setitem(dl.SOURCES, "mnist", (official,))
    root = tmp_path / "root"
    code = cli.main(["download", "mnist", "--root", str(root), "--mirror", endless.url, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    what = "announces 67108864 bytes" if announce else "sent 65536 bytes"
    assert (
        f"t10k-labels-idx1-ubyte.gz: {endless.url}/t10k-labels-idx1-ubyte.gz {what}, more than the published "
        f"size of 4542 bytes: download aborted and the partial file deleted" in err[0]
    )
    assert list((root / "MNIST" / "raw").iterdir()) == []


def test_every_official_file_has_a_published_size():
    from sspnet.data.sources import SOURCES

    assert all(isinstance(r.size, int) and r.size > 0 for table in SOURCES.values() for r in table)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_tiny_image_claiming_a_huge_size_is_refused_from_its_header(tmp_path, fmt):
    from PIL import Image

    base = tmp_path / "tiny-imagenet-200"
    ref = synthetic.write_tiny(base, per_class=1, n_val=2)
    victim = ref["test"][0][1]
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format=fmt)
    blob = bytearray(buf.getvalue())
    if fmt == "JPEG":  # the SOF0 segment: FFC0, length, precision, height, width
        sof = blob.index(b"\xff\xc0")
        blob[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
        claim = "65000x65000"
    else:  # the IHDR chunk: width, height, then its CRC
        blob[16:24] = struct.pack(">II", 100000, 100000)
        blob[29:33] = struct.pack(">I", zlib.crc32(bytes(blob[12:29])))
        claim = "100000x100000"
    victim.write_bytes(bytes(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a DecompressionBombWarning
        with _peak_below(8 << 20), pytest.raises(ValueError) as info:
            data.load("tiny", tmp_path, "test")
    assert str(info.value) == f"{victim}: wrong image size {claim}, expected 64x64"


def test_blocks_per_group_capped_with_one_line_before_building(tmp_path, capsys):
    from sspnet import cli
    from sspnet.nn.models import MAX_BLOCKS, create_model

    with (
        _peak_below(4 << 20),
        pytest.raises(ValueError, match=f"blocks must be at most {MAX_BLOCKS} per group, got 100000000"),
    ):
        create_model("res", dataset="tiny", blocks=100_000_000)
    save = tmp_path / "run"
    code = cli.main(["train", "--dataset", "mnist5k", "--block", "100000000", "--save", str(save)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"sspnet train: error: blocks must be at most {MAX_BLOCKS} per group, got 100000000"]
