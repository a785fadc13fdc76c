"""Gradient-masking audit: does white-box PGD's robust accuracy hold against attacks that need no gradient of
the model? Stability-inspired networks have a record of masked gradients, so every check runs on the same images:

* white-box PGD with `steps` and `long_steps` (default `LONG_STEPS_FACTOR` = 4 x steps) steps, early-stopped
  (worst case over iterates);
* transfer: PGD crafted on a source model (compare: the ResNet of the same seed), evaluated on the model;
* Square (score-based black box, via pyautoattack) and AutoAttack standard;
* PGD at a large eps where every image can be turned into the same grey image;
* the input gradients of the cross-entropy (at PGD's first step).

    result = audit(model, images, labels, AuditConfig(eps=0.3, steps=20), indices=idx, source_model=resnet)
    # AuditConfig(threat=ThreatModel(eps=0.3, steps=20)) is the same config
    result.flags, result.accuracy["square"], result.correct["transfer"]    # bool per image, as result.indices

Flags, AutoAttack's own warnings first (`sspnet.eval.flags.attack_note_flags`), then: zero_input_gradients /
nan_input_gradients, high_acc_at_large_eps (the engine's sanity flags), square_beats_pgd / transfer_beats_pgd
(images correct under white-box PGD but wrong under Square / transfer: more than `tolerance` of the images),
autoattack_below_pgd (more than `autoattack_margin` below white-box PGD), pgd_steps_no_effect (long_steps of PGD
break no more images than steps and leave the loss of the images still correct at its clean value).
eps/alpha in pixel units; accuracies are fractions in [0, 1]. White-box PGD is the per-image worst case of the
two PGD runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from sspnet.attacks import DEFAULTS, ThreatModel, threat_config
from sspnet.attacks.base import check_count, check_eps
from sspnet.eval.config import EvalConfig
from sspnet.eval.flags import breaking_eps
from sspnet.eval.results import EvalResult
from sspnet.eval.robustness import evaluate
from sspnet.eval.selection import select_images
from sspnet.io.files import atomic_write_json
from sspnet.io.jsonio import to_jsonable
from sspnet.io.progress import ProgressCallback, scaled

LOSS_PROGRESS = 1e-4  # pgd_steps_no_effect: loss gain over clean below this (relative to 1 + clean loss)
_SANITY_FROM = ("pgd", "large_eps")  # runs whose engine sanity flags the audit reports


LONG_STEPS_FACTOR = 4  # the long white-box PGD: long_steps = LONG_STEPS_FACTOR x steps unless given
_USE = DEFAULTS["audit"]


@dataclass(frozen=True)
class AuditRun:
    """One `evaluate` run of the audit: the attack, its eps (pixel units), its PGD steps, whether it is
    crafted on the transfer source."""

    attack: str
    eps: float
    steps: int
    transfer: bool = False


@threat_config
@dataclass
class AuditConfig:
    """What `audit` runs. threat: the white-box PGD (norm, eps, step, steps, 8-bit rounding; its fields are
    also taken and shown flat, `AuditConfig(eps=0.3, steps=20)`); eps / alpha / large_eps in pixel units
    (alpha None: `ThreatModel.step`, eps / 4, at least 1/255 when quantised linf; large_eps None:
    `breaking_eps`, 0.5 for linf). Defaults: `sspnet.attacks.DEFAULTS["audit"]`."""

    threat: ThreatModel = _USE.threat
    long_steps: int | None = None  # None: LONG_STEPS_FACTOR x steps
    queries: int = 5000  # Square: model calls per image
    autoattack: bool = True  # run AutoAttack standard
    large_eps: float | None = None
    batch_size: int = _USE.batch_size
    n_images: int | None = _USE.n_images  # class-stratified subset of the split; or pass indices to `audit`
    subset_seed: int = 0
    tolerance: float = 0.01  # fraction of images Square / transfer may beat white-box PGD on without a flag
    autoattack_margin: float = 0.02  # AutoAttack accuracy this far below white-box PGD raises a flag
    seed: int = _USE.seed
    device: str | None = None
    early_stop: bool = True  # attacks stop per image at its first misclassified iterate (False: every step)

    def validated(self) -> AuditConfig:
        """A normalised copy (long_steps filled in); ValueError naming the bad field otherwise."""
        threat = self.threat.validated(min_steps=1)
        if threat.eps <= 0:
            raise ValueError(f"the audit needs eps > 0 (pixel units), got {self.threat.eps!r}")
        long_steps = LONG_STEPS_FACTOR * threat.steps if self.long_steps is None else self.long_steps
        check_count(long_steps, "long_steps", threat.steps + 1)
        for name, low in (("queries", 1), ("batch_size", 1)):
            check_count(getattr(self, name), name, low)
        if self.large_eps is not None and check_eps(self.large_eps, threat.norm, "large_eps") < threat.eps:
            raise ValueError(f"large_eps must be >= eps ({threat.eps:g}), got {self.large_eps!r}")
        if not 0 <= float(self.tolerance) < 1:
            raise ValueError(f"tolerance must be a fraction of the images in [0, 1), got {self.tolerance!r}")
        if not 0 <= float(self.autoattack_margin) <= 1:
            raise ValueError(
                f"autoattack_margin must be an accuracy difference in [0, 1], got {self.autoattack_margin!r}"
            )
        return dataclasses.replace(self, threat=threat, long_steps=long_steps)

    def runs(self, large_eps: float, transfer: bool) -> dict[str, AuditRun]:
        """The audit's `evaluate` runs, by key, in the order they run (a validated config; large_eps: the
        resolved large eps; transfer: whether a source model is given). `audit` runs exactly these and
        `sspnet.experiments.compare.plan.estimate` counts their passes."""
        t = self.threat
        runs = {
            "pgd": AuditRun("pgd", t.eps, t.steps),
            "pgd_long": AuditRun("pgd", t.eps, self.long_steps),
            "large_eps": AuditRun("pgd", large_eps, t.steps),
            "square": AuditRun("square", t.eps, t.steps),
        }
        if transfer:
            runs["transfer"] = AuditRun("pgd", t.eps, t.steps, transfer=True)
        if self.autoattack:
            runs["autoattack"] = AuditRun("autoattack", t.eps, t.steps)
        return runs

    def engine(self, attack: str, eps: float, steps: int) -> EvalConfig:
        """The `evaluate` config of one run of the audit (early-stopped unless told otherwise, no images kept):
        the threat model at eps with `steps` steps, its step scaled with eps (the step at self.eps times
        eps / self.eps)."""
        t = self.threat
        threat = dataclasses.replace(t, eps=eps, alpha=None, alpha_rel=t.step() / t.eps, steps=steps)
        return EvalConfig(
            attack=attack,
            threat=threat,
            batch_size=self.batch_size,
            device=self.device,
            seed=self.seed,
            keep_adv=0,
            early_stop=self.early_stop,
            queries=self.queries,
        )


@dataclass
class AuditResult:
    """What `audit` found. correct: bool per image (aligned with `indices`) for "clean", "pgd", "pgd_long",
    "white_box" (both PGD runs), "large_eps", "square", and "transfer" / "autoattack" when they ran; accuracy:
    their means. flags: [{"flag", "name" (the same, compare's key), "eps", "message"}]. `to_dict()` is JSON-able."""

    n: int
    eps: float
    norm: str
    config: dict[str, Any]
    source: bool
    accuracy: dict[str, float]
    flags: list[dict[str, Any]]
    details: dict[str, Any]
    timings: dict[str, float]
    subset: dict[str, Any]
    indices: Tensor = field(repr=False)
    correct: dict[str, Tensor] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def to_json(self, path) -> None:
        atomic_write_json(path, self.to_dict())

    def summary_lines(self) -> list[str]:
        """Accuracies and flags, for a terminal."""
        accs = ", ".join(f"{k} {v:.2%}" for k, v in self.accuracy.items())
        lines = [f"gradient-masking audit ({self.n} images, eps {self.eps:g}): {accs}"]
        lines += [f"  ! {f['flag']}: {f['message']}" for f in self.flags] or ["  audit flags: none"]
        return lines


def audit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: AuditConfig,
    *,
    indices: Tensor | Sequence[int] | None = None,
    source_model: nn.Module | None = None,
    progress: ProgressCallback = None,
) -> AuditResult:
    """Gradient-masking audit of `model` on one set of images (see the module docstring).

    Args:
        model: takes float images in [0, 1] (an SSPNet is evaluated as its `inference_copy`).
        images: uint8 N x C x H x W or float in [0, 1]; labels: int64 N (a whole split).
        config: eps, PGD steps, Square queries, AutoAttack on/off, flag thresholds.
        indices: the images (indices into the split) instead of config.n_images.
        source_model: the transfer attack's source (same input format); None: no transfer attack.
        progress: None (silent) or `progress(done, total, note)` (`sspnet.io.progress`): done / total in images
            x runs of the audit, the note names the run (pgd, square, autoattack, ...) and its progress.
    Returns:
        AuditResult with per-image correctness of every attack, accuracies and flags.
    """
    cfg = config.validated()
    sel, subset = select_images(labels, cfg.n_images, indices, cfg.subset_seed)
    large = cfg.large_eps if cfg.large_eps is not None else breaking_eps(cfg.norm, int(images[0].numel()))
    plan = cfg.runs(large, transfer=source_model is not None)
    runs: dict[str, EvalResult] = {}
    timings: dict[str, float] = {}
    n = len(sel)
    for k, (key, run) in enumerate(plan.items()):
        t0 = time.perf_counter()
        part = scaled(progress, k * n, len(plan) * n, f"audit {k + 1}/{len(plan)} {key}: ")
        runs[key] = evaluate(
            model,
            images,
            labels,
            cfg.engine(run.attack, run.eps, run.steps),
            indices=sel,
            source=source_model if run.transfer else None,
            progress=part,
        )
        timings[key] = time.perf_counter() - t0
    correct = {"clean": runs["pgd"].correct("clean")}
    correct.update({key: r.correct(plan[key].attack) for key, r in runs.items()})
    correct["white_box"] = correct["pgd"] & correct["pgd_long"]
    accuracy = {k: float(v.float().mean()) for k, v in correct.items()}
    details = {
        "large_eps": plan["large_eps"].eps,
        "long_steps": cfg.long_steps,
        "loss_gain": _loss_gain(runs["pgd_long"], correct["pgd_long"]),
    }
    flags = _engine_flags(runs) + _audit_flags(cfg, correct, accuracy, details)
    return AuditResult(
        n=len(sel),
        eps=cfg.eps,
        norm=cfg.norm,
        config=cfg.to_dict(),
        source=source_model is not None,
        accuracy=accuracy,
        flags=[dict(f, name=f["flag"]) for f in flags],
        details=details,
        timings=timings,
        subset=subset,
        indices=sel,
        correct=correct,
    )


def _loss_gain(long: EvalResult, survived: Tensor) -> dict[str, float] | None:
    """Mean cross-entropy of the images still correct after the long PGD: clean and at its last iterate."""
    if not bool(survived.any()):
        return None
    ps = long.per_sample
    return {
        "images": int(survived.sum()),
        "clean": float(ps["clean/loss"][survived].mean()),
        "attacked": float(ps["0/pgd/loss"][survived].mean()),
    }


def _engine_flags(runs: dict[str, EvalResult]) -> list[dict[str, Any]]:
    """AutoAttack's own warnings first, then the engine's sanity flags of the PGD and large-eps runs, once each."""
    order = ["autoattack", *_SANITY_FROM]
    flags: list[dict[str, Any]] = []
    for key in order:
        for f in runs[key].flags if key in runs else []:
            if all(f["flag"] != g["flag"] for g in flags):
                flags.append(dict(f))
    return flags


def _audit_flags(
    cfg: AuditConfig, correct: dict[str, Tensor], accuracy: dict[str, float], details: dict[str, Any]
) -> list[dict[str, Any]]:
    """The audit's own comparisons (see the module docstring)."""
    flags: list[dict[str, Any]] = []
    n, white = correct["white_box"].numel(), correct["white_box"]
    steps = f"PGD ({cfg.steps} and {cfg.long_steps} steps)"
    for key, what in (("square", "Square (black box)"), ("transfer", "transfer PGD from the source model")):
        if key in correct:
            beaten = int((white & ~correct[key]).sum())
            details[f"{key}_beats_pgd"] = beaten
            if beaten > cfg.tolerance * n:
                flags.append(
                    {
                        "flag": f"{key}_beats_pgd",
                        "eps": cfg.eps,
                        "message": f"{what} fools {beaten} of {n} "
                        f"images that white-box {steps} leaves correct: gradient masking likely",
                    }
                )
    # counted in images, so a gap of exactly the margin (2 of 100 images) does not flag through float rounding
    if (
        "autoattack" in correct
        and int((white & ~correct["autoattack"]).sum()) - int((correct["autoattack"] & ~white).sum())
        > cfg.autoattack_margin * n + 1e-9
    ):
        flags.append(
            {
                "flag": "autoattack_below_pgd",
                "eps": cfg.eps,
                "message": f"AutoAttack accuracy "
                f"{accuracy['autoattack']:.2%} is {100 * (accuracy['white_box'] - accuracy['autoattack']):.1f} "
                f"points below white-box {steps} ({accuracy['white_box']:.2%}): PGD overstates robustness",
            }
        )
    gain = details["loss_gain"]
    if (
        gain is not None
        and accuracy["pgd_long"] >= accuracy["pgd"]
        and gain["attacked"] - gain["clean"] <= LOSS_PROGRESS * (1 + abs(gain["clean"]))
    ):
        flags.append(
            {
                "flag": "pgd_steps_no_effect",
                "eps": cfg.eps,
                "message": f"PGD with {cfg.long_steps} "
                f"steps breaks no more images than with {cfg.steps} ({accuracy['pgd']:.2%}) and leaves the "
                f"loss of the {gain['images']} images still correct at its clean value: the attack makes no "
                "progress (zero, masked or shattered gradients)",
            }
        )
    return flags


__all__ = ["LONG_STEPS_FACTOR", "AuditConfig", "AuditResult", "AuditRun", "audit"]
