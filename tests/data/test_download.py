"""Downloads against a loopback HTTP server: Range resume, md5 check, atomic rename, extraction, CLI."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import zipfile

import numpy as np
import pytest
from local_http import serve

from sspnet import cli, data
from sspnet.data import download as dl
from sspnet.data import synthetic
from sspnet.data.sources import SOURCES, Resource


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files {"/name": bytes}; honours "Range: bytes=N-" with 206 unless server.ignore_range;
    server.cut (bytes) truncates one response after that many bytes of body (an interrupted transfer)."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if srv.cut is not None:
            payload, srv.cut = payload[: srv.cut], None
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def server():
    yield from serve(_Handler, files={}, requests=[], ignore_range=False, cut=None)


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


BLOB = bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8))


def test_fetch_fresh_and_md5_ok(tmp_path, server):
    server.files["/f.bin"] = BLOB
    out = dl.fetch(server.url + "/f.bin", tmp_path / "sub" / "f.bin", _md5(BLOB), quiet=True, timeout=5)
    assert out.read_bytes() == BLOB and not (tmp_path / "sub" / "f.bin.part").exists()
    assert server.requests == [("/f.bin", None)]


def test_fetch_resumes_partial_file_with_range(tmp_path, server):
    server.files["/f.bin"] = BLOB
    (tmp_path / "f.bin.part").write_bytes(BLOB[:70_000])
    dl.fetch(server.url + "/f.bin", tmp_path / "f.bin", _md5(BLOB), quiet=True, timeout=5)
    assert (tmp_path / "f.bin").read_bytes() == BLOB
    assert server.requests == [("/f.bin", "bytes=70000-")]


def test_interrupted_download_then_resume(tmp_path, server):
    server.files["/f.bin"] = BLOB
    server.cut = 50_000
    with pytest.raises(ConnectionError, match="run the command again to resume"):
        dl.fetch(server.url + "/f.bin", tmp_path / "f.bin", _md5(BLOB), quiet=True, timeout=5)
    part = tmp_path / "f.bin.part"
    assert not (tmp_path / "f.bin").exists() and 0 < part.stat().st_size <= 50_000
    kept = part.stat().st_size
    dl.fetch(server.url + "/f.bin", tmp_path / "f.bin", _md5(BLOB), quiet=True, timeout=5)
    assert (tmp_path / "f.bin").read_bytes() == BLOB
    assert server.requests[-1] == ("/f.bin", f"bytes={kept}-")


def test_server_ignoring_range_restarts(tmp_path, server):
    server.files["/f.bin"] = BLOB
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"garbage that is not the prefix")
    dl.fetch(server.url + "/f.bin", tmp_path / "f.bin", _md5(BLOB), quiet=True, timeout=5)
    assert (tmp_path / "f.bin").read_bytes() == BLOB


def test_complete_part_file_answered_416_is_verified(tmp_path, server):
    server.files["/f.bin"] = BLOB
    (tmp_path / "f.bin.part").write_bytes(BLOB)
    dl.fetch(server.url + "/f.bin", tmp_path / "f.bin", _md5(BLOB), quiet=True, timeout=5)
    assert (tmp_path / "f.bin").read_bytes() == BLOB


def test_md5_mismatch_deletes_part_and_names_file(tmp_path, server):
    server.files["/f.bin"] = BLOB
    with pytest.raises(ValueError, match=r"f.bin: md5 mismatch after download .*expected 0{32}, found " + _md5(BLOB)):
        dl.fetch(server.url + "/f.bin", tmp_path / "f.bin", "0" * 32, quiet=True, timeout=5)
    assert list(tmp_path.iterdir()) == []


def _idx_files(tmp_path):
    synthetic.write_mnist(tmp_path / "src", n_train=30, n_test=20, gz=True, seed=4)
    return {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}


def test_cli_download_mnist_layout_and_round_trip(tmp_path, server, monkeypatch, capsys):
    files = _idx_files(tmp_path)
    for name, body in files.items():
        server.files["/mnist/" + name] = body
    table = tuple(
        Resource(r.filename, _md5(files[r.filename]), (server.url + "/mnist/",), r.subdir, False)
        for r in SOURCES["mnist"]
    )
    monkeypatch.setitem(dl.SOURCES, "mnist", table)
    root = tmp_path / "root"
    assert cli.main(["download", "mnist", "--data-root", str(root), "--quiet"]) == 0
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(files)
    x, y = data.load("mnist", root, "test")
    ref = synthetic.write_mnist(tmp_path / "again", n_train=30, n_test=20, seed=4)
    np.testing.assert_array_equal(x.numpy(), ref["test"][0])
    np.testing.assert_array_equal(y.numpy(), ref["test"][1])
    # a second run finds verified files and downloads nothing
    n = len(server.requests)
    assert cli.main(["download", "mnist", "--root", str(root)]) == 0
    assert len(server.requests) == n and "present, md5 ok" in capsys.readouterr().err


def test_cli_mirror_with_official_md5_mismatch_exits_2(tmp_path, server, capsys):
    for name, body in _idx_files(tmp_path).items():
        server.files["/m/" + name] = body
    code = cli.main(["download", "fmnist", "--root", str(tmp_path / "r"), "--mirror", server.url + "/m", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("sspnet download: error: ") and "md5 mismatch" in err[0]
    assert "expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d" in err[0]  # the published train-images md5
    assert not (tmp_path / "r" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()


def test_cli_unreachable_server_exits_2(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = cli.main(
        [
            "download",
            "cifar10",
            "--root",
            str(tmp_path),
            "--mirror",
            f"http://127.0.0.1:{port}",
            "--timeout",
            "5",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "could not download cifar-10-python.tar.gz" in err[0]


def test_cli_mnist5k_is_embedded(capsys):
    assert cli.main(["download", "mnist5k"]) == 0
    assert "embedded" in capsys.readouterr().err


def test_download_and_extract_cifar_archive(tmp_path, server):
    src = tmp_path / "src"
    ref = synthetic.write_cifar_python(src / "cifar-10-batches-py", n_per_batch=5)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    body = buf.getvalue()
    server.files["/cifar-10-python.tar.gz"] = body
    res = (Resource("cifar-10-python.tar.gz", _md5(body), (), ".", True, "cifar-10-batches-py"),)
    root = tmp_path / "root"
    got = dl.download("cifar10", root, base_url=server.url, quiet=True, timeout=5, resources=res)
    assert got == [root / "cifar-10-python.tar.gz"]
    x, y = data.load("cifar10", root, "train")
    np.testing.assert_array_equal(x.numpy(), ref["train"][0])
    assert (root / "cifar-10-batches-py" / dl.MARKER).read_text().strip() == _md5(body)
    logs = []
    dl.download("cifar10", root, base_url=server.url, timeout=5, resources=res, log=logs.append)
    assert any("already extracted" in m for m in logs) and len(server.requests) == 1


def test_download_and_extract_tiny_zip(tmp_path, server):
    src = tmp_path / "src" / "tiny-imagenet-200"
    synthetic.write_tiny(src, per_class=2, n_val=3)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, p.relative_to(src.parent).as_posix())
    body = buf.getvalue()
    server.files["/tiny-imagenet-200.zip"] = body
    res = (Resource("tiny-imagenet-200.zip", _md5(body), (), ".", True, "tiny-imagenet-200"),)
    dl.download("tiny", tmp_path / "root", base_url=server.url, quiet=True, timeout=5, resources=res)
    x, y = data.load("tiny", tmp_path / "root", "test")
    x_src, y_src = data.load("tiny", tmp_path / "src", "test")
    assert x.shape == (3, 3, 64, 64) and np.array_equal(x.numpy(), x_src.numpy()) and y.tolist() == y_src.tolist()


def test_official_sources_table():
    assert SOURCES["cifar10"][0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert SOURCES["tiny"][0].md5 == "90528d7ca1a48142e341f4ef8d21d0de"
    assert {r.filename for r in SOURCES["mnist"]} == {r.filename for r in SOURCES["fmnist"]}
    assert all(len(r.md5) == 32 for rs in SOURCES.values() for r in rs)


def test_a_dataset_without_a_source_is_one_line(tmp_path, monkeypatch, capsys):
    """A registered dataset with no download source (CONTRIBUTING's "how to add a dataset") gets one line naming
    the downloadable ones, not a KeyError; nothing is written."""
    import dataclasses

    from sspnet.data.specs import DATASETS

    monkeypatch.setitem(DATASETS, "toy32", dataclasses.replace(DATASETS["cifar10"], name="toy32"))
    with pytest.raises(ValueError, match=r"^no download source for dataset 'toy32'; downloadable: .*cifar10"):
        dl.download("toy32", root=tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["download", "toy32", "--data-root", str(tmp_path)]) == 2
    assert "no download source for dataset 'toy32'" in capsys.readouterr().err
