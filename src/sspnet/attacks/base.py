"""Shared attack machinery: the threat-model ball, 8-bit quantisation, mode handling, input gradients.

Images are float tensors in [0, 1] of shape B x C x H x W (any B x ... works); eps and alpha are in the same
pixel units. The model normalises its input itself.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("linf", "l2")
MODES = ("eval", "keep")
NOISE_KINDS = ("uniform", "sign")  # `random_perturbation` kinds
LEVELS = 255.0  # 8-bit grid: k / 255, k = 0..255
_GRID_TOL = 1e-3  # in grid units: a bound within 1e-3 / 255 of a level counts as that level
DEFAULT_ALPHA_REL = 0.25  # the default PGD step: alpha = eps / 4 (`default_step`)
MIN_ALPHA = 1e-12


def default_step(
    eps: float, *, alpha_rel: float = DEFAULT_ALPHA_REL, quantize: bool = False, norm: str = "linf"
) -> float:
    """The one default PGD step rule (pixel units): alpha_rel * eps, raised to one 8-bit level (1/255) when
    linf steps are rounded to the 8-bit grid (a smaller step would round back to the start)."""
    alpha = float(eps) * float(alpha_rel)
    if quantize and norm == "linf":
        alpha = max(alpha, 1 / LEVELS)
    return max(alpha, MIN_ALPHA)


def check_norm(norm: str) -> str:
    key = str(norm).lower().replace("-", "")
    key = {"inf": "linf", "l_inf": "linf", "2": "l2"}.get(key, key)
    if key not in NORMS:
        raise ValueError(f"unknown attack norm {norm!r}; valid norms: {', '.join(NORMS)}")
    return key


def check_eps(eps: float, norm: str, name: str = "eps") -> float:
    """eps (pixel units) must be finite, >= 0 and, for linf, <= 1 (the pixel range)."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in pixel units, got {eps!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (pixel units), got {eps!r}")
    if norm == "linf" and value > 1:
        raise ValueError(
            f"{name}={value:g} is beyond the pixel range: images are in [0, 1], so an linf {name} "
            "must be <= 1 (for 8/255 pass 8/255, not 8)"
        )
    return value


def sub_quantum(eps: float, quantize: bool) -> bool:
    """True when 8-bit rounding turns every perturbation of size eps into 0: 0 < eps < 1/255 (pixel units) with
    quantize on (linf and l2: one pixel moved by one level already has norm 1/255)."""
    return bool(quantize) and 0 < float(eps) and float(eps) * LEVELS < 1 - _GRID_TOL


def check_positive(value: float, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return out


def check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(
            f"unknown attack mode {mode!r}; valid modes: eval (model.eval() while crafting, the "
            "caller's mode restored), keep (craft in the model's current mode, for training)"
        )
    return mode


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel/DataParallel: crafting must not trigger DDP's gradient sync."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


@contextlib.contextmanager
def crafting_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """mode="eval": every module in eval mode, each module's own flag restored afterwards (also on error)."""
    if mode == "keep":
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def per_sample_norm(d: Tensor, p: float) -> Tensor:
    """||d_i||_p over all but the batch dimension; shape B."""
    return torch.linalg.vector_norm(d.flatten(1), ord=p, dim=1)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


class Ball:
    """The feasible set {x' : ||x' - x||_p <= eps, 0 <= x' <= 1}, on the 8-bit grid when `quantize`.

    `project_(z)` maps z (modified in place) into the set. linf: clip to [lo, hi] = [x-eps, x+eps] n [0, 1];
    quantised, round to the nearest level inside [lo, hi] (where that interval holds no level, which happens only
    for off-grid x and eps < 1/255, z stays unquantised). l2: radial projection, clip to [0, 1] (clipping only
    shrinks |delta_i|); quantised, round to nearest and, for samples whose rounded delta leaves the ball,
    round every coordinate towards x instead (never increases any |delta_i|). Bounds hold up to float rounding.
    """

    def __init__(self, x: Tensor, eps: float, norm: str, quantize: bool):
        self.x, self.eps, self.norm, self.quantize = x, eps, norm, quantize
        if norm == "linf":
            self.lo = (x - eps).clamp_(min=0.0)
            self.hi = (x + eps).clamp_(max=1.0)
            if quantize:
                self.k_lo = torch.ceil(self.lo * LEVELS - _GRID_TOL)
                self.k_hi = torch.floor(self.hi * LEVELS + _GRID_TOL)
                empty = self.k_lo > self.k_hi
                self.empty = empty if bool(empty.any()) else None

    def project_(self, z: Tensor) -> Tensor:
        if self.norm == "linf":
            z.clamp_(self.lo, self.hi)
            if self.quantize:
                empty = self.empty
                keep = z.clone() if empty is not None else None
                z.mul_(LEVELS).round_().clamp_(self.k_lo, self.k_hi).div_(LEVELS)
                if empty is not None and keep is not None:
                    z.copy_(torch.where(empty, keep, z))
                z.clamp_(self.lo, self.hi)
            return z
        delta = z.sub_(self.x)
        n = per_sample_norm(delta, 2)
        scale = torch.where(n > self.eps, self.eps / n.clamp_min(1e-30), torch.ones_like(n))
        delta.mul_(_bcast(scale, delta))
        z = delta.add_(self.x).clamp_(0.0, 1.0)
        if self.quantize:
            q = torch.round(z * LEVELS).div_(LEVELS)
            over = per_sample_norm(q - self.x, 2) > self.eps
            if bool(over.any()):
                t = torch.where(z >= self.x, torch.floor(z * LEVELS), torch.ceil(z * LEVELS)).div_(LEVELS)
                t = torch.where((t - self.x) * (z - t) >= 0, t, self.x)
                q = torch.where(_bcast(over, q), t, q)
            z.copy_(q)
        return z

    def random_point(self, generator: torch.Generator | None = None, kind: str = "uniform") -> Tensor:
        """x + `random_perturbation` (of this ball's eps and norm), projected into the set."""
        return self.project_(random_perturbation(self.x, self.eps, kind, self.norm, generator).add_(self.x))


def random_perturbation(
    like: Tensor, eps: float, kind: str = "uniform", norm: str = "linf", generator: torch.Generator | None = None
) -> Tensor:
    """The one noise sampler of sspnet: a random delta of like's shape, dtype and device (B x ...), per sample
    inside the eps-ball (pixel units); not clipped to [0, 1] (`Ball.random_point` does that).

    kind "uniform": linf U(-eps, eps) per pixel, l2 uniform in the l2 ball of radius eps. kind "sign": linf +-eps
    per pixel with probability 1/2 each; l2 +-eps/sqrt(d) per pixel (d pixels per sample: on the sphere).
    Draws on the generator's device (like's device without one).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid: {', '.join(NOISE_KINDS)}")
    norm = check_norm(norm)
    eps = check_eps(eps, norm)
    d = math.prod(like.shape[1:])
    if kind == "sign":
        dev = generator.device if generator is not None else like.device
        r = torch.randint(0, 2, like.shape, generator=generator, device=dev).to(like.device, like.dtype)
        scale = eps if norm == "linf" else eps / math.sqrt(max(d, 1))
        return r.mul_(2).sub_(1).mul_(scale)
    if norm == "linf":
        return _rand(like.shape, generator, like).mul_(2 * eps).sub_(eps)
    g = _randn(like.shape, generator, like)
    g.div_(_bcast(per_sample_norm(g, 2).clamp_min(1e-30), g))
    r = _rand((like.shape[0],), generator, like).pow_(1.0 / d).mul_(eps)
    return g.mul_(_bcast(r, g))


def _rand(shape, generator: torch.Generator | None, like: Tensor) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def _randn(shape, generator: torch.Generator | None, like: Tensor) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


class Attack:
    """Base class: `attack(x, y) -> x_adv`, x float B x ... in [0, 1] (uint8 is scaled by 1/255), y int64 B.

    mode="eval" crafts with the model in eval mode and restores every module's own train/eval flag;
    mode="keep" crafts in the current mode (training: BatchNorm statistics then move, as in the original).
    Input gradients only (`torch.autograd.grad`); parameters' `.grad` are never touched.
    """

    name = "attack"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        *,
        norm: str = "linf",
        quantize: bool = False,
        mode: str = "eval",
        generator: torch.Generator | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = unwrap(model)
        self.norm = check_norm(norm)
        self.eps = check_eps(eps, self.norm)
        self.quantize = bool(quantize)
        self.mode = check_mode(mode)
        self.generator = generator
        self.reset_stats()

    # -- gradient diagnostics (for the sanity flags of sspnet.evaluate) --
    def reset_stats(self) -> None:
        self._stats = {"samples": 0, "zero_grad": 0, "nan_grad": 0}
        self._pending: tuple[Tensor, Tensor] | None = None  # running (zero, nan) counts on the device

    def grad_stats(self) -> dict[str, int]:
        """Samples seen and how many had an all-zero / a non-finite (NaN, inf) input gradient at the attack's
        first step."""
        if self._pending is not None:
            self._stats["zero_grad"] += int(self._pending[0])
            self._stats["nan_grad"] += int(self._pending[1])
            self._pending = None
        return dict(self._stats)

    def _record(self, g: Tensor) -> None:
        flat = g.detach().flatten(1)
        zero, nan = (flat.abs().amax(1) == 0).sum(), (~flat.isfinite()).any(1).sum()
        self._stats["samples"] += g.shape[0]
        p = self._pending
        self._pending = (zero, nan) if p is None else (p[0] + zero, p[1] + nan)

    def input_grad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """d(sum of cross-entropy)/dx and the logits; x must be a leaf with requires_grad."""
        with torch.enable_grad():
            logits = self.model(x)
            loss = F.cross_entropy(logits, y, reduction="sum")
            (g,) = torch.autograd.grad(loss, x)
        return g, logits.detach()

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._check(x, y)
        if x.shape[0] == 0:
            return x.clone()
        with crafting_mode(self.model, self.mode):
            return self.perturb(x, y)

    def run(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(x_adv, logits of x_adv): `attack(x, y)` and the model's logits B x K on its result (taken from the
        attack's own forward passes where it has them, e.g. early-stopped PGD, else one extra forward)."""
        x, y = self._check(x, y)
        with crafting_mode(self.model, self.mode):
            if x.shape[0] == 0:
                x_adv, logits = x.clone(), None
            else:
                x_adv, logits = self.craft(x, y)
            if logits is None:
                with torch.no_grad():
                    logits = self.model(x_adv)
        return x_adv, logits.detach()

    def craft(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
        """(x_adv, its logits or None when the attack did not compute them); x, y already checked."""
        return self.perturb(x, y), None

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Warnings the attack raised about the model (AutoAttack's own checks); none for most attacks."""
        return []

    def _check(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise ValueError("attack(x, y) takes tensors: x images B x C x H x W in [0, 1], y int64 labels B")
        if x.dtype == torch.uint8:
            x = x.float().div_(LEVELS)
        if not x.is_floating_point():
            raise ValueError(f"attack inputs must be float images in [0, 1] (or uint8), got dtype {x.dtype}")
        if x.dim() < 2 or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"attack(x, y): x must be B x ... and y of shape B, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.numel():
            lo, hi = torch.aminmax(x.detach())
            if bool(lo < 0) or bool(hi > 1) or bool(torch.isnan(lo)):
                raise ValueError(
                    f"attack inputs must be in [0, 1] (pixels; normalisation is inside the model), got "
                    f"range [{float(lo):.4g}, {float(hi):.4g}]"
                )
        return x.detach(), y.detach().long()

    def _loss_and_wrong(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            logits = self.model(x)
            return F.cross_entropy(logits, y, reduction="none"), logits.argmax(1) != y

    def __repr__(self) -> str:
        keys = ("eps", "alpha", "steps", "norm", "restarts", "copies", "quantize", "mode")
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in keys if hasattr(self, k))
        return f"{type(self).__name__}({args})"


class WorstCase:
    """The per-sample worst of several candidate batches (`keep_worst_` order); `x` is None until the first.
    The first candidate is copied, so the caller's tensors are never modified."""

    def __init__(self) -> None:
        self.x: Tensor | None = None
        self.wrong: Tensor | None = None
        self.loss: Tensor | None = None

    def update(self, cand: Tensor, loss: Tensor, wrong: Tensor) -> Tensor:
        """Take the candidate where it is worse; returns the mask of samples it replaced (all for the first)."""
        best, best_wrong, best_loss = self.x, self.wrong, self.loss
        if best is None or best_wrong is None or best_loss is None:  # the first candidate (all three are set together)
            self.x, self.wrong, self.loss = cand.clone(), wrong.clone(), loss.clone()
            return torch.ones_like(wrong)
        return keep_worst_(best, best_wrong, best_loss, cand, wrong, loss)

    @property
    def best(self) -> Tensor:
        """The worst-case batch so far; RuntimeError before the first `update`."""
        if self.x is None:
            raise RuntimeError("WorstCase.best read before any candidate was offered")
        return self.x


def keep_worst_(
    best: Tensor, best_wrong: Tensor, best_loss: Tensor, cand: Tensor, wrong: Tensor, loss: Tensor
) -> Tensor:
    """Per-sample worst case, in place: misclassified beats correct, then the higher loss wins. Returns the mask
    of samples taken from the candidate."""
    better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
    best[better] = cand[better]
    best_wrong |= wrong
    torch.where(better, loss, best_loss, out=best_loss)
    return better
