"""Restricted unpickler and archive extraction refuse hostile input, and nothing executes or escapes."""
from __future__ import annotations

import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest

from sspnet import data
from sspnet.data import archives, synthetic
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
    with pytest.raises(ValueError, match="refusing symbolic link member 'link'"):
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
    (lambda tf: _link(tf, "d/up", "../../outside"), "refusing link 'd/up' -> '../../outside': it points outside"),
    (lambda tf: _link(tf, "abs", "/etc/passwd"), "absolute target"),
    (lambda tf: _link(tf, "hard", "../x", tarfile.LNKTYPE), "refusing link 'hard'"),
    (lambda tf: _link(tf, "dev", "", tarfile.CHRTYPE), "refusing special member 'dev'"),
])
def test_tar_traversal_and_links_refused(tmp_path, build, msg):
    dest = tmp_path / "out"
    archive = _tar(tmp_path / "a.tar.gz", lambda tf: (_file(tf, "good/ok.txt"), build(tf)))
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
        archives.extract(archive, dest)
    assert list(dest.iterdir()) == []


def test_safe_archives_extract(tmp_path):
    dest = tmp_path / "out"
    archive = _tar(tmp_path / "a.tgz", lambda tf: (_file(tf, "top/a.txt", b"hello"), _link(tf, "top/l", "a.txt")))
    created = archives.extract(archive, dest)
    assert created == [dest.resolve() / "top"]
    assert (dest / "top" / "a.txt").read_bytes() == b"hello" and (dest / "top" / "l").read_bytes() == b"hello"
    z = _zip(tmp_path / "b.zip", [("top2/b.txt", b"zz")])
    archives.extract(z, dest)
    assert (dest / "top2" / "b.txt").read_bytes() == b"zz"
    (tmp_path / "c.bin").write_bytes(b"neither")
    with pytest.raises(ValueError, match="not a zip or tar archive"):
        archives.extract(tmp_path / "c.bin", dest)
