"""The one owner of each small idea in io: the run-folder layout, the canonical-JSON hash, the duration
formatter, the PNG saver and the package version."""

from __future__ import annotations

import importlib.metadata
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import sspnet
from sspnet.io.jsonio import canonical_hash
from sspnet.io.progress import fmt_seconds
from sspnet.io.runlayout import RunLayout
from sspnet.nn.checkpoints import resolve_checkpoint


# --- the run layout ---------------------------------------------------------------------------------------
def test_layout_names_every_file_once_and_maps_each_crit():
    run = RunLayout("runs/r")
    assert [RunLayout.checkpoint_name(c) for c in RunLayout.CRITS] == [
        "model_final.pt",
        "model_acc.pt",
        "model_loss.pt",
        "model_final.pt",
    ]
    assert run.checkpoint("last") == run.checkpoint() == Path("runs/r/model_final.pt")
    paths = [
        run.config,
        run.metrics,
        run.log_file,
        run.state_file,
        run.tensorboard_dir,
        run.compare_record,
        run.growth_record,
        run.audit_record,
        *(run.checkpoint(c) for c in ("acc", "loss", "final")),
    ]
    assert all(p.parent == Path("runs/r") for p in paths) and len({p.name for p in paths}) == len(paths)
    assert set(RunLayout.TRAIN_FILES) == {
        run.config.name,
        run.metrics.name,
        run.log_file.name,
        run.state_file.name,
        *RunLayout.CHECKPOINTS.values(),
    }
    with pytest.raises(ValueError, match="unknown crit 'best'; valid: final, acc, loss, last"):
        RunLayout.checkpoint_name("best")


def test_read_metrics_skips_blank_lines_and_train_files_lists_what_is_there(tmp_path):
    run = RunLayout(tmp_path)
    with pytest.raises(FileNotFoundError):
        run.read_metrics()
    run.metrics.write_text('{"epoch": 1}\n\n{"epoch": 2, "val_acc": 50.0}\n')
    assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2, "val_acc": 50.0}]
    run.state_file.write_bytes(b"")
    assert run.train_files() == ["metrics.jsonl", "last.pt"]  # TRAIN_FILES order
    run.metrics.write_text('{"epoch": 1}\n{"epo')
    with pytest.raises(json.JSONDecodeError):
        run.read_metrics()


def test_train_writes_exactly_the_layouts_files_and_the_readers_find_them(tmp_path):
    from sspnet.train import TrainConfig, train
    from sspnet.train.folder import RunFolder

    run = tmp_path / "run"
    train(
        TrainConfig(
            dataset="mnist5k",
            model="res",
            blocks=1,
            batch_size=16,
            epochs=1,
            steps_per_epoch=1,
            eval_n_images=50,
            quiet=True,
            save=str(run),
        )
    )
    assert issubclass(RunFolder, RunLayout)
    names = {p.name for p in run.iterdir()}
    assert set(RunLayout.TRAIN_FILES) <= names and names - set(RunLayout.TRAIN_FILES) <= {RunLayout.LOCK}
    layout = RunLayout(run)
    for crit in RunLayout.CRITS:
        assert resolve_checkpoint(run, crit) == layout.checkpoint(crit)
    assert [r["epoch"] for r in layout.read_metrics()] == [1]
    assert json.loads(layout.config.read_text())["provenance"]["sspnet_version"] == sspnet.__version__


# --- the canonical-JSON hash --------------------------------------------------------------------------------
def test_canonical_hash_is_the_compare_and_scheme_hash_and_never_changes(tmp_path):
    from sspnet.experiments.compare.plan.runs import config_hash
    from sspnet.nn.registry import model_identity
    from sspnet.train import TrainConfig
    from sspnet.train.folder import scheme_hashes

    obj = {"b": [1, 2.5, None], "a": {"y": "x", "p": Path("/r")}}
    # the value compare's run hashes had before the one owner existed: cached runs are found by it
    assert canonical_hash(obj) == "083c6b2bbd2ccb06" == config_hash(obj)
    assert canonical_hash({"a": {"p": "/r", "y": "x"}, "b": [1, 2.5, None]}) == canonical_hash(obj)
    assert canonical_hash({**obj, "b": [1, 2.5]}) != canonical_hash(obj)
    scheme = tmp_path / "my_heun.json"
    scheme.write_text(json.dumps({"name": "my_heun", "alpha": [[1], [0.5, 0.5]], "beta": [[1], [0, 0.5]]}))
    hashes = scheme_hashes(TrainConfig(dataset="mnist5k", model=str(scheme)))
    assert hashes == {str(scheme): canonical_hash(model_identity(str(scheme)))}


# --- the duration formatter ---------------------------------------------------------------------------------
def test_one_duration_formatter_in_two_styles():
    assert [fmt_seconds(s) for s in (0, 42.4, 59.6, 725, 3725)] == ["0:00", "0:42", "1:00", "12:05", "1:02:05"]
    words = [fmt_seconds(s, "words") for s in (40, 89.6, 780, 5.2 * 3600, 3.1 * 86400)]
    assert words == ["40 s", "90 s", "13 min", "5.2 h", "3.1 days"]
    for s in (None, float("nan"), float("inf")):
        assert fmt_seconds(s) == fmt_seconds(s, "words") == "?"
    assert fmt_seconds(-3) == "0:00" and fmt_seconds(-3, "words") == "0 s"
    with pytest.raises(ValueError, match="unknown duration style 'iso'; valid: clock, words"):
        fmt_seconds(1, "iso")


# --- the PNG saver ------------------------------------------------------------------------------------------
def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_one_png_saver_full_figure_or_cropped(tmp_path):
    import matplotlib.pyplot as plt

    from sspnet.eval import growth_plots as compare_plots
    from sspnet.eval.plots import save_png

    def figure():
        fig = plt.figure(figsize=(3, 2))
        fig.add_subplot().plot([0, 1], [0, 1])
        return fig

    full = compare_plots.save_figure(figure(), tmp_path / "full.png")  # compare's figures: the whole canvas
    assert _png_size(full) == (330, 220)  # 3 x 2 inches at 110 dpi
    fig = figure()
    cropped = save_png(fig, tmp_path / "tight.png")  # attack's figures: cropped to the content
    assert _png_size(cropped) != (330, 220) and not plt.fignum_exists(fig.number)
    assert not list(tmp_path.glob(".*.tmp"))


# --- the version ----------------------------------------------------------------------------------------------
def test_the_version_is_stated_once():
    from sspnet._version import __version__
    from sspnet.io.files import provenance

    assert sspnet.__version__ == __version__ == importlib.metadata.version("sspnet")
    assert provenance()["sspnet_version"] == __version__
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'attr = "sspnet._version.__version__"' in pyproject
    out = subprocess.run([sys.executable, "-m", "sspnet", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"sspnet {__version__}"
