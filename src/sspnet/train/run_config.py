"""Reading a run folder's config.json: the training options (`read_run_config`, converting the files of
earlier versions), what else it records (`read_run_meta`) and the options a resumed run takes (`resume_options`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sspnet.data.specs import get_dataset_spec
from sspnet.io.runlayout import RunLayout
from sspnet.train.options import (
    DEFAULT_DATASET,
    EPOCH_DEPENDENT,
    LEGACY_VALUES,
    RUNTIME_ONLY,
    canonical_name,
    flag,
    to_pixels,
)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The training options stored in run_dir/config.json: canonical field names, eps / alpha in pixel units.

    A config.json of an earlier version (eps / alpha in CLI units beside top-level eps_px / alpha_px, old
    option names, no val_split / select_on / train_quantize: `LEGACY_VALUES`) is converted. FileNotFoundError
    naming the folder when it is no run folder.
    """
    doc = _read_doc(run_dir)
    options = doc.get("config", doc)
    if not isinstance(options, dict):
        raise ValueError(
            f'{RunLayout(run_dir).config}: its "config" entry must be a JSON object of training '
            f"options, got {type(options).__name__}; restore the file or start a new run"
        )
    cfg = {canonical_name(k): v for k, v in options.items()}
    if "config" in doc and doc.get("format_version") is None:  # before pixel units: eps_px / alpha_px are exact
        for name in ("eps", "alpha"):
            if doc.get(f"{name}_px") is not None:
                cfg[name] = doc[f"{name}_px"]
            elif cfg.get(name) is not None:
                cfg[name] = to_pixels(cfg[name], get_dataset_spec(cfg.get("dataset", DEFAULT_DATASET)))
    for name, value in LEGACY_VALUES.items():
        cfg.setdefault(name, value)
    return cfg


def read_run_meta(run_dir: str | Path) -> dict[str, Any]:
    """What config.json records besides the options: {"defaulted": options filled from defaults, "sources":
    {option: where its value came from} (`sspnet.train.sources`), "budget_history": [{"epochs", "at_epoch",
    "at_step"[, "milestones"]}, ...], "scheme_hashes": {scheme file: hash of its coefficients}} (empty when
    absent: a config.json of an earlier version has no sources)."""
    doc = _read_doc(run_dir)
    hashes, sources = doc.get("scheme_hashes"), doc.get("sources")
    return {
        "defaulted": list(doc.get("defaulted") or []),
        "sources": dict(sources) if isinstance(sources, dict) else {},
        "budget_history": list(doc.get("budget_history") or []),
        "scheme_hashes": dict(hashes) if isinstance(hashes, dict) else {},
    }


def resume_options(run_dir: str | Path) -> dict[str, Any]:
    """`read_run_config` less the options whose stored value is an epoch-dependent default (`EPOCH_DEPENDENT`):
    a run resumed with a new --epochs derives them as a fresh run with that budget would."""
    cfg = read_run_config(run_dir)
    for name in set(EPOCH_DEPENDENT) & set(read_run_meta(run_dir)["defaulted"]):
        cfg.pop(name, None)
    for name in RUNTIME_ONLY:  # a run started with --force is resumed, not overwritten again
        cfg.pop(name, None)
    return cfg


def _read_doc(run_dir: str | Path) -> dict[str, Any]:
    """run_dir/config.json as a dict; FileNotFoundError / ValueError naming the folder or file."""
    path = RunLayout(run_dir).config
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(
            f"run folder {run_dir} does not exist; start a run with `sspnet train {flag('save')} DIR`"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not an sspnet training run folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return doc
