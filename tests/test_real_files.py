"""Real files and real habits (issue 14): data as people have it, a first run that learns, --threads on every
command, defaults in every --help, torch.hub weights=."""
from __future__ import annotations

import argparse
import hashlib
import pickle
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import sspnet
from sspnet import data
from sspnet.cli import build_parser, main
from sspnet.data import synthetic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield n
    torch.set_num_threads(n)


# --- 1. data as people have it ------------------------------------------------------------------------------
def _dotted(name: str) -> str:
    return name.replace("-idx", ".idx")


@pytest.mark.parametrize("sub", ["MNIST/raw", "."])
@pytest.mark.parametrize("gz", [False, True])
def test_dot_named_idx_files_load_as_they_are(tmp_path, sub, gz):
    """train-images.idx3-ubyte (a dot before idx), as a common mirror names them, raw or .gz."""
    folder = tmp_path / sub
    ref = synthetic.write_mnist(folder, n_train=40, n_test=20, gz=gz, seed=2)
    for f in list(folder.iterdir()):
        f.rename(folder / _dotted(f.name))
    assert sorted(p.name for p in folder.iterdir())[0].startswith("t10k-images.idx3-ubyte")
    for split in ("train", "test"):
        x, y = data.load("mnist", tmp_path, split)
        np.testing.assert_array_equal(x.numpy(), ref[split][0])
        np.testing.assert_array_equal(y.numpy(), ref[split][1])


def test_missing_files_error_lists_near_misses_before_the_download_command(tmp_path, capsys):
    synthetic.write_mnist(tmp_path, n_train=10, n_test=10, gz=False)
    renames = {"train-images-idx3-ubyte": "Train-Images-Idx3-Ubyte",  # case
               "train-labels-idx1-ubyte": "train_labels_idx1_ubyte.gz",  # separators
               "t10k-images-idx3-ubyte": "t10k-images-idx3-ubyte.zip"}  # an extension
    for old, new in renames.items():
        (tmp_path / old).rename(tmp_path / new)
    (tmp_path / "t10k-labels-idx1-ubyte").rename(tmp_path / "keep")
    (tmp_path / "t10k-labels-idx1-ubyte").mkdir()  # a folder of the file's name (as some archives unpack)
    (tmp_path / "notes.txt").write_text("unrelated")
    with pytest.raises(FileNotFoundError) as info:
        data.load("mnist", tmp_path, "train")
    msg = str(info.value)
    for new in renames.values():
        assert str(tmp_path / new) in msg
    assert f"{tmp_path / 't10k-labels-idx1-ubyte'}/ (a folder)" in msg and "notes.txt" not in msg and "keep" not in msg
    assert msg.index("Found files with similar names") < msg.index("Fetch them with: sspnet download mnist")
    assert "train-images.idx3-ubyte" in msg  # the dotted names are among those looked for
    # the command line: one line, exit code 2
    code = main(["train", "--dataset", "mnist", "--data-root", str(tmp_path), "--epochs", "1", "--quiet",
                 "--save", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Train-Images-Idx3-Ubyte" in err


def _py3_batches(folder: Path, n: int = 6, seed: int = 0):
    """cifar-10-batches-py files as Python 3 re-pickles them at protocol 2 (bytes through _codecs.encode)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        images, labels = synthetic.random_arrays(n, 3, 32, 10, seed + i)
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
             b"data": images.reshape(n, -1), b"filenames": [f"img_{k}.png".encode() for k in range(n)]}
        blob = pickle.dumps(d, protocol=2)
        assert b"_codecs\nencode" in blob
        (folder / name).write_bytes(blob)
        out.setdefault("train" if name != "test_batch" else "test", []).append((images, labels))
    return {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v])) for k, v in out.items()}


def test_protocol2_python3_cifar_batches_load(tmp_path):
    ref = _py3_batches(tmp_path / "cifar-10-batches-py")
    for split in ("train", "test"):
        x, y = data.load("cifar10", tmp_path, split)
        np.testing.assert_array_equal(x.numpy(), ref[split][0])
        np.testing.assert_array_equal(y.numpy(), ref[split][1])


def test_codecs_encode_admitted_only_as_latin1_of_a_str(tmp_path):
    import _codecs

    from sspnet.data.safe_pickle import safe_loads

    class Call:
        def __init__(self, *args):
            self.args = args

        def __reduce__(self):
            return (_codecs.encode, self.args)

    assert safe_loads(pickle.dumps(Call("\xff\x00a", "latin1"), protocol=2)) == b"\xff\x00a"
    for args in (("x", "rot13"), ("eJw=", "base64"), (b"x", "latin1"), ("x", "latin1", "ignore")):
        with pytest.raises(ValueError, match="refusing _codecs.encode"):
            safe_loads(pickle.dumps(Call(*args), protocol=2))


def _write_split(folder: Path, images: np.ndarray, labels: np.ndarray, split: str) -> None:
    from sspnet.data.idx import IDX_FILES

    img, lab = IDX_FILES[split]
    synthetic.write_idx(folder / img, images[:, 0])
    synthetic.write_idx(folder / lab, labels.astype(np.uint8))


def test_fmnist_refuses_mnist_files_in_a_flat_folder(tmp_path):
    """Real digits (the embedded ones) written as the four IDX files directly in the folder."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        x, y = data.load_numpy("mnist5k", split=split)
        pick = rng.permutation(len(y))[:300]
        _write_split(tmp_path, x[pick], y[pick], split)
    assert data.load("mnist", tmp_path, "train")[0].shape == (300, 1, 28, 28)  # as MNIST: fine
    with pytest.raises(ValueError) as info:
        data.load("fmnist", tmp_path, "train")
    msg = str(info.value)
    assert "\n" not in msg and f"IDX files in {tmp_path} hold MNIST digits, not Fashion-MNIST" in msg
    assert "--dataset mnist" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg


@pytest.mark.parametrize("name, other, first", [("fmnist", "MNIST digits", (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)),
                                                ("mnist", "Fashion-MNIST", (9, 0, 0, 3, 0, 2, 7, 2, 5, 5))])
def test_the_official_first_labels_tell_the_datasets_apart(tmp_path, name, other, first):
    images, labels = synthetic.random_arrays(30, 1, 28, 10, seed=1)  # random pixels: no pixel-statistics hint
    labels[:10] = first
    _write_split(tmp_path, images, labels, "train")
    with pytest.raises(ValueError, match=f"hold {other}, not .*its first labels are {', '.join(map(str, first))}"):
        data.load(name, tmp_path, "train")
    loaded = data.load({"fmnist": "mnist", "mnist": "fmnist"}[name], tmp_path, "train")[1]
    assert loaded[:10].tolist() == list(first)


def test_attack_and_growth_use_the_runs_recorded_data_folder(tmp_path, monkeypatch, capsys):
    root = tmp_path / "my-data"
    synthetic.write_mnist(root / "MNIST" / "raw", n_train=64, n_test=20, seed=5)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "mnist", "--data-root", str(root), "--block", "1", "--epochs", "1",
                 "--steps-per-epoch", "1", "--tbsize", "16", "--val-split", "0", "--quiet", "--save", str(run)]) == 0
    monkeypatch.delenv("SSPNET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # ./data does not exist: only the recorded folder holds the files
    capsys.readouterr()
    assert main(["attack", str(run), "--eps", "0.1", "--iters", "1", "--grid", "0", "--quiet"]) == 0
    assert "20 test images" in capsys.readouterr().out
    assert main(["growth", str(run), "--n", "10", "--steps", "1", "--quiet"]) == 0
    assert (run / "growth.json").is_file()
    # an explicit --data-root still wins
    assert main(["attack", str(run), "--eps", "0.1", "--iters", "1", "--data-root", str(tmp_path / "none"),
                 "--quiet"]) == 2
    assert str(tmp_path / "none") in capsys.readouterr().err


# --- 2. the first run learns ----------------------------------------------------------------------------------
def test_mnist5k_has_its_own_defaults_and_the_others_keep_the_originals():
    from sspnet.train import TrainConfig

    def recipe(**kw):
        r = TrainConfig(**kw).resolved()
        return r.opt, r.lr, r.batch_size, r.schedule

    assert recipe(dataset="mnist5k") == ("adam", 2e-3, 8, "cyclic")
    for dataset in ("mnist", "fmnist", "cifar10", "tiny"):
        assert recipe(dataset=dataset) == ("sgd", 0.1, 128, "multistep")
    assert recipe(dataset="mnist5k", opt="sgd") == ("sgd", 0.1, 128, "multistep")  # --opt: the original's rules
    assert recipe(dataset="mnist5k", lr=0.01, batch_size=32) == ("adam", 0.01, 32, "cyclic")


def test_default_compare_plan_keeps_its_run_folders():
    """The presets set their training options themselves: the mnist5k defaults of `sspnet train` change no run
    hash. The names change only with the preset's own training (the last time: the 2-epoch eps warm-up)."""
    from sspnet.experiments.compare import CompareConfig, make_plan

    plan, _ = make_plan(CompareConfig(out="/nonexistent/compare"))
    assert [r.run_dir.name for r in plan] == ["res-s0-ed352bd3", "res-s1-952378fc", "res-s2-559b6b7f",
                                              "ssp2-s0-7f5b05e0", "ssp2-s1-0dae08c9", "ssp2-s2-68612cd9"]


def test_first_mnist5k_run_with_defaults_learns(tmp_path, restore_threads):
    """`sspnet train --dataset mnist5k --model res --block 1 --epochs 2` with the defaults: above 90% (93.0% with
    one thread; the original's recipe: 51%). All five models at seeds 0 and 1: 91.2-95.8% (issue 14's note)."""
    from sspnet.train import TrainConfig, train

    torch.set_num_threads(1)
    result = train(TrainConfig(dataset="mnist5k", model="res", blocks=1, epochs=2, save=str(tmp_path / "r"),
                               quiet=True))
    assert result.final["test_acc"] > 90.0


# --- 4. --threads ----------------------------------------------------------------------------------------------
COMMANDS = {"train": [], "attack": ["RUN"], "growth": ["RUN"], "compare": [], "models": []}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_threads_sets_torch_threads_in_every_command(command, monkeypatch, restore_threads):
    import importlib

    module = importlib.import_module(f"sspnet.cli.{command}")
    seen = {}

    def run(args):
        seen["threads"] = torch.get_num_threads()
        return 0

    monkeypatch.setattr(module, "run", run)
    want = 1 if restore_threads != 1 else 2
    assert main([command, *COMMANDS[command], "--threads", str(want)]) == 0
    assert seen["threads"] == want


def test_threads_is_no_training_option():
    from sspnet.cli.train import config_from_args

    cfg = config_from_args(build_parser().parse_args(["train", "--threads", "2", "--epochs", "3"]))
    assert cfg.epochs == 3 and not hasattr(cfg, "threads")


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
def test_threads_validated_in_one_line(value, capsys, restore_threads):
    assert main(["models", "--threads", value]) == 2
    err = capsys.readouterr().err
    assert err == f"sspnet models: error: --threads must be an integer >= 1, got {value!r}\n"


def test_compare_threads_are_per_worker(monkeypatch, restore_threads):
    from sspnet.cli import compare as cli_compare
    from sspnet.experiments.compare.executors.pool import pool_map

    seen = {}
    monkeypatch.setattr(cli_compare, "run_compare", lambda config: {"config": seen.setdefault("config", config)})
    assert main(["compare", "--dry-run", "--threads", "3"]) == 0 and seen.pop("config").threads == 3
    assert main(["compare", "--dry-run"]) == 0 and seen.pop("config").threads is None  # 1 per worker
    out = []
    pool_map([0], _threads_of_worker, (), 1, lambda item: None, lambda item, n: out.append(n), threads=3)
    assert out == [(3, 3)]


def _threads_of_worker(args):
    from sspnet.experiments.compare.executors.pool import worker_threads

    return torch.get_num_threads(), worker_threads()


# --- 6. help and hub --------------------------------------------------------------------------------------------
NO_DEFAULT = {("attack", "--load")}  # the positional path under the original's flag name


def _help_entries(text: str) -> dict[str, str]:
    """option string -> its help text, from an argparse --help page."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^  (-[-\w]+)(?:[ ,=].*?)?(?:  +(.*))?$", line)
        if m and line.startswith("  -"):
            current = m.group(1)
            entries[current] = m.group(2) or ""
        elif current and line.startswith("      "):
            entries[current] += " " + line.strip()
        else:
            current = None if not line.strip() or not line.startswith(" ") else current
    return entries


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_help_entry_with_a_default_shows_it(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    entries = _help_entries(capsys.readouterr().out)
    flags = [a for a in _subparsers()[command]._actions if a.option_strings and a.help != argparse.SUPPRESS
             and not isinstance(a, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction))]
    assert flags
    for action in flags:
        flag = action.option_strings[-1] if action.option_strings[-1] in entries else action.option_strings[0]
        if (command, flag) in NO_DEFAULT:
            continue
        assert flag in entries, (command, flag)
        assert "default" in entries[flag], f"sspnet {command} {flag}: {entries[flag]!r}"


def test_named_help_entries_show_their_defaults(capsys):
    pages = {}
    for command in ("train", "growth", "models"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        pages[command] = _help_entries(capsys.readouterr().out)
    assert "(default res)" in pages["train"]["--model"]
    assert "g on mnist5k/mnist/fmnist, b on cifar10/tiny" in pages["train"]["--norm-layer"]  # alias --norm
    assert "torch on mnist5k/mnist/fmnist, original on cifar10/tiny" in pages["train"]["--init"]
    assert "(default 100)" in pages["growth"]["--eval-batch-size"]  # alias --batch-size
    assert "--threads" in pages["train"] and "--threads" in pages["models"]
    assert _subparsers()["models"].description


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
