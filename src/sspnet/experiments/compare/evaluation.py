"""Evaluation of one `sspnet compare` run: clean / FGSM / PGD accuracy at eps, a PGD eps sweep, optional
AutoAttack, and the perturbation growth ratios of the PGD examples and of random noise at the same eps."""
from __future__ import annotations

import time
from typing import Any

import torch

@torch.no_grad()
def _correct(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1) == y


def _attack_correct(model, attack, x, y, bs) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample correctness, adversarial images) of `attack` over x in batches."""
    oks, advs = [], []
    for s in range(0, x.shape[0], bs):
        xa = attack(x[s:s + bs], y[s:s + bs]).detach()
        oks.append(_correct(model, xa, y[s:s + bs]))
        advs.append(xa)
    return torch.cat(oks), torch.cat(advs)


def evaluate_run(model, x: torch.Tensor, y: torch.Tensor, ev: Any, dataset: str, label: str,
                 run_dir: str | None = None) -> dict[str, Any]:
    """Clean / FGSM / PGD / sweep (/ AutoAttack) accuracy in % and growth ratios of one model.

    x: N x C x H x W float [0, 1] (the evaluation images), y: N labels; ev: `sspnet.compare.EvalSettings`
    (resolved). Returns {"eval": JSON-able dict (accuracies in %), "growth": GrowthResult}.
    """
    from sspnet import attacks
    from sspnet.eval.growth import GrowthConfig, measure_growth
    from sspnet.nn.models import inference_copy

    model = inference_copy(model)  # eval mode, BatchNorm folded, fast layout; the caller's model untouched
    bs = ev.batch_size
    t0 = time.perf_counter()
    clean = torch.cat([_correct(model, x[s:s + bs], y[s:s + bs]) for s in range(0, x.shape[0], bs)])
    fgsm_ok, _ = _attack_correct(model, attacks.FGSM(model, ev.eps, quantize=ev.quantize), x, y, bs)
    pgd = attacks.PGD(model, ev.eps, ev.alpha, ev.pgd_steps, quantize=ev.quantize)
    pgd_ok, pgd_adv = _attack_correct(model, pgd, x, y, bs)
    m = min(ev.sweep_n, x.shape[0])
    sweep = {"0": 100.0 * clean[:m].float().mean().item()}
    for e in ev.sweep:
        if abs(e - ev.eps) < 1e-12:
            ok = pgd_ok[:m]
        else:
            a = attacks.PGD(model, e, max(e * ev.alpha / ev.eps, 1 / 255 if ev.quantize else 1e-12), ev.pgd_steps,
                            quantize=ev.quantize)
            ok, _ = _attack_correct(model, a, x[:m], y[:m], bs)
        sweep[f"{e:.10g}"] = 100.0 * ok.float().mean().item()
    out: dict[str, Any] = {"n": int(x.shape[0]), "eps": ev.eps, "alpha": ev.alpha, "pgd_steps": ev.pgd_steps,
                           "clean": 100.0 * clean.float().mean().item(),
                           "fgsm": 100.0 * fgsm_ok.float().mean().item(),
                           "pgd": 100.0 * pgd_ok.float().mean().item(), "sweep_n": m, "sweep": sweep,
                           "autoattack": None}
    use_aa = ev.autoattack == "on" or (ev.autoattack == "auto" and attacks.autoattack_available())
    if use_aa:
        k = min(ev.autoattack_n, x.shape[0])
        aa_ok, _ = _attack_correct(model, attacks.AutoAttack(model, ev.eps), x[:k], y[:k], bs)
        out["autoattack"] = 100.0 * aa_ok.float().mean().item()
        out["autoattack_n"] = k
    g = min(ev.growth_n, x.shape[0])
    gcfg = GrowthConfig(eps=ev.eps, alpha=ev.alpha, steps=ev.pgd_steps, noise=ev.growth_noise, n=g, batch_size=bs)
    info = {"name": "pgd", "eps": ev.eps, "alpha": ev.alpha, "steps": ev.pgd_steps, "random_start": False,
            "quantize": ev.quantize}
    growth = measure_growth(model, x[:g], y[:g], gcfg, x_adv=pgd_adv[:g], label=label, dataset=dataset,
                            run_dir=run_dir, adversary_info=info)
    out["seconds"] = time.perf_counter() - t0
    return {"eval": out, "growth": growth}
