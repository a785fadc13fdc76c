"""The benchmark harness: the reference computes what sspnet computes (fair ratios), and --quick runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import reference as R  # noqa: E402

import sspnet  # noqa: E402
from sspnet.nn.checkpoints import original_to_own_keys  # noqa: E402


def _reference(scheme: str, blocks: int = 2) -> R.RefCifarNet:
    torch.manual_seed(0)
    ref = R.RefCifarNet(scheme, blocks=blocks)
    with torch.no_grad():  # non-trivial running statistics, so eval mode is a real check
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return ref


@pytest.mark.parametrize("scheme", R.SCHEMES)
def test_reference_forward_equals_sspnet_loaded_from_original_file(scheme, tmp_path):
    ref = _reference(scheme)
    path = R.save_original(ref, tmp_path / "model_acc.pt")
    own = sspnet.load_model(path)  # the original-checkpoint importer, eval mode
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(own(x), ref(R.normalize(x)), rtol=1e-5, atol=1e-5)
        ref.train()
        own.train()  # batch statistics
        torch.testing.assert_close(own(x), ref(R.normalize(x)), rtol=1e-5, atol=1e-5)


def test_reference_state_dict_has_the_original_aliases_and_imports_one_to_one():
    ref = _reference("ark")
    keys = set(ref.state_dict())
    assert {
        "block1.0.n1.weight",
        "block1.0.f.0.weight",
        "block1.0.a21",
        "block1.0.b10",
        "block2.0.residual.2.bias",
        "block3.0.block.residual.5.weight",
        "block3.0.block.conv2.weight",
        "sub1.downsample.0.weight",
        "sub1.downsample.1.running_mean",
        "conv.weight",
        "fc.bias",
    } <= keys
    own = sspnet.create_model("ark", dataset="cifar10", blocks=2)
    mapped = original_to_own_keys(ref.state_dict())
    assert set(mapped) == set(own.state_dict()) - {"normalize.mean", "normalize.std"}
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in own.parameters())


def test_reference_ark_calls_f_three_times_and_sspnet_twice():
    ref = _reference("ark", blocks=1)
    calls = []
    ref.block1[0].f.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        ref(torch.zeros(1, 3, 32, 32))
    assert len(calls) == 3
    assert sspnet.create_model("ark", dataset="cifar10", blocks=1).groups[0][0].f_calls == 2


def test_reference_pgd_stays_in_the_ball_on_the_grid_and_zeroes_parameter_grads():
    ref = _reference("res", blocks=1).eval()
    x = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(2)).float() / 255
    y = torch.arange(4)
    adv = R.inv_normalize(R.pgd(ref, R.normalize(x), y, 8 / 255, 2 / 255, 3, random_start=True))
    assert (adv - x).abs().max() <= 8 / 255 + 1e-5
    assert adv.min() >= -1e-6 and adv.max() <= 1 + 1e-6
    torch.testing.assert_close(adv * 255, torch.round(adv * 255), atol=1e-3, rtol=0)
    assert all(p.grad is None or not p.grad.any() for p in ref.parameters())


def test_per_image_pipeline_crops_flips_and_normalises():
    imgs = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8).numpy()
    ds = R.PerImageDataset(imgs, torch.arange(5).numpy(), pad=0, flip=False)
    t, label = ds[2]
    expect = (torch.from_numpy(imgs[2]).permute(2, 0, 1).float() / 255 - ds.mean) / ds.std
    torch.testing.assert_close(t, expect)
    assert label == 2
    xb, yb = next(R.per_image_loader(R.PerImageDataset(imgs, torch.arange(5).numpy()), 4, shuffle=False))
    assert xb.shape == (4, 3, 32, 32) and yb.tolist() == [0, 1, 2, 3]


def test_run_quick_writes_a_valid_json_record(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--case",
            "std_train",
            "ark_train",
            "memory",
            "pgd7_epoch",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert {"cpu", "torch_threads", "torch_version", "device"} <= set(rec["machine"])
    assert [c["case"] for c in rec["cases"]] == ["std_train", "ark_train", "memory", "pgd7_epoch"]
    epoch = rec["cases"].pop()
    assert epoch["images"] == 128 and epoch["images_per_s"] == pytest.approx(128 / epoch["sspnet"])
    mem = rec["cases"].pop()  # each variant measured in a fresh process: peak above resident, in MiB
    assert all(r["peak_mib"] >= r["delta_mib"] > 0 for runs in mem["runs"].values() for r in runs)
    assert mem["ratio"] == pytest.approx(1 - mem["sspnet"] / mem["reference"])
    for c in rec["cases"]:
        assert c["sspnet"] > 0 and c["reference"] > 0
        assert c["ratio"] == pytest.approx(c["reference"] / c["sspnet"])
        assert isinstance(c["passed"], bool) and c["target"] > 0
    assert "std_train" in proc.stdout


def test_run_rejects_an_unknown_case(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--case",
            "nope",
            "--out",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown case(s) nope" in proc.stderr and "pgd7_train" in proc.stderr
