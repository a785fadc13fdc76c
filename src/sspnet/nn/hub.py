"""Weights for torch.hub entry points (`hubconf.py`): `weights=` a run folder, a checkpoint file or a URL.

    model = torch.hub.load(repo, "ssp2", source="local", weights="runs/ssp2")                   # run folder
    model = torch.hub.load(repo, "ssp2", source="local", weights="https://host/ssp2.pt#sha256=HEX")

A URL must carry the file's sha256 (a `#sha256=HEX` fragment or `weights_sha256=HEX`): the file is downloaded
once into `torch.hub.get_dir()/checkpoints/` (where torch.hub caches weights), checked against it before it is
loaded (a mismatch deletes the download and raises) and read back from there next time (checked again). https
and file:// URLs are accepted, http only on the loopback interface. Every file is loaded by
`sspnet.load_model` (`torch.load(weights_only=True)`: a file whose pickle would run code is refused).
sspnet publishes no pretrained weights, so `pretrained=True` is refused with that message.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from torch import nn

URL_SCHEMES = ("https", "http", "file")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
NO_PRETRAINED = (
    "sspnet publishes no pretrained weights, so pretrained=True has nothing to load; pass your own "
    "with weights=RUN_DIR, weights=CHECKPOINT.pt or weights='https://.../file.pt#sha256=HEX'"
)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, dst: str) -> None:
    """Fetch `url` into `dst` (torch.hub's downloader: a temporary file moved into place, a progress bar)."""
    import torch.hub

    torch.hub.download_url_to_file(url, dst, progress=True)


def _check_sha(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"{what} must be the 64 hex digits of the file's sha256, got {value!r}")
    return text


def is_url(weights: Any) -> bool:
    return isinstance(weights, str) and urllib.parse.urlsplit(weights).scheme.lower() in URL_SCHEMES


def fetch(url: str, sha256: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local copy of a checkpoint URL, downloaded once into `cache_dir` (default
    torch.hub.get_dir()/checkpoints) and checked against its sha256 (`#sha256=HEX` or `sha256`)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "http" and (parts.hostname or "") not in LOOPBACK:
        raise ValueError(f"refusing {url}: use an https URL (http only on the loopback interface)")
    fragment = dict(urllib.parse.parse_qsl(parts.fragment))
    given = _check_sha(sha256, "weights_sha256")
    in_url = _check_sha(fragment.get("sha256"), "the URL's #sha256=")
    if given and in_url and given != in_url:
        raise ValueError(f"weights_sha256={given} and the URL's #sha256={in_url} differ")
    expected = given or in_url
    if expected is None:
        raise ValueError(
            f"{url}: a weights URL needs the file's sha256: append #sha256=HEX to the URL or pass weights_sha256=HEX"
        )
    clean = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    if cache_dir is None:
        import torch.hub

        cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    name = os.path.basename(urllib.parse.unquote(parts.path)) or f"{expected[:16]}.pt"
    target = Path(cache_dir) / name
    if target.is_file() and sha256_file(target) == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _download(clean, str(target))
    found = sha256_file(target)
    if found != expected:
        target.unlink(missing_ok=True)
        raise ValueError(
            f"{url}: sha256 mismatch: the download has {found}, expected {expected}; the file was "
            f"deleted and nothing was loaded"
        )
    return target


def load_weights(
    weights: str | os.PathLike, scheme: str | None = None, *, sha256: str | None = None, **overrides: Any
) -> nn.Module:
    """A model (eval mode) from a run folder, a checkpoint file or a checkpoint URL, loaded by
    `sspnet.load_model(path, **overrides)`; ValueError when `scheme` is given and the weights hold another."""
    from sspnet.nn.checkpoints import load_model

    if is_url(weights):
        path = fetch(str(weights), sha256)
    else:
        path = Path(weights).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"weights={str(weights)!r}: no run folder or checkpoint file there (a URL must start with https://)"
            )
        expected = _check_sha(sha256, "weights_sha256")
        if expected is not None:
            if not path.is_file():
                raise ValueError(f"weights_sha256 checks a file, but {path} is a folder")
            found = sha256_file(path)
            if found != expected:
                raise ValueError(f"{path}: sha256 mismatch: the file has {found}, expected {expected}")
    model = load_model(path, **overrides)
    held = getattr(model, "config", {}).get("scheme")
    if scheme is not None and held is not None and held != scheme:
        entry = str(held).replace("-", "_")
        raise ValueError(
            f"weights {weights} hold a {held!r} model, not {scheme!r}: load them with "
            f"torch.hub.load(..., {entry!r}, weights=...) or sspnet.load_model"
        )
    return model
