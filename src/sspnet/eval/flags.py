"""Sanity flags of a robustness evaluation, after AutoAttack's checks: warnings that point at a broken attack or
gradient masking (PGD weaker than FGSM, noise beating gradients, accuracy not falling with eps, ...)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from sspnet.eval.results import EvalResult

GRADIENT_ATTACKS = ("fgsm", "pgd", "autoattack")


# AutoAttack's own checks (pyautoattack/checks.py), recognised by a phrase of their message
_AA_NOTES = (
    ("randomized defense", "autoattack_randomized_model"),
    ("probability distribution", "autoattack_probability_output"),
    ("zero gradient", "autoattack_zero_gradients"),
    ("Square Attack has decreased", "autoattack_square_beats_gradients"),
    ("dynamic defense", "autoattack_dynamic_model"),
    ("target classes", "autoattack_target_classes"),
)


def attack_note_flags(attacks: Iterable) -> list[dict[str, Any]]:
    """Flags from the attacks' own warnings (`Attack.notes()`: AutoAttack's checks), each message once."""
    flags: list[dict[str, Any]] = []
    for a in attacks:
        for note in a.notes():
            name = next((flag for phrase, flag in _AA_NOTES if phrase in note), "autoattack_warning")
            message = f"AutoAttack: {note}"
            if all(f["message"] != message for f in flags):
                flags.append({"flag": name, "eps": None, "message": message})
    return flags


def breaking_eps(norm: str, input_dim: int | None) -> float:
    """An eps at which every image can be moved to the same mid-grey image: linf 0.5, l2 0.5 * sqrt(d)."""
    if norm == "linf":
        return 0.5
    return 0.5 * math.sqrt(input_dim) if input_dim else math.inf


def sanity_flags(result: EvalResult, labels: Tensor, norm: str, input_dim: int | None = None) -> list[dict[str, Any]]:
    """Warnings about a result.

    Args:
        result: the evaluation; labels: int n, the labels of its images; norm: linf | l2;
        input_dim: pixels per image (C*H*W), for the l2 breaking radius.
    Returns:
        [{"flag", "eps", "message"}] with eps in the CLI's units (None for flags about the whole run).
    """
    flags: list[dict[str, Any]] = []

    def add(flag: str, eps: float | None, message: str) -> None:
        flags.append({"flag": flag, "eps": eps, "message": message})

    n = max(result.n, 1)
    majority = float(torch.bincount(labels.cpu().long()).max()) / n if labels.numel() else 0.0
    for r in result.results:
        a = r.attacks
        if "pgd" in a and "fgsm" in a and a["pgd"].acc > a["fgsm"].acc:
            add(
                "pgd_weaker_than_fgsm",
                r.eps_cli,
                f"PGD accuracy {a['pgd'].acc:.2%} > FGSM {a['fgsm'].acc:.2%} at "
                f"eps {r.eps_cli:g}: too few iterations or too small a step, or gradient masking",
            )
        grads = [a[k].acc for k in GRADIENT_ATTACKS if k in a]
        if "ball" in a and grads and a["ball"].acc < min(grads):
            add(
                "noise_beats_gradient",
                r.eps_cli,
                f"random noise ({a['ball'].acc:.2%}) beats the gradient attacks "
                f"({min(grads):.2%}) at eps {r.eps_cli:g}: likely gradient masking",
            )
        if r.eps >= breaking_eps(norm, input_dim) and r.worst.acc > majority + 0.05:
            add(
                "high_acc_at_large_eps",
                r.eps_cli,
                f"accuracy {r.worst.acc:.2%} at eps {r.eps_cli:g}, where every "
                f"image can be turned into the same grey image (expected <= {majority:.2%}): the attack is broken "
                "or gradients are masked",
            )
    ordered = sorted(result.results, key=lambda r: r.eps)
    for lo, hi in zip(ordered, ordered[1:]):
        if hi.eps > lo.eps and hi.worst.acc > lo.worst.acc:
            add(
                "acc_not_decreasing",
                hi.eps_cli,
                f"accuracy rises with eps: {lo.worst.acc:.2%} at eps "
                f"{lo.eps_cli:g} but {hi.worst.acc:.2%} at eps {hi.eps_cli:g}",
            )
    if ordered and ordered[0].eps > 0 and ordered[0].worst.acc > result.clean_acc:
        add(
            "acc_not_decreasing",
            ordered[0].eps_cli,
            f"adversarial accuracy {ordered[0].worst.acc:.2%} above clean {result.clean_acc:.2%}",
        )
    g = result.grad_stats
    if g["nan_grad"]:
        add(
            "nan_input_gradients",
            None,
            f"{g['nan_grad']} of {g['samples']} samples had non-finite (NaN or inf) input gradients",
        )
    if g["samples"] and g["zero_grad"] > 0.01 * g["samples"]:
        add(
            "zero_input_gradients",
            None,
            f"{g['zero_grad']} of {g['samples']} samples had an all-zero input "
            "gradient (saturated softmax or gradient masking; try AutoAttack)",
        )
    return flags
