"""Perturbation growth ratio (PGR) of SSP networks, per block group and per single block.

For a model `normalize -> stem -> G_0 -> T_1 -> G_1 -> ... -> head` and a perturbed input x' of x, group j
has input h_j (after the stem for j = 0, after transition j for j > 0) and

    PGR_j = mean over samples of ||G_j(h_j(x')) - G_j(h_j(x))||_p / ||h_j(x') - h_j(x)||_p

with the feature maps flattened per sample and p in {1, 2, inf}. The depth profile applies the same
formula to every single block (its input u_k and output B_k(u_k)). A ratio of 1 means the block/group
neither amplifies nor damps the perturbation; the SSP paper reports PGR for adversarial x' (PGD-20 at the
training eps, no random start), and a random-noise baseline at the same eps tells how much of the growth
is specific to adversarial directions.

Everything runs in eval mode; norms are taken in float64. Samples whose input difference is exactly 0 are
excluded from the mean (their count is reported as `skipped`); a ratio with no such sample left is NaN, and the
profile says why in `undefined` (and a warning is issued). A configuration that cannot perturb at all (eps below
one 8-bit level with quantisation on) raises ValueError instead. The images are `n_images` of the split by the
class-stratified rule of `sspnet.data.subsets` (or the caller's `indices`); `GrowthResult.subset` records them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sspnet.attacks import DEFAULTS, ThreatModel, dataset_threat, random_point, threat_config
from sspnet.attacks.base import LEVELS, check_count, sub_quantum
from sspnet.eval.growth_results import GrowthProfile, GrowthResult, reduce_ratios
from sspnet.eval.growth_trace import P_NAMES, check_structure, p_name, p_value, sample_ratios, trace_features
from sspnet.eval.lipschitz import certified_accuracy, lipschitz_profile
from sspnet.eval.lipschitz_cert import certificate_stats, reduce_certificates
from sspnet.eval.selection import select_images
from sspnet.io.files import provenance
from sspnet.io.jsonio import to_jsonable
from sspnet.io.progress import ProgressCallback, report
from sspnet.io.runlayout import RunLayout

NOISE_BASELINES = ("sign", "uniform", "none")  # `sspnet.attacks.random_point` kinds, or none
ADVERSARIES = ("pgd", "fgsm", "none")
GROWTH_FILE = RunLayout.GROWTH  # a run folder's growth record


_USE = DEFAULTS["growth"]


@threat_config
@dataclass
class GrowthConfig:
    """What `measure_growth` perturbs with. threat: the adversary's norm, eps, step, steps, random start and
    8-bit rounding (its fields are also taken and shown flat, `GrowthConfig(eps=0.1, alpha=0.025)`); eps /
    alpha in pixel units (0, 1], None: the dataset's training eps / alpha (`resolved`). adversary: pgd | fgsm
    | none; noise: sign (+-eps per pixel) | uniform (U(-eps, eps)) | none, clipped to [0, 1]. n_images:
    class-stratified subset of the split. Defaults: `sspnet.attacks.DEFAULTS["growth"]`."""

    adversary: str = "pgd"
    threat: ThreatModel = _USE.threat
    noise: str = "sign"
    ps: tuple[str, ...] = P_NAMES
    n_images: int = _USE.n_images
    batch_size: int = _USE.batch_size
    seed: int = _USE.seed  # noise baseline and random starts
    subset_seed: int = 0  # seed of the image subset rule

    def validate(self) -> None:
        """ValueError naming the first bad field."""
        if self.adversary not in ADVERSARIES:
            raise ValueError(f"unknown adversary {self.adversary!r}; valid: {', '.join(ADVERSARIES)}")
        if self.noise not in NOISE_BASELINES:
            raise ValueError(f"unknown noise {self.noise!r}; valid: {', '.join(NOISE_BASELINES)}")
        if self.adversary == "none" and self.noise == "none":
            raise ValueError("nothing to measure: adversary and noise are both 'none'")
        if self.threat.norm != "linf":
            raise ValueError(
                f"growth perturbs in linf (its noise is +-eps per pixel): norm must be linf, got {self.threat.norm!r}"
            )
        for name in ("eps", "alpha"):
            v = getattr(self.threat, name)
            if v is not None and not 0 <= v <= 1:
                raise ValueError(f"{name} must be in pixel units [0, 1], got {v}")
        if self.threat.eps == 0:
            raise ValueError("eps must be > 0: with no perturbation every growth ratio is 0/0")
        for name in ("steps", "n_images", "batch_size"):
            check_count(getattr(self, name), name, 1)
        for p in self.ps:
            p_value(p)

    def resolved(self, dataset: str | None) -> ThreatModel:
        """The threat model with eps / alpha filled in: None takes the dataset's training eps / alpha
        (`sspnet.attacks.dataset_threat`; a given eps keeps the training alpha). ValueError when one is None
        and there is no dataset."""
        t = self.threat
        if t.eps is None or t.alpha is None:
            if dataset is None:
                raise ValueError("eps/alpha not given and the model has no dataset in its config; pass eps and alpha")
            train = dataset_threat(dataset)
            t = dataclasses.replace(
                t, eps=train.eps if t.eps is None else t.eps, alpha=train.alpha if t.alpha is None else t.alpha
            )
        return dataclasses.replace(t, eps=float(t.eps), alpha=float(t.alpha))


def build_adversary(
    model: nn.Module, cfg: GrowthConfig, threat: ThreatModel
) -> Callable[[Tensor, Tensor], Tensor] | None:
    """The attack (x, y) -> x_adv of a config at its resolved threat model (`GrowthConfig.resolved`), by
    `sspnet.attacks.make_attack`; None for adversary 'none'.

    ValueError when it could not move any pixel: eps below one 8-bit level (1/255) with quantize on.
    """
    if cfg.adversary == "none":
        return None
    if sub_quantum(threat.eps, threat.quantize):
        raise ValueError(
            f"eps {threat.eps:.4g} is below one 8-bit level (1/255) and quantize is on: the "
            "adversarial images would equal the clean ones and every growth ratio would be 0/0; use "
            "eps >= 1/255 or quantize=False (--no-quantize)"
        )
    return threat.attack(cfg.adversary, model, generator=torch.Generator().manual_seed(cfg.seed))


def _pixels(x: Tensor) -> Tensor:
    return x.float().div_(LEVELS) if x.dtype == torch.uint8 else x


def _given_adversarial(x_adv: Tensor, idx: Tensor, total: int, x: Tensor) -> Tensor:
    """x_adv for the selected images: given for them (len(idx) rows) or for the whole split (total rows)."""
    if x_adv.shape[0] != len(idx):
        if x_adv.shape[0] != total:
            raise ValueError(
                f"x_adv must have one image per selected image ({len(idx)}) or per image of the split "
                f"({total}), got {x_adv.shape[0]}"
            )
        x_adv = x_adv[idx.to(x_adv.device)]
    if x_adv.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"x_adv images must have the shape of the images, got {tuple(x_adv.shape[1:])} and {tuple(x.shape[1:])}"
        )
    return _pixels(x_adv).to(x.device, x.dtype)


def _ratio_chunks(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: GrowthConfig,
    eps: float,
    attack: Callable | None,
    x_adv: Tensor | None,
    progress: ProgressCallback = None,
    certificates: dict[str, list] | None = None,
) -> tuple[list, list]:
    """Per-batch `sample_ratios` of the adversarial images and of the noise baseline (model in eval mode); with
    `certificates` ({"adversarial": [], "noise": []}) also each batch's `certificate_stats` there."""
    gen = torch.Generator().manual_seed(cfg.seed)
    adv_chunks, noise_chunks = [], []
    adv = (
        "given adversarial"
        if x_adv is not None
        else (getattr(attack, "name", cfg.adversary) if attack is not None else None)
    )
    what = " + ".join(w for w in (adv, f"{cfg.noise} noise" if cfg.noise != "none" else None) if w)
    report(progress, 0, x.shape[0], f"growth ({what}): 0/{x.shape[0]} images")
    was_training = model.training
    model.eval()
    try:
        for s in range(0, x.shape[0], cfg.batch_size):
            xb, yb = x[s : s + cfg.batch_size], y[s : s + cfg.batch_size]
            xa = x_adv[s : s + cfg.batch_size] if x_adv is not None else (attack(xb, yb) if attack else None)
            if xa is not None:
                adv_chunks.append(sample_ratios(model, xb, xa.detach(), cfg.ps))
                if certificates is not None:
                    certificates["adversarial"].append(certificate_stats(model, xb, xa.detach()))
            if cfg.noise != "none":
                xn = random_point(xb, eps, cfg.noise, "linf", generator=gen)
                noise_chunks.append(sample_ratios(model, xb, xn, cfg.ps))
                if certificates is not None:
                    certificates["noise"].append(certificate_stats(model, xb, xn))
            done = min(s + cfg.batch_size, x.shape[0])
            report(progress, done, x.shape[0], f"growth ({what}): {done}/{x.shape[0]} images")
    finally:
        model.train(was_training)
    return adv_chunks, noise_chunks


def measure_growth(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: GrowthConfig | None = None,
    *,
    indices: Tensor | Sequence[int] | None = None,
    x_adv: Tensor | None = None,
    attack: Callable[[Tensor, Tensor], Tensor] | None = None,
    label: str | None = None,
    dataset: str | None = None,
    run_dir: str | None = None,
    adversary_info: dict[str, Any] | None = None,
    progress: ProgressCallback = None,
    bound: bool = False,
) -> GrowthResult:
    """Growth ratios of `model` on a split's images.

    Args:
        model: an sspnet model (normalize, stem, groups, transitions); measured in eval mode, mode restored.
        images: uint8 N x C x H x W or float in [0, 1]; labels: int N.
        config: eps/alpha (pixel units), adversary, noise, norms; `n_images` class-stratified images are used.
        indices: the images to use (indices into images, chosen by the caller) instead of config.n_images.
        x_adv: precomputed adversarial images, for the selected images (in increasing index order) or for all N;
            adversary_info describes them. Else `attack(x, y)`, else the config's adversary.
        progress: None (silent) or `progress(done, total, note)` (`sspnet.io.progress`) after every batch, done
            / total in images.
        bound: also record `GrowthResult.lipschitz` (`bound_record`): the L2 Lipschitz bounds, the certified
            accuracy at eps on these images and the per-block forward-Euler / SSP certificates of the pairs (off
            by default here; `growth_of_run`, `sspnet growth` and compare's evaluation turn it on).
    Returns:
        GrowthResult (ratios averaged over the images, `subset` says which).
    """
    cfg = config or GrowthConfig()
    cfg.validate()
    check_structure(model)
    mcfg = getattr(model, "config", {}) or {}
    dataset = dataset or mcfg.get("dataset")
    threat = cfg.resolved(dataset)
    eps = threat.eps
    idx, subset = select_images(labels, None if indices is not None else cfg.n_images, indices, cfg.subset_seed)
    x, y = _pixels(images[idx.to(images.device)]), labels[idx.to(labels.device)]
    if x_adv is not None:
        x_adv = _given_adversarial(x_adv, idx, images.shape[0], x)
        adv_desc: dict[str, Any] = dict(adversary_info or {"name": "given"})
    elif attack is not None:
        adv_desc = {"name": type(attack).__name__, "eps": eps}
    else:
        attack = build_adversary(model, cfg, threat)
        adv_desc = {"name": cfg.adversary}
        if cfg.adversary != "none":
            adv_desc.update(
                eps=eps,
                alpha=threat.alpha,
                steps=threat.steps if cfg.adversary == "pgd" else 1,
                random_start=threat.random_start,
                quantize=threat.quantize,
            )
    certs: dict[str, list] | None = {"adversarial": [], "noise": []} if bound else None
    adv_chunks, noise_chunks = _ratio_chunks(model, x, y, cfg, eps, attack, x_adv, progress, certs)
    return GrowthResult(
        label=label or str(mcfg.get("scheme", type(model).__name__)),
        dataset=str(dataset),
        n=len(idx),
        ps=[p_name(p) for p in cfg.ps],
        adversary=adv_desc,
        noise={"kind": cfg.noise, "eps": eps, "seed": cfg.seed},
        adversarial=reduce_ratios(adv_chunks, "adversarial"),
        baseline=reduce_ratios(noise_chunks, "noise") if noise_chunks else None,
        f_calls_per_block=list(getattr(model, "f_calls_per_block", [])),
        blocks_per_group=[len(g) for g in model.groups],
        run_dir=run_dir,
        subset=subset,
        provenance=provenance(),
        lipschitz=bound_record(model, x, y, eps, certs, cfg.batch_size) if certs is not None else None,
    )


def bound_record(
    model: nn.Module, x: Tensor, y: Tensor, eps: float | None, certs: dict[str, list], batch_size: int = 256
) -> dict[str, Any]:
    """What `GrowthResult.lipschitz` holds: {"profile": `lipschitz_profile(...).to_dict()` (L2 bounds per block,
    group, stem, transition, head, network), "certified": `certified_accuracy` at linf eps on the images x,
    "certificates": {"adversarial" | "noise": per-block fractions of the pairs (`reduce_certificates`)},
    "ssp_reasons": per block why the SSP argument cannot apply (None where it can)}."""
    profile = lipschitz_profile(model, tuple(x.shape[1:]))
    radius = math.nan if eps is None else eps  # a resolved threat model always has an eps
    cert = certified_accuracy(model, x, y, radius, "linf", bound=profile.network, batch_size=batch_size)
    reasons: list[str | None] = next((c[1] for chunks in certs.values() for c in chunks), [])
    return {
        "profile": profile.to_dict(),
        "certified": to_jsonable(cert),
        "certificates": {kind: reduce_certificates([c[0] for c in chunks]) for kind, chunks in certs.items() if chunks},
        "ssp_reasons": reasons,
    }


def load_test_images(
    dataset: str, n: int | None, data_root: str | None = None, device: str = "cpu", seed: int = 0
) -> tuple[Tensor, Tensor]:
    """n class-stratified test images (`sspnet.data.subsets`, the rule of `sspnet attack`; None: all) as float
    [0, 1] (n x C x H x W) and labels (n), on `device`, in increasing index order."""
    from sspnet import data

    images, labels = data.load(dataset, root=data_root, split="test", device=device)
    idx, _ = select_images(labels, n, seed=seed)
    idx = idx.to(images.device)
    return _pixels(images[idx]), labels[idx]


def growth_of_run(
    path: str | Path,
    config: GrowthConfig | None = None,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    device: str = "cpu",
    crit: str = "final",
    label: str | None = None,
    out: str | Path | None = None,
    progress: ProgressCallback = None,
    bound: bool = True,
) -> tuple[GrowthResult, Path]:
    """Measure growth of the model in a run folder (or checkpoint file) on its dataset's test images and write
        the JSON: `RUN_DIR/growth.json` (or `CHECKPOINT.growth.json`, or `out`). crit: the checkpoint of a run
    folder (acc | loss | final; default final: the end of training, chosen on no data); the result records which
    file and how it was selected; bound: `measure_growth`'s (on by default here). Returns (result, json path)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no run folder or checkpoint at {path}; train one with `sspnet train --out DIR`")
    cfg = config or GrowthConfig()
    cfg.validate()
    from sspnet import data
    from sspnet.nn.checkpoints import describe_checkpoint, load_model
    from sspnet.nn.models import inference_copy

    model = inference_copy(load_model(path, crit=crit, device=device))  # BatchNorm folded, fast layout
    dataset = dataset or model.config.get("dataset")
    images, labels = data.load(dataset, root=data_root, split="test", device=device)
    result = measure_growth(
        model,
        images,
        labels,
        cfg,
        label=label or path.name,
        dataset=dataset,
        run_dir=str(path),
        progress=progress,
        bound=bound,
    )
    result.checkpoint = describe_checkpoint(path, crit)
    target = Path(out) if out else (path / GROWTH_FILE if path.is_dir() else path.with_suffix(".growth.json"))
    result.save(target)
    return result, target


__all__ = [
    "ADVERSARIES",
    "GROWTH_FILE",
    "NOISE_BASELINES",
    "P_NAMES",
    "GrowthConfig",
    "GrowthProfile",
    "GrowthResult",
    "bound_record",
    "build_adversary",
    "growth_of_run",
    "load_test_images",
    "measure_growth",
    "p_name",
    "sample_ratios",
    "trace_features",
]
