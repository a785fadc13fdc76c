"""Adversarial attacks on float images in [0, 1] (the model normalises inside); eps/alpha in pixel units.

    attack = PGD(model, eps=8/255, alpha=2/255, steps=20)
    x_adv = attack(x, y)          # x: B x C x H x W float in [0, 1], y: int64 B

Every attack: gradients by `torch.autograd.grad` w.r.t. the input only; mode="eval" (default) crafts in eval
mode and restores the caller's mode, mode="keep" crafts in the current mode (adversarial training).
"""
from __future__ import annotations

from torch import nn

from sspnet.attacks.autoattack import INSTALL_HINT, AutoAttack, Square, autoattack_available, load_autoattack_class
from sspnet.attacks.base import NOISE_KINDS, NORMS, Attack, Ball, crafting_mode, per_sample_norm, random_perturbation
from sspnet.attacks.gradient import FGSM, PGD, FastFGSM
from sspnet.attacks.noise import NoiseBall, ball_copies, random_point
from sspnet.attacks.threat import DEFAULT_ALPHA_REL, ThreatModel, default_step

ATTACKS = ("fgsm", "pgd", "ball", "autoattack", "square")


def make_attack(name: str, model: nn.Module, eps: float, *, norm: str = "linf", alpha: float | None = None,
                steps: int = 20, restarts: int = 1, copies: int = 10, random_start: bool = False,
                quantize: bool = False, generator=None, mode: str = "eval", seed: int | None = 0,
                early_stop: bool = False, queries: int = 5000) -> Attack:
    """The one place attacks are built by name (`sspnet attack`, evaluate, the audit, growth and training).

    Args:
        name: fgsm | pgd | ball | autoattack | square | fastfgsm.
        model: takes float images B x C x H x W in [0, 1].
        eps, alpha: pixel units; alpha defaults to eps / 4 for pgd (1.25 eps for fastfgsm), unused by fgsm/ball.
        steps, restarts, random_start: pgd; copies: ball; seed: autoattack and square; queries: square's model
            calls per image; generator: random starts and noise.
        quantize: round to 8-bit levels after each step; mode: "eval" or "keep" (craft in the current mode).
        early_stop: fgsm/pgd stop per sample at the first misclassified iterate (accuracy evaluation).
    Returns:
        An `Attack`: `attack(x, y) -> x_adv` (same shape as x, inside the eps-ball n [0, 1]).
    """
    key = str(name).lower()
    if key == "fgsm":
        return FGSM(model, eps, norm=norm, quantize=quantize, mode=mode, early_stop=early_stop)
    if key == "pgd":
        a = alpha if alpha is not None else max(float(eps) / 4, 1e-12)
        return PGD(model, eps, a, steps, norm=norm, random_start=random_start, restarts=restarts,
                   quantize=quantize, generator=generator, mode=mode, early_stop=early_stop)
    if key == "ball":
        return NoiseBall(model, eps, copies, norm=norm, quantize=quantize, generator=generator, mode=mode)
    if key == "autoattack":
        return AutoAttack(model, eps, norm=norm, seed=seed, mode=mode)
    if key == "square":
        return Square(model, eps, norm=norm, queries=queries, seed=seed, mode=mode)
    if key == "fastfgsm":
        return FastFGSM(model, eps, alpha, norm=norm, quantize=quantize, generator=generator, mode=mode)
    raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACKS)}, fastfgsm")


__all__ = ["ATTACKS", "DEFAULT_ALPHA_REL", "ThreatModel", "default_step", "INSTALL_HINT", "NOISE_KINDS", "NORMS", "Attack", "AutoAttack", "Ball", "FGSM", "FastFGSM",
           "NoiseBall", "PGD", "Square", "autoattack_available", "ball_copies", "crafting_mode",
           "load_autoattack_class", "make_attack", "per_sample_norm", "random_perturbation", "random_point"]
