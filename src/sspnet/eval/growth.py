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
excluded from the mean (their count is reported as `skipped`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from sspnet.io.files import atomic_write_json, provenance

P_NAMES = ("1", "2", "inf")
NOISE_KINDS = ("sign", "uniform", "none")
ADVERSARIES = ("pgd", "fgsm", "none")
GROWTH_FILE = "growth.json"


def _p_value(p: str | float | int) -> float:
    key = str(p).lower().replace("infinity", "inf")
    if key in ("1", "1.0"):
        return 1.0
    if key in ("2", "2.0"):
        return 2.0
    if key == "inf":
        return math.inf
    raise ValueError(f"unknown norm p={p!r}; valid: 1, 2, inf")


def p_name(p: str | float | int) -> str:
    """Canonical name of a norm order: '1', '2' or 'inf'."""
    v = _p_value(p)
    return "inf" if math.isinf(v) else str(int(v))


def _check_structure(model: nn.Module) -> None:
    for attr in ("normalize", "stem", "groups", "transitions"):
        if not hasattr(model, attr):
            raise ValueError(f"growth needs an sspnet model (normalize, stem, groups, transitions); "
                             f"{type(model).__name__} has no .{attr}")


@torch.no_grad()
def trace_features(model: nn.Module, x: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Feature maps of a batch x (B x C x H x W in [0, 1]).

    Returns (group_inputs, block_inputs, group_outputs): group_inputs[j] = h_j(x); block_inputs[k] = input of
    the k-th block in depth order (group by group); group_outputs[j] = G_j(h_j(x)). The output of block k is
    block_inputs[k + 1] within a group and group_outputs[j] for the last block of group j.
    """
    _check_structure(model)
    h = model.stem(model.normalize(x))
    g_in, b_in, g_out = [], [], []
    for j, group in enumerate(model.groups):
        if j > 0:
            h = model.transitions[j - 1](h)
        g_in.append(h)
        for block in group:
            b_in.append(h)
            h = block(h)
        g_out.append(h)
    return g_in, b_in, g_out


def _block_outputs(model: nn.Module, b_in: list[Tensor], g_out: list[Tensor]) -> list[Tensor]:
    outs, k = [], 0
    for j, group in enumerate(model.groups):
        n = len(group)
        outs.extend(b_in[k + 1:k + n])
        outs.append(g_out[j])
        k += n
    return outs


def _norms(d: Tensor, p: float) -> Tensor:
    return torch.linalg.vector_norm(d.reshape(d.shape[0], -1).double(), ord=p, dim=1)


@torch.no_grad()
def sample_ratios(model: nn.Module, x: Tensor, x_pert: Tensor, ps: Sequence[str | float] = P_NAMES
                  ) -> dict[str, dict[str, Tensor]]:
    """Per-sample growth ratios of one batch.

    Returns {"groups": {p: B x n_groups}, "blocks": {p: B x n_blocks}} float64 tensors; an entry is NaN
    where the input difference of that group/block is exactly zero. The model is put in eval mode for the
    measurement and its mode restored.
    """
    if x.shape != x_pert.shape:
        raise ValueError(f"x and x_pert must have the same shape, got {tuple(x.shape)} and {tuple(x_pert.shape)}")
    was_training = model.training
    model.eval()
    try:
        gi, bi, go = trace_features(model, x)
        gi2, bi2, go2 = trace_features(model, x_pert)
    finally:
        model.train(was_training)
    bo, bo2 = _block_outputs(model, bi, go), _block_outputs(model, bi2, go2)
    out: dict[str, dict[str, Tensor]] = {"groups": {}, "blocks": {}}
    for p in ps:
        pv, name = _p_value(p), p_name(p)
        for key, ins, ins2, outs, outs2 in (("groups", gi, gi2, go, go2), ("blocks", bi, bi2, bo, bo2)):
            cols = []
            for a, a2, b, b2 in zip(ins, ins2, outs, outs2):
                den = _norms(a2 - a, pv)
                num = _norms(b2 - b, pv)
                cols.append(torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, math.nan)))
            out[key][name] = torch.stack(cols, dim=1) if cols else torch.zeros(x.shape[0], 0, dtype=torch.float64)
    return out


@dataclass
class GrowthProfile:
    """Mean ratios of one kind of perturbation (adversarial or noise).

    groups[p][j]: PGR of group j; blocks[p][k]: ratio of block k (depth order); std_*: standard deviation
    over samples; skipped: samples excluded because the input difference was 0 (per group, at p = first p).
    """

    groups: dict[str, list[float]] = field(default_factory=dict)
    blocks: dict[str, list[float]] = field(default_factory=dict)
    std_groups: dict[str, list[float]] = field(default_factory=dict)
    std_blocks: dict[str, list[float]] = field(default_factory=dict)
    skipped: int = 0


def _reduce(chunks: list[dict[str, dict[str, Tensor]]]) -> GrowthProfile:
    prof = GrowthProfile()
    if not chunks:
        return prof
    for key, mean_d, std_d in (("groups", prof.groups, prof.std_groups), ("blocks", prof.blocks, prof.std_blocks)):
        for name in chunks[0][key]:
            r = torch.cat([c[key][name] for c in chunks], dim=0)
            valid = ~torch.isnan(r)
            cnt = valid.sum(0).clamp_min(1)
            z = torch.where(valid, r, torch.zeros_like(r))
            mean = z.sum(0) / cnt
            var = (torch.where(valid, (r - mean) ** 2, torch.zeros_like(r))).sum(0) / (cnt - 1).clamp_min(1)
            mean_d[name] = [float(v) if c > 0 else math.nan for v, c in zip(mean, valid.sum(0))]
            std_d[name] = [float(v) for v in var.sqrt()]
            if key == "groups" and name == next(iter(chunks[0][key])):
                prof.skipped = int((~valid).any(1).sum())
    return prof


@dataclass
class GrowthResult:
    """Growth ratios of one model: adversarial and noise-baseline profiles plus what produced them.

    JSON round trip: `save(path)` / `GrowthResult.load(path)`.
    """

    label: str
    dataset: str
    n: int
    ps: list[str]
    adversary: dict[str, Any]
    noise: dict[str, Any]
    adversarial: GrowthProfile
    baseline: GrowthProfile | None
    f_calls_per_block: list[int] = field(default_factory=list)
    blocks_per_group: list[int] = field(default_factory=list)
    run_dir: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GrowthResult":
        d = dict(d)
        d["adversarial"] = GrowthProfile(**d["adversarial"])
        d["baseline"] = GrowthProfile(**d["baseline"]) if d.get("baseline") else None
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, _nan_to_none(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "GrowthResult":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no growth result at {path}; run `sspnet growth RUN_DIR` first")
        return cls.from_dict(_none_to_nan(json.loads(path.read_text(encoding="utf-8"))))


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def _none_to_nan(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (v if k in ("baseline", "run_dir", "git_hash") and v is None else _none_to_nan(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [math.nan if v is None else _none_to_nan(v) for v in obj]
    return obj


def noise_like(x: Tensor, eps: float, kind: str = "sign", generator: torch.Generator | None = None) -> Tensor:
    """x + noise clipped to [0, 1]: kind 'sign' (+-eps with probability 1/2 each) or 'uniform' (U(-eps, eps))."""
    if kind == "sign":
        r = torch.randint(0, 2, x.shape, generator=generator, device="cpu").to(x.device, x.dtype) * 2 - 1
        d = eps * r
    elif kind == "uniform":
        d = (torch.rand(x.shape, generator=generator, device="cpu").to(x.device, x.dtype) * 2 - 1) * eps
    else:
        raise ValueError(f"unknown noise kind {kind!r}; valid: sign, uniform")
    return (x + d).clamp(0.0, 1.0)


@dataclass
class GrowthConfig:
    """What `measure_growth` perturbs with. eps/alpha in pixel units [0, 1]; None: the dataset's training
    eps/alpha (spec.train_eps, spec.train_alpha). adversary: pgd | fgsm | none; noise: sign | uniform | none."""

    adversary: str = "pgd"
    eps: float | None = None
    alpha: float | None = None
    steps: int = 20
    random_start: bool = False
    quantize: bool = True
    noise: str = "sign"
    ps: tuple[str, ...] = P_NAMES
    n: int = 500
    batch_size: int = 100
    seed: int = 0

    def validate(self) -> None:
        if self.adversary not in ADVERSARIES:
            raise ValueError(f"unknown adversary {self.adversary!r}; valid: {', '.join(ADVERSARIES)}")
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"unknown noise {self.noise!r}; valid: {', '.join(NOISE_KINDS)}")
        if self.adversary == "none" and self.noise == "none":
            raise ValueError("nothing to measure: adversary and noise are both 'none'")
        for name in ("eps", "alpha"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise ValueError(f"{name} must be in pixel units [0, 1], got {v}")
        if self.steps < 1 or self.n < 1 or self.batch_size < 1:
            raise ValueError(f"steps, n and batch_size must be >= 1, got {self.steps}, {self.n}, {self.batch_size}")
        for p in self.ps:
            _p_value(p)


def build_adversary(model: nn.Module, cfg: GrowthConfig, eps: float, alpha: float
                    ) -> Callable[[Tensor, Tensor], Tensor] | None:
    """The attack callable (x, y) -> x_adv of a config, from `sspnet.attacks`; None for adversary 'none'."""
    if cfg.adversary == "none":
        return None
    from sspnet import attacks

    if cfg.adversary == "fgsm":
        return attacks.FGSM(model, eps, quantize=cfg.quantize)
    return attacks.PGD(model, eps, alpha, cfg.steps, random_start=cfg.random_start, quantize=cfg.quantize)


def measure_growth(model: nn.Module, x: Tensor, y: Tensor, config: GrowthConfig | None = None, *,
                   attack: Callable[[Tensor, Tensor], Tensor] | None = None, x_adv: Tensor | None = None,
                   label: str | None = None, dataset: str | None = None, run_dir: str | None = None,
                   adversary_info: dict[str, Any] | None = None) -> GrowthResult:
    """Growth ratios of `model` on images x (N x C x H x W in [0, 1]) with labels y (N).

    The first `config.n` images are used, in batches of `config.batch_size`. The adversarial x' comes from
    `x_adv` (precomputed, same shape as x; `adversary_info` describes it), else from `attack(x, y)`, else
    from the config's adversary.
    The noise baseline uses the same eps. Returns a GrowthResult (ratios averaged over samples).
    """
    cfg = config or GrowthConfig()
    cfg.validate()
    _check_structure(model)
    mcfg = getattr(model, "config", {}) or {}
    dataset = dataset or mcfg.get("dataset")
    eps, alpha = cfg.eps, cfg.alpha
    if eps is None or alpha is None:
        if dataset is None:
            raise ValueError("eps/alpha not given and the model has no dataset in its config; pass eps and alpha")
        from sspnet.data.specs import get_dataset_spec

        spec = get_dataset_spec(dataset)
        eps = spec.train_eps if eps is None else eps
        alpha = spec.train_alpha if alpha is None else alpha
    n = min(cfg.n, x.shape[0])
    x, y = x[:n], y[:n]
    if x_adv is not None:
        x_adv = x_adv[:n]
        if x_adv.shape != x.shape:
            raise ValueError(f"x_adv must have the shape of x, got {tuple(x_adv.shape)} and {tuple(x.shape)}")
        adv_desc: dict[str, Any] = dict(adversary_info or {"name": "given"})
    elif attack is not None:
        adv_desc = {"name": type(attack).__name__, "eps": eps}
    else:
        attack = build_adversary(model, cfg, eps, alpha)
        adv_desc = {"name": cfg.adversary}
        if cfg.adversary != "none":
            adv_desc.update(eps=eps, alpha=alpha, steps=cfg.steps if cfg.adversary == "pgd" else 1,
                            random_start=cfg.random_start, quantize=cfg.quantize)
    gen = torch.Generator().manual_seed(cfg.seed)
    adv_chunks, noise_chunks = [], []
    was_training = model.training
    model.eval()
    try:
        for s in range(0, n, cfg.batch_size):
            xb, yb = x[s:s + cfg.batch_size], y[s:s + cfg.batch_size]
            xa = x_adv[s:s + cfg.batch_size] if x_adv is not None else (attack(xb, yb) if attack else None)
            if xa is not None:
                adv_chunks.append(sample_ratios(model, xb, xa.detach(), cfg.ps))
            if cfg.noise != "none":
                noise_chunks.append(sample_ratios(model, xb, noise_like(xb, eps, cfg.noise, gen), cfg.ps))
    finally:
        model.train(was_training)
    calls = list(getattr(model, "f_calls_per_block", []))
    return GrowthResult(
        label=label or str(mcfg.get("scheme", type(model).__name__)), dataset=str(dataset), n=n,
        ps=[p_name(p) for p in cfg.ps], adversary=adv_desc,
        noise={"kind": cfg.noise, "eps": eps, "seed": cfg.seed},
        adversarial=_reduce(adv_chunks), baseline=_reduce(noise_chunks) if noise_chunks else None,
        f_calls_per_block=calls, blocks_per_group=[len(g) for g in model.groups], run_dir=run_dir,
        provenance=provenance())


def load_test_images(dataset: str, n: int, data_root: str | None = None, device: str = "cpu"
                     ) -> tuple[Tensor, Tensor]:
    """n evenly spaced test images of a dataset (every class of a class-sorted set represented; the same
    rule as `sspnet attack`) as float [0, 1] (n x C x H x W) and labels (n), on `device`."""
    from sspnet import data

    images, labels = data.load(dataset, root=data_root, split="test", device=device)
    total = images.shape[0]
    idx = torch.arange(total) if n >= total else torch.arange(n) * total // n
    idx = idx.to(images.device)
    return images[idx].float().div_(255.0), labels[idx]


def growth_of_run(path: str | Path, config: GrowthConfig | None = None, *, dataset: str | None = None,
                  data_root: str | None = None, device: str = "cpu", crit: str = "acc", label: str | None = None,
                  out: str | Path | None = None) -> tuple[GrowthResult, Path]:
    """Measure growth of the model in a run folder (or checkpoint file) on its dataset's test images and write
    the JSON: `RUN_DIR/growth.json` (or `CHECKPOINT.growth.json`, or `out`). Returns (result, json path)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no run folder or checkpoint at {path}; train one with `sspnet train --save DIR`")
    cfg = config or GrowthConfig()
    cfg.validate()
    from sspnet.nn.checkpoints import load_model
    from sspnet.nn.models import inference_copy

    model = inference_copy(load_model(path, crit=crit, device=device))  # BatchNorm folded, fast layout
    dataset = dataset or model.config.get("dataset")
    x, y = load_test_images(dataset, cfg.n, data_root, device)
    result = measure_growth(model, x, y, cfg, label=label or path.name, dataset=dataset, run_dir=str(path))
    target = Path(out) if out else (path / GROWTH_FILE if path.is_dir() else path.with_suffix(".growth.json"))
    result.save(target)
    return result, target
