"""Global L2 Lipschitz upper bounds of SSP networks, beside the measured growth of `sspnet.eval.growth`.

Every bound is on the Euclidean norm of the flattened per-sample tensor: feature space -> feature space for a
block, pixels -> logits for the network; the model is taken in eval mode (BatchNorm with running statistics),
in float64, its mode restored. Convolutions use the DFT bound of `sspnet.eval.lipschitz_ops`.

- F (`branch_bound`): F = W2 ReLU(n2(W1 ReLU(n1(x)))), Jacobian W2 M2 D2 W1 M1 D1 (M ReLU masks, D the BatchNorm
  diagonals; M1 D1 = D1 M1), so L_F <= ||W2|| ||D2 W1 D1||; a GroupNorm enters as its vacuous scalar.
- A block in Shu-Osher form (`shu_osher_bound`): L_0 = 1, L_i = sum_j (|alpha_ij| + |h beta_ij| L_F) L_j, L = L_s;
  exact for F = c I with c >= 0 and non-negative coefficients (the block is then R(c) I, R with non-negative
  coefficients). h = 0: the block is the identity, bound 1. For res, 1 + h L_F.
- A transition y = F_s(x) + Dd Wd ReLU(n1(x)): L <= ||W2|| ||D2 W1 D1|| + ||Dd Wd D1||.
- Stem and head: products of their layers' bounds (`sequential_bound`); normalize: 1 / min(std).
- The network: the product of all of them (`lipschitz_profile`).
A block's bound is >= 1 + h L_F > 1 for every preset scheme once F != 0 (R(c) = 1 + c + ... with non-negative
coefficients), so it can never show a block contracts; `sspnet.eval.lipschitz_cert` tests forward-Euler
contractivity on the pairs actually seen. `certified_accuracy`
turns the network bound and the logit margins into certified radii.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sspnet.eval.lipschitz_ops import NormFactor, conv_norm_bound, norm_factor, sequential_bound
from sspnet.io.jsonio import to_jsonable
from sspnet.nn.blocks import ResidualBranch, TransitionBlock

Coefs = Sequence[Sequence[float]]


def shu_osher_bound(alpha: Coefs, beta: Coefs, lip_f: float) -> float:
    """L_s of L_0 = 1, L_i = sum_{j<i} (|alpha[i-1][j]| + |beta[i-1][j]| lip_f) L_j: the Lipschitz bound of one RK
    step in Shu-Osher form whose F has Lipschitz bound lip_f. beta includes the step size (`block.shu_osher()`)."""
    ls = [1.0]
    for a_row, b_row in zip(alpha, beta):
        ls.append(sum((abs(a) + abs(b) * lip_f) * lj for a, b, lj in zip(a_row, b_row, ls)))
    return ls[-1]


def _reason(*factors: NormFactor) -> str | None:
    return next((f.reason for f in factors if f.reason), None)


def _shapes(model: Any, input_shape: Sequence[int]) -> dict[nn.Module, tuple[int, ...]]:
    """The input shape (no batch dimension) of every Conv2d, Linear and pooling layer, from one forward of a
    zero image (batch 1) through normalize, stem, groups, transitions and head; the F of a block that never
    calls it (step size 0) is run once on its block's input."""
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
        shapes.setdefault(mod, tuple(args[0].shape[1:]))

    kinds = (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d)
    blocks = [b for g in model.groups for b in g]
    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    handles += [b.register_forward_pre_hook(hook) for b in blocks]
    p = next(model.parameters(), torch.zeros(()))
    x = torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device)
    try:
        h = model.stem(model.normalize(x))
        for j, group in enumerate(model.groups):
            h = group(model.transitions[j - 1](h) if j > 0 else h)
        head = getattr(model, "head", None)
        if head is not None:
            head(h)
        for b in blocks:
            f = getattr(b, "f", None)
            if isinstance(f, ResidualBranch) and f.conv1 not in shapes and b in shapes:
                f(torch.zeros(1, *shapes[b], dtype=p.dtype, device=p.device))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def branch_bound(f: ResidualBranch, shapes: dict[nn.Module, tuple[int, ...]]) -> NormFactor:
    """NormFactor(lip=L_F, reason) of a residual branch: ||W2|| Lip(n2) ||D2 W1 D1|| Lip(n1), D the BatchNorm
    diagonals folded into conv1 (a BatchNorm already folded into conv1, as in an inference copy, is the same)."""
    n1, n2 = norm_factor(f.n1), norm_factor(f.n2)
    inner = conv_norm_bound(f.conv1, shapes[f.conv1], in_scale=n1.scale, out_scale=n2.scale)
    outer = conv_norm_bound(f.conv2, shapes[f.conv2])
    return NormFactor(lip=outer * n2.lip * inner * n1.lip, reason=_reason(n1, n2))


def transition_bound(t: TransitionBlock, shapes: dict[nn.Module, tuple[int, ...]]) -> NormFactor:
    """Bound of y = F_s(x) + Dd Wd ReLU(n1(x)): Lip(n1) (||W2|| Lip(n2) ||D2 W1|| + Lip(nd) ||Dd Wd||), every
    BatchNorm diagonal folded into its conv (D1 into both convs that read ReLU(n1(x)))."""
    f = t.f
    n1, n2 = norm_factor(f.n1), norm_factor(f.n2)
    conv, rest = t.down[0], list(t.down)[1:]
    nd = norm_factor(rest[0]) if rest else NormFactor()
    if not isinstance(conv, nn.Conv2d) or len(rest) > 1:
        raise TypeError("a transition's shortcut must be Conv2d followed by at most one norm layer")
    branch = conv_norm_bound(f.conv2, shapes[f.conv2]) * n2.lip
    branch *= conv_norm_bound(f.conv1, shapes[f.conv1], in_scale=n1.scale, out_scale=n2.scale)
    short = conv_norm_bound(conv, shapes[conv], in_scale=n1.scale, out_scale=nd.scale) * nd.lip
    return NormFactor(lip=n1.lip * (branch + short), reason=_reason(n1, n2, nd))


@dataclass
class BlockBound:
    """One block: group j, index within the group, kind (scheme name), step size h, bound of F and of the block;
    vacuous / reason: the bound is true but far from any useful value (GroupNorm), or there is none (inf)."""

    group: int
    index: int
    kind: str
    step_size: float | None
    f: float
    block: float
    vacuous: bool = False
    reason: str | None = None


@dataclass
class PartBound:
    """The bound of normalize, stem, a transition or the head."""

    name: str
    bound: float
    vacuous: bool = False
    reason: str | None = None


@dataclass
class LipschitzProfile:
    """L2 Lipschitz bounds of a model on input_shape (C x H x W): per block in depth order, per group (product
    of its blocks), stem, transitions (transitions[j - 1] before group j), head and the whole network (pixels
    -> logits). vacuous: some part has a vacuous or no bound (`reasons` says why); seconds: time taken."""

    input_shape: list[int]
    normalize: PartBound
    stem: PartBound
    blocks: list[BlockBound]
    groups: list[float]
    transitions: list[PartBound]
    head: PartBound
    network: float
    vacuous: bool = False
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def block_bounds(self) -> list[float]:
        return [b.block for b in self.blocks]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (inf -> None: no finite bound)."""
        return to_jsonable(self)


def _block_entry(block: Any, j: int, i: int, shapes: dict[nn.Module, tuple[int, ...]]) -> BlockBound:
    scheme = getattr(block, "scheme", None)
    kind = (
        scheme.name if scheme is not None else ("ark" if type(block).__name__ == "ARKBlock" else type(block).__name__)
    )
    f = getattr(block, "f", None)
    if not (hasattr(block, "shu_osher") and isinstance(f, ResidualBranch)):
        return BlockBound(j, i, kind, None, math.nan, math.inf, True, f"no bound for a {type(block).__name__} block")
    h = float(block.step_size)
    try:
        lip = branch_bound(f, shapes)
    except (TypeError, ValueError) as exc:
        return BlockBound(j, i, kind, h, math.nan, math.inf, True, str(exc))
    if h == 0:  # forward returns x itself
        return BlockBound(j, i, kind, h, lip.lip, 1.0)
    alpha, beta = block.shu_osher()
    bound = shu_osher_bound(alpha, beta, lip.lip)
    return BlockBound(j, i, kind, h, lip.lip, bound, lip.reason is not None or math.isinf(bound), lip.reason)


def _part(name: str, module: nn.Module | None, shapes: dict[nn.Module, tuple[int, ...]]) -> PartBound:
    if module is None:
        return PartBound(name, math.inf, True, f"the model has no {name}")
    try:
        if isinstance(module, TransitionBlock):
            factor = transition_bound(module, shapes)
        elif isinstance(module, nn.Sequential):
            factor = sequential_bound(module, shapes)
        elif isinstance(module, nn.Identity):
            factor = NormFactor()
        else:
            raise TypeError(f"no bound for a {type(module).__name__} {name}")
    except (TypeError, ValueError) as exc:
        return PartBound(name, math.inf, True, str(exc))
    return PartBound(name, factor.lip, factor.reason is not None or math.isinf(factor.lip), factor.reason)


def _normalize_part(module: Any) -> PartBound:
    std = getattr(module, "std", None)
    if isinstance(std, Tensor):
        return PartBound("normalize", 1.0 / float(std.detach().to("cpu", torch.float64).abs().min()))
    if isinstance(module, nn.Identity):
        return PartBound("normalize", 1.0)
    return PartBound("normalize", math.inf, True, f"no bound for a {type(module).__name__} normalize")


@torch.no_grad()
def lipschitz_profile(model: Any, input_shape: Sequence[int] | None = None) -> LipschitzProfile:
    """The L2 Lipschitz bounds of an sspnet model (normalize, stem, groups, transitions, head) on inputs of
    input_shape (C x H x W; default the model's dataset spec). Eval mode for the computation, mode restored."""
    start = time.perf_counter()
    if input_shape is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise ValueError("input_shape not given and the model has no dataset spec")
        input_shape = (spec.channels, spec.size, spec.size)
    was_training = model.training
    model.eval()
    try:
        shapes = _shapes(model, input_shape)
        blocks = [_block_entry(b, j, i, shapes) for j, g in enumerate(model.groups) for i, b in enumerate(g)]
        stem = _part("stem", model.stem, shapes)
        transitions = [_part("transition", t, shapes) for t in model.transitions]
        head = _part("head", getattr(model, "head", None), shapes)
        norm = _normalize_part(model.normalize)
    finally:
        model.train(was_training)
    groups = [math.prod(b.block for b in blocks if b.group == j) for j in range(len(model.groups))]
    parts: list[Any] = [norm, stem, *transitions, head, *blocks]
    network = math.prod([norm.bound, stem.bound, *groups, *(t.bound for t in transitions), head.bound])
    reasons = list(dict.fromkeys(p.reason for p in parts if p.reason))
    return LipschitzProfile(
        input_shape=[int(v) for v in input_shape],
        normalize=norm,
        stem=stem,
        blocks=blocks,
        groups=groups,
        transitions=transitions,
        head=head,
        network=network,
        vacuous=any(p.vacuous for p in parts),
        reasons=reasons,
        seconds=time.perf_counter() - start,
    )


@dataclass
class CertifiedAccuracy:
    """Certification from margins: an image is certified at L2 radius r when it is classified correctly and its
    margin z_y - max_{j != y} z_j exceeds sqrt(2) * bound * r (z_y - z_j is sqrt(2) bound-Lipschitz).
    radius: the L2 radius checked (eps for l2, eps sqrt(C H W) for linf: the L2 ball holding the linf ball);
    accuracy (margin > 0) / certified: fractions of the n images; median_radius: median over the images of the
    certified L2 radius margin / (sqrt(2) bound), 0 for a misclassified image."""

    norm: str
    eps: float
    radius: float
    bound: float
    n: int
    accuracy: float
    certified: float
    median_radius: float


@torch.no_grad()
def certified_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "linf",
    bound: float | None = None,
    batch_size: int = 256,
) -> CertifiedAccuracy:
    """Clean accuracy and the fraction certified at radius eps (pixel units, `norm` linf | l2) of images x
    (N x C x H x W in [0, 1]) with labels y, from the network bound (default `lipschitz_profile(model).network`)."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be linf or l2, got {norm!r}")
    if x.shape[0] == 0:
        raise ValueError("certified_accuracy needs at least one image")
    lip = lipschitz_profile(model, tuple(x.shape[1:])).network if bound is None else float(bound)
    radius = float(eps) * (math.sqrt(x[0].numel()) if norm == "linf" else 1.0)
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(x[s : s + batch_size]).double() for s in range(0, x.shape[0], batch_size)])
    finally:
        model.train(was_training)
    y = y.to(logits.device).long()
    top = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), -math.inf).amax(1)
    margin = (top - others).cpu()
    correct = margin > 0
    scale = math.sqrt(2.0) * lip
    radii = torch.where(correct, margin / scale if scale > 0 else torch.full_like(margin, math.inf), 0.0)
    certified = correct & (margin > scale * radius) if math.isfinite(scale) else torch.zeros_like(correct)
    return CertifiedAccuracy(
        norm=norm,
        eps=float(eps),
        radius=radius,
        bound=lip,
        n=int(x.shape[0]),
        accuracy=float(correct.double().mean()),
        certified=float(certified.double().mean()),
        median_radius=float(statistics.median(radii.tolist())),
    )


__all__ = [
    "BlockBound",
    "CertifiedAccuracy",
    "LipschitzProfile",
    "PartBound",
    "branch_bound",
    "certified_accuracy",
    "lipschitz_profile",
    "shu_osher_bound",
    "transition_bound",
]
