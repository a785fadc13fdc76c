"""Evaluation of one `sspnet compare` run with the one engine (`sspnet.eval`): clean / FGSM / PGD accuracy at
eps, a PGD eps sweep, optional AutoAttack, and the perturbation growth ratios of the PGD examples and of random
noise at the same eps.

Every table's images are chosen by `sspnet.data.subsets.subset_indices` over the whole test split
(class-stratified, nested): the sweep, growth and AutoAttack images lie inside the n_images set, so the sweep
reuses the clean and PGD results at eps and growth the PGD examples of the main evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from sspnet.experiments.compare.work.perimage import pack, sweep_key


def use_autoattack(mode: str) -> bool:
    """Whether AutoAttack runs: mode on, or auto with the package installed."""
    from sspnet import attacks

    return mode == "on" or (mode == "auto" and attacks.autoattack_available())


def autoattack_in_evaluation(ev: Any) -> bool:
    """AutoAttack runs once per run: inside the gradient-masking audit (on its images, `work.audit`) when
    the audit is on, else here on `autoattack_images`."""
    return use_autoattack(ev.autoattack) and ev.audit == "off"


def choose_images(labels: Tensor, ev: Any, autoattack: bool) -> dict[str, Tensor]:
    """Sorted indices into the test split (labels: int N, the whole split) of each table's images.

    "eval": n_images of them; "sweep", "growth" (and "autoattack" when it runs): the rule's smaller subsets,
    which lie inside "eval"."""
    from sspnet.data.subsets import subset_indices

    main = subset_indices(labels, ev.n_images)
    n = int(main.numel())
    sizes = {"sweep": ev.sweep_images, "growth": ev.growth_images}
    if autoattack:
        sizes["autoattack"] = ev.autoattack_images
    return {"eval": main, **{k: subset_indices(labels, min(v, n)) for k, v in sizes.items()}}


def describe_images(labels: Tensor, chosen: dict[str, Tensor]) -> dict[str, dict[str, Any]]:
    """The record's account of each table's images (rule, seed, n, per_class, indices)."""
    from sspnet.data.subsets import describe_subset

    return {table: describe_subset(labels, idx) for table, idx in chosen.items()}


@dataclass(frozen=True)
class EnginePass:
    """One `sspnet.eval.evaluate` call of `evaluate_run`: its key, the `choose_images` table it runs on and its
    engine config."""

    key: str
    images: str
    config: Any  # sspnet.eval.EvalConfig


def engine_passes(ev: Any, autoattack: bool) -> list[EnginePass]:
    """The engine calls of `evaluate_run` with resolved EvalSettings, in order; `evaluate_run` runs exactly
    these and `estimate` counts their passes. main: FGSM and PGD at eps on the "eval" images, in full (PGD's
    images are kept: they feed the growth ratios); sweep: PGD at the sweep's other eps, the step scaled with
    eps (alpha * eps / ev.eps, at least 1/255 when quantised), only when there are such eps; autoattack: when
    it runs in the evaluation (`autoattack_in_evaluation`)."""
    passes = [EnginePass("main", "eval", _config(ev, "fgsm,pgd", [ev.eps], keep_attack="pgd"))]
    others = sweep_others(ev)
    if others:
        passes.append(EnginePass("sweep", "sweep", _config(ev, "pgd", others, relative=True, keep_adv=0)))
    if autoattack:
        passes.append(EnginePass("autoattack", "autoattack", _config(ev, "autoattack", [ev.eps], keep_adv=0)))
    return passes


def sweep_others(ev: Any) -> list[float]:
    """The sweep's eps other than ev.eps (at ev.eps the main PGD results are reused)."""
    return [e for e in ev.sweep if abs(e - ev.eps) >= 1e-12]


def _config(ev: Any, attack: str, eps: list[float], relative: bool = False, **kw: Any):
    """An engine EvalConfig of compare's threat model (`ev.threat`: random starts exactly when it restarts,
    8-bit rounding as ev.quantize) at radii eps; relative: the step alpha / eps of ev scaled with each eps;
    early stop as ev.early_stop where no images are kept (keep_adv=0)."""
    from sspnet.eval.config import EvalConfig

    threat = dataclasses.replace(ev.threat, random_start=ev.restarts > 1)
    if relative:
        threat = dataclasses.replace(threat, alpha=None, alpha_rel=ev.alpha / ev.eps)
    kw.setdefault("early_stop", ev.early_stop if kw.get("keep_adv") == 0 else False)
    return EvalConfig(attack=attack, threat=threat, eps=eps, batch_size=ev.batch_size, **kw)


def _sweep(
    model: nn.Module, images: Tensor, labels: Tensor, ev: Any, main: Any, idx: Tensor, sweep: Any
) -> tuple[dict[str, float], dict[str, Tensor], list[dict[str, Any]]]:
    """PGD accuracy (%) per sweep eps on images idx (eps 0: clean), the per-image correctness behind it
    (keyed `sweep_key(eps)`) and the engine's sanity flags; sweep: the sweep's `EnginePass` (None: every
    sweep eps is ev.eps, whose main PGD results are reused)."""
    from sspnet.eval.robustness import evaluate

    sw = None if sweep is None else evaluate(model, images, labels, sweep.config, indices=idx)
    others = sweep_others(ev)
    correct = {sweep_key(0): main.correct("clean", indices=idx)}
    for e in ev.sweep:
        correct[sweep_key(e)] = sw.correct("pgd", e) if e in others else main.correct("pgd", ev.eps, indices=idx)
    table = {key.split()[1]: _percent(ok) for key, ok in correct.items()}
    return table, correct, (sw.flags if sw is not None else [])


def _percent(ok: Tensor) -> float:
    return 100.0 * float(ok.double().mean()) if ok.numel() else float("nan")


def _growth(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    ev: Any,
    main: Any,
    idx: Tensor,
    label: str,
    dataset: str,
    run_dir: str | None,
):
    """Growth ratios of the main evaluation's PGD examples of images idx, and of `ev.growth_noise` noise."""
    from sspnet.eval.growth import GrowthConfig, measure_growth
    from sspnet.nn.models import inference_copy

    cfg = GrowthConfig(
        threat=dataclasses.replace(ev.threat, restarts=1, random_start=False),
        noise=ev.growth_noise,
        batch_size=ev.batch_size,
    )  # the threat model describes the given PGD examples
    return measure_growth(
        inference_copy(model),
        images,
        labels,
        cfg,
        indices=idx,
        x_adv=main.adversarial_images(ev.eps, idx),
        adversary_info=main.attack_info("pgd", ev.eps),
        label=label,
        dataset=dataset,
        run_dir=run_dir,
        bound=True,  # the L2 Lipschitz bounds beside the measured ratios (under a second per model)
    )


def evaluate_run(
    model: nn.Module, images: Tensor, labels: Tensor, ev: Any, dataset: str, label: str, run_dir: str | None = None
) -> dict[str, Any]:
    """Clean / FGSM / PGD / sweep (/ AutoAttack) accuracy in % and growth ratios of one model.

    images: the whole test split, uint8 N x C x H x W (or float in [0, 1]); labels: int64 N; ev: resolved
    `EvalSettings` (pixel units). Returns {"eval": accuracies in %, settings, image counts and the engine's
    sanity flags; "images": each table's image description; "growth": GrowthResult; "correct": per-image
    correctness of every table, packed (`perimage`)}.
    """
    from sspnet.eval.robustness import evaluate

    t0 = time.perf_counter()
    chosen = choose_images(labels, ev, autoattack_in_evaluation(ev))
    passes = {p.key: p for p in engine_passes(ev, "autoattack" in chosen)}
    main = evaluate(model, images, labels, passes["main"].config, indices=chosen["eval"])
    correct = {"clean": main.correct("clean"), **{a: main.correct(a, ev.eps) for a in ("fgsm", "pgd")}}
    sweep, sweep_correct, sweep_flags = _sweep(model, images, labels, ev, main, chosen["sweep"], passes.get("sweep"))
    out: dict[str, Any] = {
        "n_images": main.n,
        "eps": ev.eps,
        "alpha": ev.alpha,
        "steps": ev.steps,
        **{k: _percent(ok) for k, ok in correct.items()},
        "sweep_images": len(chosen["sweep"]),
        "sweep": sweep,
        "autoattack": None,
    }
    flags = main.flags + sweep_flags
    if "autoattack" in passes:
        aa = evaluate(model, images, labels, passes["autoattack"].config, indices=chosen["autoattack"])
        correct["autoattack"] = aa.correct("autoattack", ev.eps)
        out["autoattack"], out["autoattack_images"] = _percent(correct["autoattack"]), aa.n
        flags += aa.flags
    growth = _growth(model, images, labels, ev, main, chosen["growth"], label, dataset, run_dir)
    out["flags"] = flags
    out["seconds"] = time.perf_counter() - t0
    bits = {k: pack(ok) for k, ok in {**correct, **sweep_correct}.items()}
    return {"eval": out, "images": describe_images(labels, chosen), "growth": growth, "correct": bits}
