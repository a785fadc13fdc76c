"""Checkpoints: own-format round trip, import of the original layout, refusal of code-running pickles, which file
a run folder gives and how it was selected (describe_checkpoint)."""

import argparse
import os

import pytest
import torch
import torch.nn.functional as Fn

import sspnet
from sspnet.data.specs import CIFAR10_MEAN, CIFAR10_STD
from sspnet.nn.checkpoints import describe_checkpoint, safe_load, save_checkpoint

# ---- a hand-written reference of the original networks, reading the original key layout -----------------
F_ALIAS = {"n1": "0", "conv1": "2", "n2": "3", "conv2": "5"}


def _norm_params(sd, prefix, c, norm, g):
    sd[prefix + ".weight"] = torch.rand(c, generator=g) + 0.5
    sd[prefix + ".bias"] = torch.randn(c, generator=g) * 0.1
    if norm == "b":
        sd[prefix + ".running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[prefix + ".running_var"] = torch.rand(c, generator=g) + 0.5
        sd[prefix + ".num_batches_tracked"] = torch.tensor(7)


def _conv_params(sd, prefix, cin, cout, k, g, bias=True):
    sd[prefix + ".weight"] = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5
    if bias:
        sd[prefix + ".bias"] = torch.randn(cout, generator=g) * 0.1


def _branch(sd, prefix, cin, cout, norm, g, alias="residual"):
    """F's layers under n1/conv1/n2/conv2 and again under the alias Sequential, sharing the tensors."""
    _norm_params(sd, f"{prefix}.n1", cin, norm, g)
    _conv_params(sd, f"{prefix}.conv1", cin, cout, 3, g)
    _norm_params(sd, f"{prefix}.n2", cout, norm, g)
    _conv_params(sd, f"{prefix}.conv2", cout, cout, 3, g)
    for name, idx in F_ALIAS.items():
        for k in [k for k in sd if k.startswith(f"{prefix}.{name}.")]:
            sd[k.replace(f"{prefix}.{name}.", f"{prefix}.{alias}.{idx}.")] = sd[k]


def _block(sd, prefix, model, c, norm, g):
    if model in ("ssp2", "ssp3"):
        _branch(sd, prefix + ".block", c, c, norm, g)
    elif model == "ark":
        _branch(sd, prefix, c, c, norm, g, alias="f")
        sd[prefix + ".a21"] = torch.tensor([0.25])
        sd[prefix + ".b10"] = torch.tensor([0.6])
    else:
        _branch(sd, prefix, c, c, norm, g)


def original_state(arch, model, n, norm, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    if arch == "mnist":
        _conv_params(sd, "downsample.0", 1, 64, 3, g)
        _norm_params(sd, "downsample.1", 64, norm, g)
        _conv_params(sd, "downsample.3", 64, 64, 4, g)
        _norm_params(sd, "downsample.4", 64, norm, g)
        _conv_params(sd, "downsample.6", 64, 64, 4, g)
        for i in range(n):
            _block(sd, f"blocks.{i}", model, 64, norm, g)
        _norm_params(sd, "linear.0", 64, norm, g)
        sd["linear.4.weight"] = torch.randn(10, 64, generator=g) / 8
        sd["linear.4.bias"] = torch.randn(10, generator=g) * 0.1
        return sd
    widths = (16, 32, 64) if arch == "cifar10" else (16, 32, 64, 128)
    schemes = {"ark": ["ark", "res", "ssp2", "ssp2"]}.get(model, [model] * 4)
    _conv_params(sd, "conv", 3, 16, 3, g)
    for j, c in enumerate(widths):
        if j:
            _branch(sd, f"sub{j}", widths[j - 1], c, norm, g)
            _conv_params(sd, f"sub{j}.downsample.0", widths[j - 1], c, 1, g, bias=False)
            _norm_params(sd, f"sub{j}.downsample.1", c, norm, g)
        for i in range(n):
            _block(sd, f"block{j + 1}.{i}", schemes[j], c, norm, g)
    sd["fc.weight"] = torch.randn(10 if arch == "cifar10" else 200, widths[-1], generator=g) / 8
    sd["fc.bias"] = torch.randn(sd["fc.weight"].shape[0], generator=g) * 0.1
    return sd


def _n(sd, p, x, norm):
    if norm == "b":
        return Fn.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"])
    return Fn.group_norm(x, min(32, x.shape[1]), sd[p + ".weight"], sd[p + ".bias"])


def _F(sd, p, x, norm, stride=1):
    h = Fn.conv2d(Fn.relu(_n(sd, p + ".n1", x, norm)), sd[p + ".conv1.weight"], sd[p + ".conv1.bias"], stride, 1)
    return Fn.conv2d(Fn.relu(_n(sd, p + ".n2", h, norm)), sd[p + ".conv2.weight"], sd[p + ".conv2.bias"], 1, 1)


def _ref_block(sd, p, model, x, norm):
    if model == "res":
        return x + _F(sd, p, x, norm)
    if model == "ssp2":
        F = lambda u: _F(sd, p + ".block", u, norm)  # noqa: E731
        u1 = x + F(x)
        return 0.5 * x + 0.5 * (u1 + F(u1))
    if model == "ssp3":
        F = lambda u: _F(sd, p + ".block", u, norm)  # noqa: E731
        u1 = x + F(x)
        u2 = 0.75 * x + 0.25 * (u1 + F(u1))
        return x / 3 + 2 / 3 * (u2 + F(u2))
    if model == "midrk2":
        u = x + 0.5 * _F(sd, p, x, norm)
        return u + _F(sd, p, u, norm)
    a, b = torch.sigmoid(sd[p + ".a21"]), torch.sigmoid(sd[p + ".b10"])
    u1 = x + b * _F(sd, p, x, norm)
    return (1 - a) * x + (1 - 1 / (2 * b) - a * b) * _F(sd, p, x, norm) + a * u1 + 1 / (2 * b) * _F(sd, p, u1, norm)


def reference_forward(sd, arch, model, n, norm, x_normalized):
    h = x_normalized
    if arch == "mnist":
        h = Fn.conv2d(h, sd["downsample.0.weight"], sd["downsample.0.bias"])
        h = Fn.conv2d(
            Fn.relu(_n(sd, "downsample.1", h, norm)), sd["downsample.3.weight"], sd["downsample.3.bias"], 2, 1
        )
        h = Fn.conv2d(
            Fn.relu(_n(sd, "downsample.4", h, norm)), sd["downsample.6.weight"], sd["downsample.6.bias"], 2, 1
        )
        for i in range(n):
            h = _ref_block(sd, f"blocks.{i}", model, h, norm)
        h = Fn.relu(_n(sd, "linear.0", h, norm)).mean((2, 3))
        return Fn.linear(h, sd["linear.4.weight"], sd["linear.4.bias"])
    groups = 3 if arch == "cifar10" else 4
    schemes = {"ark": ["ark", "res", "ssp2", "ssp2"]}.get(model, [model] * 4)
    h = Fn.conv2d(h, sd["conv.weight"], sd["conv.bias"], 1, 1)
    for j in range(groups):
        if j:
            p = f"sub{j}"
            a = Fn.relu(_n(sd, p + ".n1", h, norm))
            h2 = Fn.conv2d(a, sd[p + ".conv1.weight"], sd[p + ".conv1.bias"], 2, 1)
            h2 = Fn.conv2d(Fn.relu(_n(sd, p + ".n2", h2, norm)), sd[p + ".conv2.weight"], sd[p + ".conv2.bias"], 1, 1)
            h = h2 + _n(sd, p + ".downsample.1", Fn.conv2d(a, sd[p + ".downsample.0.weight"], stride=2), norm)
        for i in range(n):
            h = _ref_block(sd, f"block{j + 1}.{i}", schemes[j], h, norm)
    return Fn.linear(h.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


ARCH = {
    "mnist": ("mnist", 1, 28, "g", None, None),
    "cifar10": ("cifar10", 3, 32, "b", CIFAR10_MEAN, CIFAR10_STD),
    "tiny": ("tinyimagenet", 3, 64, "b", (0.5,) * 3, (0.5,) * 3),
}


@pytest.mark.parametrize("dataset", list(ARCH))
@pytest.mark.parametrize("model", ["res", "ssp2", "ssp3", "ark", "midrk2"])
def test_original_checkpoint_import_matches_reference(tmp_path, dataset, model):
    arch, c, s, norm, mean, std = ARCH[dataset]
    n = 2 if dataset != "tiny" else 1
    sd = original_state(arch, model, n, norm)
    path = tmp_path / "model_acc.pt"
    torch.save({"state_dict": sd, "args": argparse.Namespace(model=model, block=n, norm=norm, lr=0.1)}, path)
    # the original records no dataset: the architecture is inferred from the tensors
    net = sspnet.load_model(tmp_path, crit="acc")
    assert not net.training and net.config["dataset"] in (dataset, "mnist")
    x = torch.rand(3, c, s, s)
    xn = x if mean is None else (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_forward(sd, arch, model, n, norm, xn), rtol=1e-5, atol=1e-5)


def test_original_checkpoint_with_overrides_and_mismatch_hint(tmp_path):
    sd = original_state("cifar10", "ssp2", 2, "b")
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": sd, "args": argparse.Namespace(model="ssp2", lr=0.1)}, path)
    net = sspnet.load_model(path, dataset="cifar10", block=2, model="ssp2")
    assert net.config["blocks"] == 2
    with pytest.raises(ValueError, match=r"missing keys .*The checkpoint looks like: --blocks 2 --dataset cifar10\.$"):
        sspnet.load_model(path, blocks=3)
    with pytest.raises(ValueError, match=r"does not fit a cifar10 ark model"):
        sspnet.load_model(path, model="ark", blocks=2)


def test_own_format_round_trip(tmp_path):
    model = sspnet.create_model("ssp3", dataset="mnist5k", blocks=2, norm="l", seed=4)
    save_checkpoint(tmp_path / "run" / "model_final.pt", model, epoch=3)
    loaded = sspnet.load_model(tmp_path / "run", crit="final")
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    obj = safe_load(tmp_path / "run" / "model_final.pt")
    assert obj["format"] == "sspnet" and obj["epoch"] == 3 and obj["provenance"]["torch_version"]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_code_running_pickle_is_refused_and_never_runs(tmp_path):
    marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "args": _Payload(marker)}, evil)
    with pytest.raises(ValueError, match="refused to load .*could run code"):
        sspnet.load_model(evil)
    assert not os.path.exists(marker)


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint or run folder"):
        sspnet.load_model(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="sspnet train --out DIR"):
        sspnet.load_model(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        sspnet.load_model(tmp_path / "junk.pt")


def test_architecture_mismatch_is_named(tmp_path):
    sd = original_state("mnist", "res", 1, "g")
    torch.save({"state_dict": sd, "args": argparse.Namespace(model="res", block=1, norm="g")}, tmp_path / "m.pt")
    with pytest.raises(
        ValueError,
        match=r"holds a mnist-architecture network but dataset 'cifar10' needs the cifar10 "
        r"architecture; use --dataset mnist \(",
    ):
        sspnet.load_model(tmp_path / "m.pt", dataset="cifar10")
    assert sspnet.load_model(tmp_path / "m.pt", dataset="fmnist").config["dataset"] == "fmnist"
    save_checkpoint(tmp_path / "own.pt", sspnet.create_model("res", dataset="mnist5k", blocks=1))
    with pytest.raises(ValueError, match=r"trained on mnist5k \(mnist architecture\).*as a tiny model"):
        sspnet.load_model(tmp_path / "own.pt", dataset="tiny")


def test_run_folder_loads_the_final_checkpoint_and_never_a_test_selected_one_silently(tmp_path):
    final = sspnet.create_model("res", dataset="mnist5k", blocks=1, seed=1)
    best = sspnet.create_model("res", dataset="mnist5k", blocks=1, seed=2)
    save_checkpoint(tmp_path / "model_acc.pt", best, epoch=2)
    with pytest.raises(FileNotFoundError, match="has no model_final.pt; it holds model_acc.pt: pass crit / --crit acc"):
        sspnet.load_model(tmp_path)
    save_checkpoint(tmp_path / "model_final.pt", final, epoch=3)
    loaded = sspnet.load_model(tmp_path).state_dict()  # the default: model_final.pt
    assert all(torch.equal(v, final.state_dict()[k]) for k, v in loaded.items())
    assert torch.equal(
        sspnet.load_model(tmp_path, crit="acc").state_dict()["head.4.weight"], best.state_dict()["head.4.weight"]
    )


def test_describe_checkpoint_of_files_without_a_recorded_selection(tmp_path):
    """sspnet before `selected_on` and the original code both chose model_acc.pt / model_loss.pt on the test set."""
    model = sspnet.create_model("res", dataset="mnist5k", blocks=1)
    save_checkpoint(tmp_path / "own" / "model_acc.pt", model, epoch=7, test_acc=91.0)
    old = describe_checkpoint(tmp_path / "own", "acc")
    assert (old["selected_on"], old["criterion"], old["epoch"], old["test_acc"]) == ("test", "acc", 7, 91.0)
    assert "best test accuracy at epoch 7, inferred" in old["warning"]
    sd = original_state("mnist", "res", 1, "g")
    torch.save({"state_dict": sd, "args": argparse.Namespace(model="res", block=1)}, tmp_path / "model_loss.pt")
    orig = describe_checkpoint(tmp_path / "model_loss.pt")
    assert (orig["selected_on"], orig["epoch"], orig["test_acc"]) == ("test", None, None) and orig["warning"]
    save_checkpoint(tmp_path / "other.pt", model)
    assert describe_checkpoint(tmp_path / "other.pt")["selected_on"] == "unknown"
    save_checkpoint(tmp_path / "own" / "model_final.pt", model, epoch=9)
    final = describe_checkpoint(tmp_path / "own")
    assert (final["selected_on"], final["epoch"], final["warning"], final["note"]) == ("final", 9, None, None)
    save_checkpoint(tmp_path / "val.pt", model, epoch=4, selected_on="val", criterion="loss")
    assert describe_checkpoint(tmp_path / "val.pt")["warning"] is None
