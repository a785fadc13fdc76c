"""The runs that chose the default budget of `sspnet compare` (docs/default-budget.md).

One adversarial-training recipe on the embedded mnist5k data, one model and seed per call, one torch thread
(as compare's workers): trains, then evaluates the final checkpoint on the whole test split with FGSM and
PGD-10 (step eps/4). Prints one JSON line.

    python benchmarks/budget_search.py --model ssp2 --eps 0.2 --steps 3 --epochs 8 --blocks 2 --seed 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="res")
    p.add_argument("--adv", default="pgd", help="training adversary (pgd | fast | fgsm | none)")
    p.add_argument("--eps", type=float, default=0.2, help="training and evaluation eps, pixel units")
    p.add_argument("--steps", type=int, default=3, help="PGD steps of the training adversary")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import sspnet
    from sspnet.data import load
    from sspnet.eval import EvalConfig, evaluate
    from sspnet.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        train(
            TrainConfig(
                dataset="mnist5k",
                model=a.model,
                blocks=a.blocks,
                epochs=a.epochs,
                batch_size=64,
                opt="adam",
                lr=3e-3,
                schedule="cyclic",
                adv=a.adv,
                eps=a.eps,
                steps=a.steps,
                alpha=2.5 * a.eps / a.steps,
                seed=a.seed,
                save=out,
                quiet=True,
                force=True,
            )
        )
        t_train = time.perf_counter() - t0
        model = sspnet.load_model(out, crit="final")
    x, y = load("mnist5k", split="test")
    t1 = time.perf_counter()
    r = evaluate(model, x, y, EvalConfig(attack="fgsm,pgd", eps=[a.eps], alpha=a.eps / 4, steps=10))
    at = r.at(a.eps)
    print(
        json.dumps(
            {
                **vars(a),
                "clean": round(100 * r.clean_acc, 2),
                "fgsm": round(100 * at.attacks["fgsm"].acc, 2),
                "pgd": round(100 * at.attacks["pgd"].acc, 2),
                "train_s": round(t_train, 1),
                "eval_s": round(time.perf_counter() - t1, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
