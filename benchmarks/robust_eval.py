"""The `robust_eval` case of benchmarks/run.py: robust accuracy and time of PGD-20 evaluation of a trained model,
sspnet's early-stopping `evaluate` against torchattacks' PGD (or sspnet's own full PGD when torchattacks is not
importable), on the same model and images; once from the clean image and once with random restarts.

The model: sspnet `ssp2` on mnist5k (1 block) trained with Adam on the embedded training split in the benchmark.
Both sides run the same algorithm (linf, x + alpha sign(g), clip to the ball and [0, 1], no 8-bit rounding) and
count the same thing (an image is robust if the model still classifies it correctly); sspnet stops per image at
its first misclassified iterate, forwards only the images still correct and skips images wrong when clean. With
restarts, the reference runs every restart on every image and counts an image broken if any restart breaks it.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

EPS, ALPHA, STEPS = 0.1, 0.025, 20  # mnist pixel units, alpha = eps / 4


def trained_model(ctx) -> torch.nn.Module:
    """ssp2 (mnist5k, 1 block) after Adam steps on the mnist5k training split (quick: a few steps), eval mode."""
    import sspnet
    from sspnet.data import load

    x, y = load("mnist5k", split="train")
    torch.manual_seed(0)
    model = sspnet.create_model("ssp2", dataset="mnist5k", blocks=1).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(4 if ctx.quick else 250):
        idx = torch.randint(0, x.shape[0], (128,), generator=g)
        loss = F.cross_entropy(model(x[idx].float().div(255).to(ctx.device)), y[idx].to(ctx.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def _reference(ctx, model, x, y, batch: int, restarts: int, pgd_factory) -> tuple[Callable[[], float], str]:
    """(run -> robust accuracy, name): torchattacks' PGD if importable, else sspnet's full PGD (no early stop)."""
    from sspnet.attacks import PGD

    ta, why = pgd_factory(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=restarts > 1)
    gen = torch.Generator().manual_seed(1)
    own = PGD(model, EPS, ALPHA, STEPS, random_start=restarts > 1, generator=gen)

    def run() -> float:
        robust = torch.ones(len(y), dtype=torch.bool, device=y.device)
        for s in range(0, len(y), batch):
            xb, yb = x[s : s + batch], y[s : s + batch]
            for _ in range(restarts):
                adv = ta(xb, yb) if ta is not None else own(xb, yb)
                with torch.no_grad():
                    robust[s : s + batch] &= model(adv).argmax(1) == yb
        return float(robust.float().mean())

    version = getattr(sys.modules.get("torchattacks"), "__version__", "?")
    return run, f"torchattacks {version}" if ta is not None else f"sspnet full PGD ({why})"


def _compare(ctx, model, x, y, restarts: int, interleaved, pgd_factory) -> dict[str, Any]:
    from sspnet.eval.robustness import EvalConfig, evaluate

    batch = ctx.eval_batch
    cfg = EvalConfig(
        attack="pgd",
        eps=[EPS],
        alpha=ALPHA,
        steps=STEPS,
        restarts=restarts,
        random_start=restarts > 1,
        quantize=False,
        batch_size=batch,
        keep_adv=0,
        early_stop=True,
    )
    acc: dict[str, float] = {}
    ref_run, ref_name = _reference(ctx, model, x, y, batch, restarts, pgd_factory)

    def own() -> None:
        acc["sspnet"] = evaluate(model, x, y, cfg).accuracy("pgd")

    def ref() -> None:
        acc["reference"] = ref_run()

    times, cpu = interleaved(ctx, {"reference": ref, "sspnet": own}, min(ctx.repeats, 3))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "restarts": restarts,
        "sspnet": med["sspnet"],
        "reference": med["reference"],
        "ratio": med["reference"] / med["sspnet"],
        "acc_sspnet": acc["sspnet"],
        "acc_reference": acc["reference"],
        "reference_is": ref_name,
        "ratio_cpu_time": statistics.median(cpu["reference"]) / statistics.median(cpu["sspnet"]),
        "times": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }


def case(ctx, interleaved, pgd_factory, target: float) -> dict[str, Any]:
    """The benchmark record: PGD-20 from the clean image (the headline ratio) and with 3 random restarts."""
    from sspnet.data import load
    from sspnet.data.subsets import subset_indices

    model = trained_model(ctx)
    images, labels = load("mnist5k", split="test")
    idx = subset_indices(labels, 16 if ctx.quick else 200)
    x, y = images[idx].float().div(255).to(ctx.device), labels[idx].to(ctx.device)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    single = _compare(ctx, model, x, y, 1, interleaved, pgd_factory)
    multi = _compare(ctx, model, x, y, 3, interleaved, pgd_factory)
    ok = single["ratio"] >= target and single["acc_sspnet"] <= single["acc_reference"]
    return {
        "case": "robust_eval",
        "unit": "s per evaluation",
        "sspnet": single["sspnet"],
        "reference": single["reference"],
        "ratio": single["ratio"],
        "target": target,
        "target_on": "ratio",
        "passed": ok,
        "ratio_cpu_time": single["ratio_cpu_time"],
        "clean_acc": clean,
        "images": len(y),
        "eps": EPS,
        "alpha": ALPHA,
        "steps": STEPS,
        "model": "ssp2 mnist5k N=1 (Adam)",
        "pgd20": single,
        "restarts": multi,
        "note": "sspnet = evaluate(early_stop=True); accuracies must be the same or lower "
        "for sspnet; restarts: 3 random restarts on both sides",
    }
