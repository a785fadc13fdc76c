"""Adversarial attacks on float images in [0, 1] (the model normalises inside); eps/alpha in pixel units.

    attack = PGD(model, eps=8/255, alpha=2/255, steps=20)
    x_adv = attack(x, y)          # x: B x C x H x W float in [0, 1], y: int64 B

Every attack: gradients by `torch.autograd.grad` w.r.t. the input only; mode="eval" (default) crafts in eval
mode and restores the caller's mode, mode="keep" crafts in the current mode (adversarial training).
"""

from __future__ import annotations

from sspnet.attacks.autoattack import INSTALL_HINT, AutoAttack, Square, autoattack_available, load_autoattack_class
from sspnet.attacks.base import NOISE_KINDS, NORMS, Attack, Ball, crafting_mode, per_sample_norm, random_perturbation
from sspnet.attacks.defaults import DEFAULTS, UseDefaults, default_of, help_default
from sspnet.attacks.gradient import FGSM, PGD, FastFGSM
from sspnet.attacks.noise import NoiseBall, ball_copies, random_point
from sspnet.attacks.registry import AttackEntry, attack_names, get_attack, make_attack, register_attack
from sspnet.attacks.threat import DEFAULT_ALPHA_REL, ThreatModel, dataset_threat, default_step, threat_config

# the attacks `sspnet.eval.evaluate` runs, from the registry (every name: `attack_names()`)
ATTACKS = attack_names(evaluates=True)


__all__ = [
    "ATTACKS",
    "DEFAULTS",
    "DEFAULT_ALPHA_REL",
    "INSTALL_HINT",
    "NOISE_KINDS",
    "NORMS",
    "Attack",
    "AttackEntry",
    "AutoAttack",
    "Ball",
    "FGSM",
    "FastFGSM",
    "NoiseBall",
    "PGD",
    "Square",
    "ThreatModel",
    "UseDefaults",
    "attack_names",
    "autoattack_available",
    "ball_copies",
    "crafting_mode",
    "dataset_threat",
    "default_of",
    "default_step",
    "get_attack",
    "help_default",
    "load_autoattack_class",
    "make_attack",
    "per_sample_norm",
    "random_perturbation",
    "random_point",
    "register_attack",
    "threat_config",
]
