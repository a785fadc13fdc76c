"""The expected wall time of a compare plan, from per-image costs measured now on this machine and device.

`measure_costs` builds each (model, blocks) of the plan as training does and times it on synthetic inputs of
the dataset's shape (no data is loaded): ms per image of a training fwd+bwd (train mode), an attack fwd+bwd
(eval-mode `inference_copy`, input gradient) and a forward, at the real batch size or, where that would
overrun the time budget (big models on a CPU), at a smaller batch scaled per image (a little pessimistic).
`estimate_plan` counts the plan's passes and multiplies out. Upper bounds: attacks that stop early (sweep,
AutoAttack, audit) count in full; AutoAttack as APGD-CE 100 + APGD-T 9 x 100 fwd+bwd and Square 5000 forwards.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sspnet.io.progress import fmt_seconds


def _words(s: float) -> str:
    return fmt_seconds(s, "words")


AA_FWD_BWD, AA_FORWARDS = 100 + 9 * 100, 5000  # per image (FAB-T not counted; early stop makes it a bound)
REPEATS = 5  # timed steps per cost at most (their median is taken)


@dataclass
class Costs:
    """Measured ms per image: train (fwd+bwd, train mode), attack (fwd + input-gradient bwd, eval), forward."""

    train: float
    attack: float
    forward: float


@dataclass
class Passes:
    """Images through each kind of pass (counts); seconds(costs) prices them."""

    train: float = 0.0
    attack: float = 0.0
    forward: float = 0.0

    def seconds(self, c: Costs) -> float:
        return (self.train * c.train + self.attack * c.attack + self.forward * c.forward) / 1000.0

    def __add__(self, other: Passes) -> Passes:
        return Passes(self.train + other.train, self.attack + other.attack, self.forward + other.forward)


@dataclass
class Estimate:
    """total_s: expected wall time (s) with `jobs` workers; train_s, eval_s (audit included) and autoattack_s
    (inside eval_s): its parts; costs: ms per image per (model, blocks); runs: runs with work to do."""

    total_s: float
    train_s: float
    eval_s: float
    autoattack_s: float = 0.0
    costs: dict[tuple[str, Any], Costs] = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 1
    jobs: int = 1
    runs: int = 0

    def describe(self) -> str:
        """Two lines for the plan (one when nothing is to do)."""
        from sspnet.nn.registry import model_stem

        if not self.costs:
            return "expected time: none (every run and audit is cached)"
        aa = f", AutoAttack {_words(self.autoattack_s)} of it" if self.autoattack_s else ""
        cost = ", ".join(
            f"{model_stem(str(m))}{'' if b is None else f'-N{b}'} {c.train:.3g}/{c.attack:.3g}/{c.forward:.3g}"
            for (m, b), c in self.costs.items()
        )
        return (
            f"expected time: about {_words(self.total_s)} on this machine (training "
            f"{_words(self.train_s)}, evaluation {_words(self.eval_s)}{aa}; {self.jobs} worker(s) "
            f"on {self.device}, {self.threads} thread(s) each)\n  measured per-step costs, ms per image of "
            f"train fwd+bwd / attack fwd+bwd / forward: {cost}; attacks that stop early counted in full "
            "(an upper bound)"
        )


def training_passes(cfg: Any, epochs: int) -> Passes:
    """`epochs` epochs of a TrainConfig: trained images x (1 + adversary passes) fwd+bwd (ball: its copies
    only); forwards over the validation split and the per-epoch test images."""
    from sspnet.data.specs import get_dataset_spec

    c, spec = cfg.resolved(), get_dataset_spec(cfg.dataset)
    n_val = int(round(c.val_split * spec.n_train))
    n = spec.n_train - n_val
    images = min(n, min(math.ceil(n / c.batch_size), c.steps_per_epoch or math.inf) * c.batch_size)
    per_image = {"pgd": c.steps + 1, "fgsm": 2, "fast": 2, "ball": c.ball_copies}.get(c.adv, 1)
    clean = images if c.adv != "none" and c.clean_metrics else 0
    tests = min(c.eval_n_images or spec.n_test, spec.n_test)
    return Passes(train=epochs * images * per_image, forward=epochs * (n_val + tests + clean))


def _attack(p: Passes, images: int, steps: int | None, restarts: int = 1, early: bool = True) -> None:
    """PGD (steps x restarts fwd+bwd; forwards judging restarts and results), or AutoAttack with steps=None
    (its own forwards and the result's)."""
    if steps is None:
        p.attack, p.forward = p.attack + images * AA_FWD_BWD, p.forward + images * (AA_FORWARDS + 2)
        return
    p.attack += images * steps * restarts
    p.forward += images * (restarts if early else (restarts if restarts > 1 else 0) + 1)


def call_passes(cfg: Any, images: int, source: Passes | None = None) -> Passes:
    """The passes of one `sspnet.eval.evaluate(cfg)` call on `images` images: the clean forward, then every
    attack at every eps (fgsm: one step; pgd: `_attack`, early-stopped as the config says; square: its
    queries; autoattack: `_attack` with steps=None; ball: its copies and the result). source: the transfer
    source's passes (the attacks crafted there without early stop, their results forwarded here)."""
    cfg = cfg.validated()
    p = Passes(forward=images)
    early = cfg.uses_early_stop() and source is None
    for _ in cfg.eps:
        for name in cfg.attack_names():
            crafter = p if source is None else source
            if name in ("fgsm", "pgd"):
                steps, restarts = (1, 1) if name == "fgsm" else (cfg.steps, cfg.restarts)
                _attack(crafter, images, steps, restarts, early=early)
            elif name == "autoattack":
                _attack(crafter, images, None)
            elif name == "square":
                crafter.forward += images * cfg.queries
            else:
                crafter.forward += images * (cfg.copies + 1)
            if source is not None:
                p.forward += images
    return p


def evaluation_passes(ev: Any, n_test: int, autoattack: bool) -> Passes:
    """`work.evaluation.evaluate_run` with resolved EvalSettings on a test split of n_test images: its
    engine calls (`work.evaluation.engine_passes`) and the growth ratios' forwards."""
    from sspnet.experiments.compare.work.evaluation import engine_passes

    n = min(ev.n_images or n_test, n_test)
    sizes = {"eval": n, "sweep": min(ev.sweep_images, n), "autoattack": min(ev.autoattack_images, n)}
    p = Passes()
    for call in engine_passes(ev, autoattack):
        p = p + call_passes(call.config, sizes[call.images])
    p.forward += min(ev.growth_images, n) * 2 * (2 if ev.growth_noise != "none" else 1)  # clean + perturbed
    return p


def audit_passes(ev: Any, n_test: int, autoattack: bool, transfer: bool, input_dim: int = 784) -> tuple[Passes, Passes]:
    """(the audited model's passes, the transfer source's) of `sspnet.eval.audit` as compare calls it: the
    runs of `AuditConfig.runs` of `EvalSettings.audit_config` (input_dim: pixels x channels of an image, for
    the large eps; the counts do not depend on it)."""
    import dataclasses

    from sspnet.eval.flags import breaking_eps

    cfg = dataclasses.replace(ev.audit_config(), autoattack=autoattack).validated()
    m = min(ev.audit_images, ev.n_images or ev.audit_images, n_test)
    p, src = Passes(), Passes()
    for run in cfg.runs(breaking_eps(cfg.norm, input_dim), transfer).values():
        p = p + call_passes(cfg.engine(run.attack, run.eps, run.steps), m, src if run.transfer else None)
    return p, src


def _key(run: Any) -> tuple[str, Any]:
    return run.model, run.train_config.blocks


def _epochs_left(run: Any) -> int:
    """Epochs to train: all; for a run that resumes, those not in its metrics.jsonl."""
    from sspnet.io.runlayout import RunLayout

    layout = RunLayout(run.run_dir)
    epochs = run.train_config.epochs
    if run.status != "resume" or not layout.metrics.is_file():
        return epochs
    done = [rec.get("epoch") or 0 for rec in layout.read_metrics()]
    return max(0, epochs - max(done, default=0))


def _makespan(seconds: list[float], jobs: int) -> float:
    """Wall time of tasks handed longest first to `jobs` workers, each to the first free one."""
    loads = [0.0] * max(1, min(jobs, len(seconds)))
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def estimate_plan(
    plan: list[Any],
    ctx: Any,
    device: str,
    jobs: int,
    *,
    budget_s: float = 4.0,
    measure: Callable | None = None,
    worker_threads: int | None = None,
) -> Estimate:
    """The plan's expected wall time on `device` with `jobs` workers, as `work.job.run_job` does the work: each
    run to do is one job (train unless status evaluate, evaluate), and an audit runs in the job of the later of
    its two runs (the audited run and its transfer source; the longer job when both are to do). Cached runs and
    audits count zero; AutoAttack where compare runs it (in the audit when that is on). ctx: the plan's
    `CompareContext`. measure(TrainConfigs by (model, blocks), ev, device, threads, budget_s) -> {(model,
    blocks): Costs}; default `measure_costs` (about budget_s seconds). worker_threads: compare's --threads
    (None: 1 per worker with jobs > 1 on a CPU, else this process's threads)."""
    import torch

    from sspnet.data.specs import get_dataset_spec
    from sspnet.experiments.compare.work.audit import audit_function, plan_audits, read_cached
    from sspnet.experiments.compare.work.evaluation import autoattack_in_evaluation, use_autoattack

    spec, ev = get_dataset_spec(ctx.dataset), ctx.eval
    n_test, pixels = spec.n_test, spec.channels * spec.size**2
    threads = (
        worker_threads
        if worker_threads is not None
        else 1
        if jobs > 1 and torch.device(device).type == "cpu"
        else torch.get_num_threads()
    )
    runs = [r for r in plan if r.status != "cached"]
    audits = (
        [j for j in plan_audits(plan, ctx.eval_hash, ev) if read_cached(j) is None]
        if ev.audit == "on" and audit_function() is not None
        else []
    )
    needed = {_key(r) for r in runs} | {_key(x) for j in audits for x in (j.run, j.source) if x is not None}
    if not needed:
        return Estimate(0.0, 0.0, 0.0, device=device, threads=threads, jobs=jobs)
    costs = (measure or measure_costs)(
        {_key(r): r.train_config for r in plan if _key(r) in needed}, ev, device, threads, budget_s
    )
    train = [
        0.0 if r.status == "evaluate" else training_passes(r.train_config, _epochs_left(r)).seconds(costs[_key(r)])
        for r in runs
    ]

    def evaluation(aa: bool) -> tuple[list[float], list[float]]:
        """Seconds per run to evaluate and per audit to do (with or without AutoAttack)."""
        evals = [
            evaluation_passes(ev, n_test, aa and autoattack_in_evaluation(ev)).seconds(costs[_key(r)]) for r in runs
        ]
        on = aa and use_autoattack(ev.autoattack)
        return evals, [
            a.seconds(costs[_key(j.run)]) + (s.seconds(costs[_key(j.source)]) if j.source else 0.0)
            for j in audits
            for a, s in [audit_passes(ev, n_test, on, j.source is not None, pixels)]
        ]

    evals, audit = evaluation(True)
    job = {r.index: t + e for r, t, e in zip(runs, train, evals)}
    with_audits = dict(job)
    for j, seconds in zip(audits, audit):
        pair = [x.index for x in (j.run, j.source) if x is not None and x.index in job]
        where = max(pair, key=job.__getitem__) if pair else j.run.index  # both cached: a job of its own
        with_audits[where] = with_audits.get(where, 0.0) + seconds
    total = _makespan(list(with_audits.values()) or [0.0], jobs)
    work = sum(train) + sum(evals) + sum(audit)
    share = total / max(work, 1e-12)  # wall seconds per worker-second
    aa = sum(evals) + sum(audit) - sum(map(sum, evaluation(False)))
    return Estimate(
        total, share * sum(train), share * (work - sum(train)), share * aa, costs, device, threads, jobs, len(runs)
    )


def measure_costs(configs: dict[Any, Any], ev: Any, device: str, threads: int, budget_s: float) -> dict[Any, Costs]:
    """Costs of each TrainConfig of `configs` on synthetic inputs with `threads` torch threads (restored
    afterwards); about budget_s seconds in all (at least one timed step per cost)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        slice_s = max(0.05, budget_s / (3 * len(configs)))
        return {k: _measure_one(cfg, ev.batch_size, torch.device(device), slice_s) for k, cfg in configs.items()}
    finally:
        torch.set_num_threads(old)


def _measure_one(cfg: Any, eval_batch: int, device: Any, slice_s: float) -> Costs:
    """The model built as training builds it (`train.setup.build_model`, memory layout, autocast)."""
    import torch
    import torch.nn.functional as F

    from sspnet.data.specs import get_dataset_spec
    from sspnet.nn.inference import inference_copy, preferred_memory_format
    from sspnet.train.setup import _amp_dtype, build_model
    from sspnet.train.step import autocast

    c = cfg.resolved()
    spec, model = get_dataset_spec(c.dataset), build_model(c).to(device).train()
    fmt = (
        preferred_memory_format(model, device)
        if c.channels_last is None
        else torch.channels_last
        if c.channels_last
        else torch.contiguous_format
    )
    model = model.to(memory_format=fmt)
    gen, n = torch.Generator().manual_seed(0), max(c.batch_size, eval_batch)
    x = torch.rand(n, spec.channels, spec.size, spec.size, generator=gen).to(device).contiguous(memory_format=fmt)
    y = torch.randint(0, spec.num_classes, (n,), generator=gen).to(device)
    amp, inf = _amp_dtype(c, device), inference_copy(model)

    def train(b: int) -> None:
        model.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x[:b]).float(), y[:b], reduction="sum")
        loss.backward()

    def attack(b: int) -> None:
        xb = x[:b].clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(inf(xb), y[:b], reduction="sum"), xb)

    def forward(b: int) -> None:
        with torch.no_grad():
            inf(x[:b])

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return Costs(
        *(
            1000 * _per_image(f, b, slice_s, sync)
            for f, b in ((train, c.batch_size), (attack, eval_batch), (forward, eval_batch))
        )
    )


def _per_image(step: Callable[[int], None], batch: int, slice_s: float, sync: Callable) -> float:
    """Seconds per image of step(b): b grows from 2 by 4x up to `batch` while the next step would take under
    slice_s / 2 (so fixed per-step overheads are not taken for per-image costs); then the median of up to
    REPEATS timed steps within slice_s / 2 (at least one)."""

    def timed(b: int) -> float:
        sync()
        t = time.perf_counter()
        step(b)
        sync()
        return time.perf_counter() - t

    b = min(batch, 2)
    timed(b)  # warm-up
    while b < batch and 4 * timed(b) < slice_s / 2:
        b = min(batch, 4 * b)
    t0 = time.perf_counter()
    times: list[float] = []
    while len(times) < REPEATS and (not times or time.perf_counter() - t0 < slice_s / 2):
        times.append(timed(b))
    return statistics.median(times) / b
