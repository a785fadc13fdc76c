"""The evaluation of one `sspnet compare` run with early stop on and off, side by side (interleaved repeats).

Evaluates a trained run folder as the default preset does (`evaluate_run`: clean / FGSM / PGD with restarts on
the main images, the eps sweep, growth; then the gradient-masking audit) with `early_stop` True and False,
alternating, and prints the wall time of each and the PGD / sweep / audit accuracies (early stop can only give
the same or a lower accuracy).

    python benchmarks/compare_early_stop.py compare/runs/res-s0-991b40e4 --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a trained run folder of the default preset")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from sspnet import data
    from sspnet.data.subsets import subset_indices
    from sspnet.experiments.compare.config import PRESETS, EvalSettings
    from sspnet.experiments.compare.work.audit import call_audit
    from sspnet.experiments.compare.work.evaluation import evaluate_run
    from sspnet.nn.checkpoints import load_model

    base = EvalSettings.from_dict(dict(PRESETS["default"]["eval"])).resolve("mnist5k")
    model = load_model(a.run, crit="final")
    images, labels = data.load("mnist5k", split="test")
    idx = subset_indices(labels, base.audit_images)
    times: dict[bool, list[float]] = {True: [], False: []}
    acc: dict[bool, dict] = {}
    for _ in range(a.repeats):
        for early in (True, False):
            ev = dataclasses.replace(base, early_stop=early)
            t0 = time.perf_counter()
            rec = evaluate_run(model, images, labels, ev, "mnist5k", "run")
            aud = call_audit(model, None, images, labels, idx, ev)
            times[early].append(time.perf_counter() - t0)
            acc[early] = {
                "pgd": rec["eval"]["pgd"],
                "sweep": rec["eval"]["sweep"],
                "audit": {k: round(100 * v, 1) for k, v in aud["accuracy"].items()},
            }
    best = {k: min(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "early_stop_s": best[True],
                "full_s": best[False],
                "ratio": best[False] / best[True],
                "times": {str(k): v for k, v in times.items()},
                "accuracy_early": acc[True],
                "accuracy_full": acc[False],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
