"""Hostile input: the restricted unpickler, archive extraction, and memory / disk bombs (CIFAR pickles, gzip IDX,
downloads, TinyImageNet headers, blocks per group). Nothing executes, escapes or allocates before it is checked."""
from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import os
import pickle
import struct
import tarfile
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from local_http import serve

from sspnet import data
from sspnet.data import archives, synthetic
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
    with pytest.raises(ValueError, match=r"test_batch: not a valid CIFAR python batch: refusing global (io|builtins)\.open"):
        data.load("cifar10", tmp_path, "test")
    assert not target.exists()


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"),
                                         ("numpy", "load"), ("pickle", "loads"), ("numpy.testing", "assert_")])
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


# --- archives ---------------------------------------------------------------------------------------------
def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members:
            zf.writestr(name, payload)
    return path


@pytest.mark.parametrize("evil", ["../evil.txt", "ok/../../evil.txt", "/abs/evil.txt", "C:/evil.txt"])
def test_zip_slip_refused(tmp_path, evil):
    dest = tmp_path / "out"
    archive = _zip(tmp_path / "a.zip", [("good/file.txt", b"1"), (evil, b"2")])
    with pytest.raises(ValueError, match=r"a.zip: refusing member .*outside"):
        archives.extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert [p.name for p in dest.iterdir()] == []  # checked before anything was written


def test_zip_symlink_member_refused(tmp_path):
    archive = tmp_path / "l.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ValueError, match="refusing link member 'link'"):
        archives.extract(archive, tmp_path / "out")


def _tar(path, add):
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def _file(tf, name, payload=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tf.addfile(info, io.BytesIO(payload))


def _link(tf, name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tf.addfile(info)


@pytest.mark.parametrize("build,msg", [
    (lambda tf: _file(tf, "../evil"), "refusing member '../evil'"),
    (lambda tf: _file(tf, "/tmp/evil-abs"), "refusing member '/tmp/evil-abs'"),
    (lambda tf: _link(tf, "d/up", "../../outside"), "refusing link member 'd/up' -> '../../outside'"),
    (lambda tf: _link(tf, "abs", "/etc/passwd"), "refusing link member 'abs' -> '/etc/passwd'"),
    (lambda tf: _link(tf, "hard", "../x", tarfile.LNKTYPE), "refusing link member 'hard'"),
    (lambda tf: _link(tf, "dev", "", tarfile.CHRTYPE), "refusing special member 'dev'"),
    (lambda tf: _link(tf, "fifo", "", tarfile.FIFOTYPE), "refusing special member 'fifo'"),
    (lambda tf: _link(tf, "inner", "ok.txt"), "refusing link member 'inner' -> 'ok.txt'"),
])
def test_tar_traversal_and_links_refused(tmp_path, build, msg):
    dest = tmp_path / "out"
    archive = _tar(tmp_path / "a.tar.gz", lambda tf: (_file(tf, "good/ok.txt"), build(tf)))
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
        archives.extract(archive, dest)
    assert list(dest.iterdir()) == []


def test_safe_archives_extract(tmp_path):
    dest = tmp_path / "out"
    def add(tf):
        info = tarfile.TarInfo("./top")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        _file(tf, "./top/a.txt", b"hello")
        _file(tf, "top/sub/b.txt", b"")
    archive = _tar(tmp_path / "a.tgz", add)
    created = archives.extract(archive, dest)
    assert created == [dest.resolve() / "top"]
    assert (dest / "top" / "a.txt").read_bytes() == b"hello" and (dest / "top" / "sub" / "b.txt").read_bytes() == b""
    assert sorted(p.name for p in dest.iterdir()) == ["top"]  # the temporary folder is gone
    z = _zip(tmp_path / "b.zip", [("top2/b.txt", b"zz")])
    archives.extract(z, dest)
    assert (dest / "top2" / "b.txt").read_bytes() == b"zz"
    (tmp_path / "c.bin").write_bytes(b"neither")
    with pytest.raises(ValueError, match="not a zip or tar archive"):
        archives.extract(tmp_path / "c.bin", dest)


# --- archives: links, the CVE-2025-4517 long-path chain, caps -------------------------------------------------
def _one_line_refusal(archive, dest, match, **kw):
    with pytest.raises(ValueError, match=match) as info:
        archives.extract(archive, dest, **kw)
    assert "\n" not in str(info.value) and str(archive) in str(info.value)
    assert [p.name for p in dest.iterdir()] == []  # nothing left behind, not even the temporary folder
    return info.value


def _outside_snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                  for p in root.rglob("*") if "out" not in p.relative_to(root).parts)


def test_tar_long_path_symlink_chain_cve_2025_4517(tmp_path):
    """The chain of CVE-2025-4517: nested directory symlinks whose expansion exceeds PATH_MAX, so realpath stops
    resolving, then a link escaping through them, a hard link through that and files written through both.
    Sized for extraction in `out/.extract-XXXXXXXX`: the previous implementation (lexical check, then tarfile's
    'data' filter on Python 3.11.7) overwrote outer/flag and created outer/newfile with it."""
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "flag").write_bytes(b"secret")
    dest = outer / "out"
    dest.mkdir()
    steps = "abcdefghijklmnop"
    path_max = os.pathconf(str(tmp_path), "PC_PATH_MAX") if "PC_PATH_MAX" in os.pathconf_names else 4096
    component = "d" * min(255, (path_max - len(str(dest / ".extract-12345678")) - 1) // (len(steps) + 1))

    def add(tf):
        path = ""
        for step in steps:
            info = tarfile.TarInfo(os.path.join(path, component))
            info.type, info.mode = tarfile.DIRTYPE, 0o777
            tf.addfile(info)
            _link(tf, os.path.join(path, step), component)
            path = os.path.join(path, component)
        linkpath = os.path.join(*steps, "l" * 254)
        _link(tf, linkpath, os.path.join(*[".."] * len(steps)))
        _link(tf, "escape", os.path.join(linkpath, "..", ".."))
        _link(tf, "flaglink", os.path.join("escape", "flag"), tarfile.LNKTYPE)
        _file(tf, "flaglink", b"overwrite")
        _file(tf, "escape/newfile", b"new")

    archive = _tar(tmp_path / "cve.tar", add)
    before = _outside_snapshot(tmp_path)
    _one_line_refusal(archive, dest, r"refusing link member 'a' -> 'd+': dataset archives hold only files")
    assert _outside_snapshot(tmp_path) == before
    assert (outer / "flag").read_bytes() == b"secret" and not (outer / "newfile").exists()


@pytest.mark.parametrize("build,match", [
    # a symlink to the outside, then a file written through it
    (lambda tf, out: (_link(tf, "d", str(out)), _file(tf, "d/evil", b"pwned")), "refusing link member 'd'"),
    (lambda tf, out: (_link(tf, "d", "../outside"), _file(tf, "d/evil", b"pwned")), "refusing link member 'd'"),
    # a chain of links that each stay inside, then a file through the chain
    (lambda tf, out: (_link(tf, "l1", "."), _link(tf, "l2", "l1/l1"), _link(tf, "l3", "l2/.."),
                      _file(tf, "l3/evil", b"pwned")), "refusing link member 'l1' -> '.'"),
    # a hard link to an outside passwd-like file, then a regular member of the same name overwriting it
    (lambda tf, out: (_link(tf, "h", str(out / "passwd"), tarfile.LNKTYPE), _file(tf, "h", b"pwned")),
     "refusing link member 'h'"),
    # names that leave the target, one with a newline: the message stays on one line
    (lambda tf, out: _file(tf, "../outside/evil", b"pwned"), "refusing member '../outside/evil'"),
    (lambda tf, out: _file(tf, str(out / "evil"), b"pwned"), "refusing member '/.*evil'"),
    (lambda tf, out: _file(tf, "a\n/../../evil", b"pwned"), r"refusing member 'a\\n/../../evil'"),
    # a file and a folder with one name, and a member twice
    (lambda tf, out: (_file(tf, "x"), _file(tf, "x/y")), "refusing member 'x/y': 'x' is not a plain folder"),
    (lambda tf, out: (_file(tf, "x"), _file(tf, "x")), "refusing member 'x': it appears twice"),
])
def test_tar_links_and_escapes_write_nothing_outside(tmp_path, build, match):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"root:x:0:0")
    dest = tmp_path / "out"
    dest.mkdir()
    archive = _tar(tmp_path / "a.tar", lambda tf: (_file(tf, "good/ok.txt"), build(tf, outside)))
    _one_line_refusal(archive, dest, match)
    assert sorted(p.name for p in outside.iterdir()) == ["passwd"]
    assert (outside / "passwd").read_bytes() == b"root:x:0:0" and not (tmp_path / "evil").exists()


def test_archive_caps_on_size_and_member_count(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    tar = _tar(tmp_path / "big.tar.gz", lambda tf: [_file(tf, f"top/f{i}", b"\0" * 1000) for i in range(5)])
    _one_line_refusal(tar, dest, r"refusing member 'top/f2': the archive unpacks to more than 2500 bytes",
                      max_bytes=2500)
    _one_line_refusal(tar, dest, r"refusing member 'top/f3': the archive holds more than 3 members", max_members=3)
    z = _zip(tmp_path / "big.zip", [(f"top/f{i}", b"\0" * 1000) for i in range(5)])
    _one_line_refusal(z, dest, r"big.zip: refusing member 'top/f2': the archive unpacks to more than 2500",
                      max_bytes=2500)
    assert len(archives.extract(tar, dest, max_bytes=5000, max_members=5)) == 1


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_tar_header_bomb_refused_before_tarfile_reads_it(tmp_path, kind):
    """A pax (or GNU long-name) header declaring 64 MB: tarfile reads such headers whole; 64 KB of gzip here."""
    header = tarfile.TarInfo("././@Header")
    header.type, header.size = kind, 64 << 20
    blob = gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT), mtime=0) + _gzip_zeros(64)
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(blob)
    dest = tmp_path / "out"
    dest.mkdir()
    with _peak_below(8 << 20):
        _one_line_refusal(archive, dest, r"bomb.tar.gz: refusing the tar header before its first member: it takes "
                                         r"more than 1048576 bytes")


def test_extract_replaces_a_planted_symlink_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "top").symlink_to(outside, target_is_directory=True)
    archive = _tar(tmp_path / "a.tar", lambda tf: _file(tf, "top/a.txt", b"hello"))
    archives.extract(archive, dest)
    assert not (dest / "top").is_symlink() and (dest / "top" / "a.txt").read_bytes() == b"hello"
    assert list(outside.iterdir()) == []


def test_corrupt_archive_is_one_line(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    good = _tar(tmp_path / "a.tar", lambda tf: _file(tf, "top/a.txt", os.urandom(5000))).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good[:1024])
    _one_line_refusal(cut, dest, r"cut.tar: (corrupt or unreadable archive|refusing member 'top/a.txt')")


# --- memory and disk bombs ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _peak_below(limit_bytes):
    """Assert that Python-tracked allocations (numpy's included) stay below limit_bytes inside the block."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit_bytes, f"peak allocation {peak} bytes"


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
    assert str(info.value) == (f"{folder / 'data_batch_1'}: not a valid CIFAR python batch: refusing a direct "
                               f"numpy.ndarray(...) call: arrays are only rebuilt from the bytes stored in the file")


@pytest.mark.parametrize("obj,match", [
    # numpy's reconstructor asked for a big empty array instead of numpy's own (ndarray, (0,), b"b")
    (_Reduce(_NP_CORE.multiarray._reconstruct, (np.ndarray, (10 ** 6, 3072), b"b")),
     r"refusing numpy _reconstruct with other arguments"),
    # an array state claiming a shape its bytes do not fill
    (_Reduce(_NP_CORE.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
             (1, (10 ** 6, 3072), np.dtype(np.uint8), False, b"x" * 10)),
     r"array data holds 10 bytes but shape \(1000000, 3072\) of uint8 needs 3072000000"),
    # protocol-5 reconstruction with a shape its buffer does not fill
    (_Reduce(_NP_CORE.numeric._frombuffer, (b"x" * 10, np.dtype(np.uint8), (10 ** 6, 3072), "C")),
     r"array data holds 10 bytes but shape"),
    # object, float and structured dtypes (object arrays would run the pickle inside the array)
    (np.array([1, "a"], dtype=object), r"refusing numpy.dtype\('O8'\)"),
    (np.zeros(3), r"refusing numpy.dtype\('f8'\)"),
    (np.zeros(2, dtype=[("a", "u1")]), r"refusing numpy.dtype\('V1'\)"),
])
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
    with _peak_below(8 << 20), pytest.raises(ValueError, match=r"test_batch: not a CIFAR python batch: 68157440 "
                                                               r"bytes, more than the 67108864"):
        data.load("cifar10", tmp_path, "test")
    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    synthetic.write_cifar_binary(binary, n_per_batch=2)
    with open(binary / "test_batch.bin", "r+b") as f:
        f.truncate(10001 * 3073)
    with _peak_below(8 << 20), pytest.raises(ValueError, match=r"test_batch.bin: 30733073 bytes, more than a "
                                                               r"CIFAR-10 binary batch holds"):
        data.load("cifar10", tmp_path / "bin", "test")


def _gzip_zeros(n_mib):
    """A gzip stream of n_mib MiB of zeros, about 1 KB per MiB (concatenated gzip members)."""
    return gzip.compress(bytes(1 << 20), mtime=0) * n_mib


def test_idx_gzip_bomb_refused_after_the_promised_bytes(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    synthetic.write_mnist(raw, n_train=10, n_test=10, gz=True)
    images = raw / "train-images-idx3-ubyte.gz"
    header = gzip.compress(synthetic.idx_bytes(np.zeros((10, 28, 28), np.uint8))[:16], mtime=0)
    images.write_bytes(header + _gzip_zeros(64))  # 64 KB on disk, 64 MB of zeros after the 10 images
    assert images.stat().st_size < 100_000
    with _peak_below(8 << 20), pytest.raises(ValueError) as info:
        data.load("mnist", tmp_path, "train")
    assert str(info.value) == (f"{images}: oversized IDX file: header says shape (10, 28, 28) (7840 bytes of data), "
                               f"found more (not read further)")


@pytest.mark.parametrize("shape,match", [
    ((10 ** 9, 28, 28), r"header says 1000000000 items \(shape \(1000000000, 28, 28\)\), more than the 60000"),
    ((10, 4096, 4096), r"wrong image size 4096x4096, expected 28x28"),
])
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
    big.write_bytes(b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (2 ** 31, 28, 28)))
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
    assert f"t10k-labels-idx1-ubyte.gz: {endless.url}/t10k-labels-idx1-ubyte.gz {what}, more than the published " \
           f"size of 4542 bytes: download aborted and the partial file deleted" in err[0]
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
        blob[sof + 5: sof + 9] = struct.pack(">HH", 65000, 65000)
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

    with _peak_below(4 << 20), pytest.raises(ValueError, match=f"blocks must be at most {MAX_BLOCKS} per group, "
                                                               f"got 100000000"):
        create_model("res", dataset="tiny", blocks=100_000_000)
    save = tmp_path / "run"
    code = cli.main(["train", "--dataset", "mnist5k", "--block", "100000000", "--save", str(save)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"sspnet train: error: blocks must be at most {MAX_BLOCKS} per group, got 100000000"]
