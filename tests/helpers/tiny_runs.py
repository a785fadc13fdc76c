"""A tiny training recipe and a copy of a finished run, for the tests that train, resume or refuse a run."""

from __future__ import annotations

import shutil
from pathlib import Path

TINY = dict(dataset="mnist5k", model="res", blocks=1, batch_size=16, quiet=True, eval_n_images=50, seed=1)


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst
