"""Hostile archives (sspnet.data.archives): traversal, links, the CVE-2025-4517 long-path chain, caps on size,
members and headers. Nothing is written outside the target or left behind."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile

import pytest
from bombs import gzip_zeros as _gzip_zeros
from bombs import peak_below as _peak_below

from sspnet.data import archives


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
        info.external_attr = 0o120777 << 16
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


@pytest.mark.parametrize(
    "build,msg",
    [
        (lambda tf: _file(tf, "../evil"), "refusing member '../evil'"),
        (lambda tf: _file(tf, "/tmp/evil-abs"), "refusing member '/tmp/evil-abs'"),
        (lambda tf: _link(tf, "d/up", "../../outside"), "refusing link member 'd/up' -> '../../outside'"),
        (lambda tf: _link(tf, "abs", "/etc/passwd"), "refusing link member 'abs' -> '/etc/passwd'"),
        (lambda tf: _link(tf, "hard", "../x", tarfile.LNKTYPE), "refusing link member 'hard'"),
        (lambda tf: _link(tf, "dev", "", tarfile.CHRTYPE), "refusing special member 'dev'"),
        (lambda tf: _link(tf, "fifo", "", tarfile.FIFOTYPE), "refusing special member 'fifo'"),
        (lambda tf: _link(tf, "inner", "ok.txt"), "refusing link member 'inner' -> 'ok.txt'"),
    ],
)
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


def _one_line_refusal(archive, dest, match, **kw):
    with pytest.raises(ValueError, match=match) as info:
        archives.extract(archive, dest, **kw)
    assert "\n" not in str(info.value) and str(archive) in str(info.value)
    assert [p.name for p in dest.iterdir()] == []  # nothing left behind, not even the temporary folder
    return info.value


def _outside_snapshot(root):
    return sorted(
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in root.rglob("*")
        if "out" not in p.relative_to(root).parts
    )


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


@pytest.mark.parametrize(
    "build,match",
    [
        # a symlink to the outside, then a file written through it
        (lambda tf, out: (_link(tf, "d", str(out)), _file(tf, "d/evil", b"pwned")), "refusing link member 'd'"),
        (lambda tf, out: (_link(tf, "d", "../outside"), _file(tf, "d/evil", b"pwned")), "refusing link member 'd'"),
        # a chain of links that each stay inside, then a file through the chain
        (
            lambda tf, out: (
                _link(tf, "l1", "."),
                _link(tf, "l2", "l1/l1"),
                _link(tf, "l3", "l2/.."),
                _file(tf, "l3/evil", b"pwned"),
            ),
            "refusing link member 'l1' -> '.'",
        ),
        # a hard link to an outside passwd-like file, then a regular member of the same name overwriting it
        (
            lambda tf, out: (_link(tf, "h", str(out / "passwd"), tarfile.LNKTYPE), _file(tf, "h", b"pwned")),
            "refusing link member 'h'",
        ),
        # names that leave the target, one with a newline: the message stays on one line
        (lambda tf, out: _file(tf, "../outside/evil", b"pwned"), "refusing member '../outside/evil'"),
        (lambda tf, out: _file(tf, str(out / "evil"), b"pwned"), "refusing member '/.*evil'"),
        (lambda tf, out: _file(tf, "a\n/../../evil", b"pwned"), r"refusing member 'a\\n/../../evil'"),
        # a file and a folder with one name, and a member twice
        (lambda tf, out: (_file(tf, "x"), _file(tf, "x/y")), "refusing member 'x/y': 'x' is not a plain folder"),
        (lambda tf, out: (_file(tf, "x"), _file(tf, "x")), "refusing member 'x': it appears twice"),
    ],
)
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
    _one_line_refusal(
        tar, dest, r"refusing member 'top/f2': the archive unpacks to more than 2500 bytes", max_bytes=2500
    )
    _one_line_refusal(tar, dest, r"refusing member 'top/f3': the archive holds more than 3 members", max_members=3)
    z = _zip(tmp_path / "big.zip", [(f"top/f{i}", b"\0" * 1000) for i in range(5)])
    _one_line_refusal(
        z, dest, r"big.zip: refusing member 'top/f2': the archive unpacks to more than 2500", max_bytes=2500
    )
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
        _one_line_refusal(
            archive,
            dest,
            r"bomb.tar.gz: refusing the tar header before its first member: it takes "
            r"more than 1048576 bytes",
        )


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
