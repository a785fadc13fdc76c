"""evaluate() under torch.distributed (gloo, 2 CPU processes): sharded attack, gathered per-sample results."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sspnet.eval.robustness import EvalConfig, evaluate

CFG = EvalConfig(attack="fgsm,pgd,ball", eps=[0.05, 0.1], steps=3, copies=2, batch_size=8)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))


def _data():
    g = torch.Generator().manual_seed(1)
    return (
        torch.randint(0, 256, (37, 1, 28, 28), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (37,), generator=g),
    )


def _worker(rank, world, port, q):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x, y = _data()
        r = evaluate(_model(), x, y, CFG)
        one = evaluate(_model(), x, y, CFG, indices=[5])  # rank 1 has no image: it must still take part
        # plain lists: tensors sent through a queue die with the worker's shared memory
        q.put(
            (
                rank,
                r.to_dict(),
                {k: v.tolist() for k, v in r.per_sample.items()},
                r.adversarial["index"].tolist(),
                one.to_dict(),
            )
        )
    finally:
        dist.destroy_process_group()


def test_sharded_evaluation_matches_single_process():
    x, y = _data()
    cfg = EvalConfig(**{**CFG.__dict__, "attack": "fgsm,pgd"})  # the noise ball's draws depend on the rank
    ref = evaluate(_model(), x, y, cfg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    outs = sorted((q.get(timeout=120) for _ in procs), key=lambda o: o[0])
    for p in procs:
        p.join(timeout=60)
    assert [o[2]["index"] for o in outs] == [list(range(37))] * 2
    assert outs[0][3] == list(range(0, 37, 2)) and outs[1][3] == list(range(1, 37, 2))
    single = evaluate(_model(), x, y, cfg, indices=[5])
    for _rank, result, per_sample, _, one in outs:
        assert one["n"] == 1 and one["subset"]["indices"] == [5] and one["clean_acc"] == single.clean_acc
        assert result["world_size"] == 2 and result["n"] == 37
        assert result["clean_acc"] == pytest.approx(ref.clean_acc)
        for k, v in ref.per_sample.items():
            assert torch.allclose(v.float(), torch.tensor(per_sample[k]).float(), atol=1e-5), k
    for a, b in zip(outs[0][1]["results"], outs[1][1]["results"]):  # same aggregates on every rank
        assert a["worst"]["acc"] == b["worst"]["acc"] and a["attacks"]["ball"]["acc"] == b["attacks"]["ball"]["acc"]
