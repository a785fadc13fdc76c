"""DistributedDataParallel under torchrun (2 gloo processes) equals one process on the same global batch."""
import json
import os
import subprocess
import sys

import torch

ARGS = ["--dataset", "mnist5k", "--model", "res", "--block", "1", "--norm", "g", "--tbsize", "32", "--epochs", "1",
        "--steps-per-epoch", "3", "--test-limit", "100", "--adv", "fgsm", "--opt", "sgd", "--lr", "0.05", "--quiet",
        "--clean-metrics"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_two_gloo_ranks_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run([sys.executable, "-m", "sspnet", "train", *ARGS, "--save", str(one)], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "sspnet", "train", *ARGS, "--save", str(two)], env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = torch.load(one / "model_final.pt", weights_only=True)["state_dict"]
    b = torch.load(two / "model_final.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), (k, (a[k] - b[k]).abs().max())
    assert not torch.equal(a["head.4.weight"], torch.zeros_like(a["head.4.weight"]))
    ra = json.loads((one / "metrics.jsonl").read_text())
    rb = json.loads((two / "metrics.jsonl").read_text())
    assert ra["images"] == rb["images"] == 96  # 3 global batches of 32, 16 per rank
    for key in ("train_loss", "train_acc", "adv_train_acc", "test_loss", "test_acc"):
        assert abs(ra[key] - rb[key]) < 1e-4, key
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    log = (two / "train.log").read_text()
    assert log.count("epoch 1/1 train loss") == 1 and "world_size=2" in log  # only rank 0 writes
