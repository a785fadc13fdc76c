"""torch.hub (hubconf.py): weights= from a run folder, a file or a URL with its sha256, cached; pretrained=True
refused with the way out."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import pytest
import torch

import sspnet

REPO = Path(__file__).resolve().parents[2]


def _saved_run(tmp_path: Path, scheme: str = "res") -> tuple[Path, torch.nn.Module]:
    from sspnet.nn.checkpoints import save_checkpoint

    model = sspnet.create_model(scheme, dataset="mnist5k", blocks=1, seed=3)
    run = tmp_path / f"run-{scheme}"
    run.mkdir()
    save_checkpoint(run / "model_final.pt", model)
    return run, model


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub_dir(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_hub_weights_from_a_run_folder_and_a_file(tmp_path):
    run, model = _saved_run(tmp_path)
    loaded = torch.hub.load(str(REPO), "res", source="local", weights=str(run))
    assert _same(loaded, model) and not loaded.training and loaded.config["dataset"] == "mnist5k"
    ckpt = run / "model_final.pt"
    assert _same(torch.hub.load(str(REPO), "res", source="local", weights=ckpt, weights_sha256=_sha(ckpt)), model)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        torch.hub.load(str(REPO), "res", source="local", weights=ckpt, weights_sha256="0" * 64)
    with pytest.raises(ValueError, match=r"hold a 'res' model, not 'ssp2'.*'res', weights="):
        torch.hub.load(str(REPO), "ssp2", source="local", weights=str(run))
    with pytest.raises(FileNotFoundError, match="no run folder or checkpoint"):
        torch.hub.load(str(REPO), "res", source="local", weights=str(tmp_path / "missing"))


def test_hub_weights_from_a_url_are_checked_and_cached(tmp_path, hub_dir, monkeypatch):
    from sspnet.nn import hub

    run, model = _saved_run(tmp_path)
    ckpt = run / "model_final.pt"
    sha = _sha(ckpt)
    calls = []

    def fake_download(url, dst):  # the https "server": a local file
        calls.append(url)
        shutil.copyfile(ckpt, dst)

    monkeypatch.setattr(hub, "_download", fake_download)
    url = f"https://example.org/weights/res-mnist5k.pt#sha256={sha}"
    assert _same(torch.hub.load(str(REPO), "res", source="local", weights=url), model)
    cached = hub_dir / "checkpoints" / "res-mnist5k.pt"
    assert cached.is_file() and calls == ["https://example.org/weights/res-mnist5k.pt"]
    assert _same(torch.hub.load(str(REPO), "res", source="local", weights=url), model) and len(calls) == 1  # cached
    plain = "https://example.org/weights/other.pt"
    assert _same(torch.hub.load(str(REPO), "res", source="local", weights=plain, weights_sha256=sha), model)
    # a wrong hash: refused, the download deleted
    with pytest.raises(ValueError, match="sha256 mismatch"):
        torch.hub.load(str(REPO), "res", source="local", weights=f"https://example.org/bad.pt#sha256={'1' * 64}")
    assert not (hub_dir / "checkpoints" / "bad.pt").exists()
    with pytest.raises(ValueError, match="needs the file's sha256"):
        torch.hub.load(str(REPO), "res", source="local", weights="https://example.org/x.pt")
    with pytest.raises(ValueError, match="use an https URL"):
        torch.hub.load(str(REPO), "res", source="local", weights=f"http://example.org/x.pt#sha256={sha}")
    # a file:// URL goes through torch.hub's own downloader
    monkeypatch.undo()
    file_url = ckpt.resolve().as_uri() + f"#sha256={sha}"
    assert _same(torch.hub.load(str(REPO), "res", source="local", weights=file_url), model)


def test_hub_weights_from_a_loopback_http_server(tmp_path, hub_dir):
    import functools
    import http.server

    run, model = _saved_run(tmp_path, "ssp2")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(run))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/model_final.pt#sha256={_sha(run / 'model_final.pt')}"
        assert _same(torch.hub.load(str(REPO), "ssp2", source="local", weights=url), model)
        assert (hub_dir / "checkpoints" / "model_final.pt").is_file()
    finally:
        server.shutdown()
        server.server_close()


def test_hub_pretrained_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="no pretrained weights.*weights="):
        torch.hub.load(str(REPO), "ssp2", source="local", pretrained=True)
    model = torch.hub.load(str(REPO), "ssp2", source="local", pretrained=False, dataset="mnist5k", blocks=1)
    assert model.config["scheme"] == "ssp2"
