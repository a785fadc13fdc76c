"""Per-image correctness of every run, compactly: one bit per image (1 = classified correctly), packed
little-endian (`numpy.packbits(..., bitorder="little")`) and base64-encoded, one string per run and table.

A record's "correct" maps a key to its bits: "clean", "fgsm", "pgd" (the main images, at eps), "autoattack"
(the AutoAttack images), "sweep <eps>" (the sweep images; "sweep 0" = clean). Bit i belongs to the i-th
image index of the key's image set (`image_set(key)`; the indices are in the record's "images" and, stored
once, in results.json's "images").

    from sspnet.experiments.compare.work.perimage import unpack_results
    runs = unpack_results(json.load(open("OUT/results.json")))
    idx, ok = runs[0]["correct"]["pgd"]        # image indices, bool per image
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

FORMAT = "bits-v1: base64 of numpy.packbits(correct, bitorder='little'); bit i = images[set]['indices'][i]"
MAIN_KEYS = ("clean", "fgsm", "pgd")


def pack(correct: Sequence[bool] | Any) -> str:
    """Bools (list, numpy or torch) as a base64 string of little-endian packed bits."""
    if hasattr(correct, "detach"):
        correct = correct.detach().cpu().numpy()
    bits = np.packbits(np.asarray(correct, dtype=bool).reshape(-1), bitorder="little")
    return base64.b64encode(bits.tobytes()).decode("ascii")


def unpack(text: str, n: int) -> np.ndarray:
    """The n bools packed by `pack` (ValueError when the string holds fewer bits)."""
    raw = np.frombuffer(base64.b64decode(text.encode("ascii")), dtype=np.uint8)
    if raw.size * 8 < n:
        raise ValueError(f"packed correctness holds {raw.size * 8} bits, {n} images expected")
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def sweep_key(eps: float | str) -> str:
    """The key of the sweep's bits at eps (pixel units; 0 = clean), e.g. 'sweep 0.05'."""
    return f"sweep {float(eps):.10g}"


def image_set(key: str) -> str:
    """The image set ("eval", "sweep", "autoattack") whose indices a key's bits follow."""
    if key.startswith("sweep "):
        return "sweep"
    if key in MAIN_KEYS:
        return "eval"
    if key == "autoattack":
        return "autoattack"
    raise ValueError(f"unknown correctness key {key!r}")


def run_correct(rec: dict[str, Any], images: dict[str, Any] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (image indices, bool correct)} of one run record; images: the image sets (default: the
    record's own "images")."""
    images = images or rec["images"]
    out = {}
    for key, text in (rec.get("correct") or {}).items():
        idx = np.asarray(images[image_set(key)]["indices"], dtype=np.int64)
        out[key] = (idx, unpack(text, idx.size))
    return out


def unpack_results(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of a results.json dict as {"model", "seed", "variant", "correct": {key: (indices, bools)}}."""
    shared = results.get("images") or {}
    return [
        {
            "model": r["model"],
            "seed": r["seed"],
            "variant": r["variant"],
            "correct": run_correct(r, {**shared, **{k: v for k, v in r["images"].items() if "indices" in v}}),
        }
        for r in results["records"]
    ]


def share_images(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The image sets stored once (from the first record) and the records without the indices that equal
    them (a record whose images differ keeps its own)."""
    if not records:
        return {}, records
    shared = records[0].get("images") or {}
    slim = []
    for r in records:
        images = {
            t: ({k: v for k, v in d.items() if k != "indices"} if shared.get(t) == d else d)
            for t, d in (r.get("images") or {}).items()
        }
        slim.append({**r, "images": images})
    return shared, slim
