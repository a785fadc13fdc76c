"""DistributedDataParallel under torchrun (2 gloo processes) equals one process on the same global batch, for a
BatchNorm model (global-batch statistics, `sspnet.train.syncbn`) with an uneven last batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import sspnet
from sspnet.train.syncbn import CrossRankBatchNorm2d, sync_batchnorm

# --val-split 0.97475 leaves 101 of the 4,000 training images: 3 global batches of 32, then one of 5 split 3 / 2
# between the ranks. Contiguous layout: PyTorch's channels_last BatchNorm CPU kernel (the one-process reference
# would use it) rounds differently enough to move one SGD step by ~5e-5; with the contiguous layout the two
# agree to ~1e-7.
ARGS = [
    "--dataset",
    "mnist5k",
    "--model",
    "res",
    "--block",
    "1",
    "--norm",
    "b",
    "--tbsize",
    "32",
    "--epochs",
    "1",
    "--val-split",
    "0.97475",
    "--test-limit",
    "100",
    "--adv",
    "fgsm",
    "--opt",
    "sgd",
    "--lr",
    "0.05",
    "--quiet",
    "--clean-metrics",
    "--no-channels-last",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMING = ("seconds", "images_per_s")


def _train(save, *extra, ranks=1):
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    out = subprocess.run(
        [sys.executable, *launcher, "-m", "sspnet", "train", *ARGS, *extra, "--save", str(save)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return torch.load(save / "model_final.pt", weights_only=True)["state_dict"]


def _gap(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_gloo_ranks_match_one_process_for_batchnorm_with_an_uneven_last_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    a, b = _train(one), _train(two, ranks=2)
    assert a.keys() == b.keys() and _gap(a, b) < 1e-5, _gap(a, b)  # weights and running statistics
    assert not torch.equal(a["stem.1.running_mean"], torch.zeros_like(a["stem.1.running_mean"]))
    ra = [json.loads(ln) for ln in (one / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(ln) for ln in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["images"] for r in ra] == [r["images"] for r in rb] == [101]
    for x, y in zip(ra, rb):
        for key in ("train_loss", "train_acc", "adv_train_loss", "adv_train_acc", "val_loss", "val_acc", "test_loss"):
            assert abs(x[key] - y[key]) < 1e-4, key
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    log = (two / "train.log").read_text()
    assert log.count("epoch 1/1 train loss") == 1 and "world_size=2" in log and "batchnorm=global" in log
    assert sspnet.load_model(two).config["norm"] == "b"  # the plain BatchNorm2d checkpoint layout


@pytest.mark.slow
def test_per_rank_batchnorm_statistics_give_another_model(tmp_path):
    """--no-sync-bn: each rank normalises its own sub-batch, and the model is not the one-process model (the
    comparison above is sensitive to the statistics)."""
    assert _gap(_train(tmp_path / "one"), _train(tmp_path / "plain", "--no-sync-bn", ranks=2)) > 1e-3
    assert "batchnorm=per-rank" in (tmp_path / "plain" / "train.log").read_text()


def test_cross_rank_batchnorm_keeps_the_tensors_and_keys_and_is_batchnorm_in_one_process():
    model = sspnet.create_model("res", dataset="mnist5k", blocks=1, norm="b", seed=0)
    before = {k: v for k, v in model.state_dict().items()}
    converted = sync_batchnorm(model, torch.device("cpu"))
    bns = [m for m in converted.modules() if isinstance(m, nn.BatchNorm2d)]
    assert converted is model and len(bns) == 5 and all(type(m) is CrossRankBatchNorm2d for m in bns)
    after = converted.state_dict()
    assert list(after) == list(before) and all(after[k].data_ptr() == before[k].data_ptr() for k in before)
    x = torch.rand(6, 1, 28, 28)
    reference = sspnet.create_model("res", dataset="mnist5k", blocks=1, norm="b", seed=0).train()
    torch.testing.assert_close(converted.train()(x), reference(x))  # no process group: plain BatchNorm
    torch.testing.assert_close(after["stem.1.running_mean"], reference.state_dict()["stem.1.running_mean"])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_cross_rank_statistics_equal_batchnorm_on_the_whole_batch(monkeypatch, momentum):
    """One 'rank' holding the whole batch (the all-reduce a no-op): the cross-rank formulas, gradients and
    running statistics are BatchNorm2d's."""
    import sspnet.train.syncbn as syncbn

    monkeypatch.setattr(syncbn.dist, "is_distributed", lambda: True)
    monkeypatch.setattr(syncbn.tdist, "all_reduce", lambda t, op=None: t)
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3, momentum=momentum)
    nn.init.uniform_(bn.weight), nn.init.uniform_(bn.bias)
    ours = CrossRankBatchNorm2d.from_batchnorm(nn.BatchNorm2d(3, momentum=momentum))
    ours.load_state_dict(bn.state_dict())
    x = (torch.randn(5, 3, 4, 4) * 2 + 1).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    for _ in range(2):
        g = torch.randn(5, 3, 4, 4)
        (gx,) = torch.autograd.grad((bn(x) * g).sum(), x)
        (gy,) = torch.autograd.grad((ours(x2) * g).sum(), x2)
        torch.testing.assert_close(gy, gx, rtol=1e-5, atol=1e-5)
    for k, v in bn.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v)
