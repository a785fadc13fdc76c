"""Network blocks: the residual branch F, the generic RK-step block, the adaptive ARK block, the transition.

All blocks map B x C x H x W -> B x C' x H' x W' feature maps (normalised-input space, not pixels).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from sspnet.nn.schemes import Scheme

NORMS = {
    "b": "BatchNorm",
    "g": "GroupNorm(min(32, C) groups)",
    "l": "GroupNorm(1 group, LayerNorm-like)",
    "i": "GroupNorm(C groups, InstanceNorm-like)",
}


def make_norm(norm: str, channels: int) -> nn.Module:
    """The original's norm letters: b BatchNorm2d, g GroupNorm(min(32,C)), l GroupNorm(1), i GroupNorm(C)."""
    if norm == "b":
        return nn.BatchNorm2d(channels)
    if norm == "g":
        return nn.GroupNorm(min(32, channels), channels)
    if norm == "l":
        return nn.GroupNorm(1, channels)
    if norm == "i":
        return nn.GroupNorm(channels, channels)
    raise ValueError(f"unknown norm {norm!r}; valid norms: " + ", ".join(f"{k} ({v})" for k, v in NORMS.items()))


class ResidualBranch(nn.Module):
    """F: Norm -> ReLU -> Conv3x3(stride) -> Norm -> ReLU -> Conv3x3, convs with bias (the original's F)."""

    def __init__(self, c_in: int, c_out: int, norm: str, stride: int = 1):
        super().__init__()
        self.n1 = make_norm(norm, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=True)
        self.n2 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=True)

    def pre(self, x: Tensor) -> Tensor:
        """ReLU(n1(x)), the part a transition shares with its shortcut. The ReLUs run in place on the norm's
        output (no norm layer saves its output for backward): one activation buffer less per stage."""
        return torch.relu_(self.n1(x))

    def rest(self, a: Tensor) -> Tensor:
        return self.conv2(torch.relu_(self.n2(self.conv1(a))))

    def forward(self, x: Tensor) -> Tensor:
        return self.rest(self.pre(x))


Coef = float | Tensor


def _combine(terms: list[tuple[Coef, Tensor]]) -> Tensor | None:
    """sum_k c_k v_k with few kernels: float terms with equal coefficients are summed before one scaling
    (SSPRK(2,2)'s last stage, 1/2 (x + u1 + F(u1)), is 2 adds and 1 multiply instead of 3 and 2); a lone
    float term rides on the add (`torch.add(acc, v, alpha=c)`); tensor (learned) coefficients multiply."""
    groups: dict[float, list[Tensor]] = {}
    learned: list[Tensor] = []
    for c, v in terms:
        if isinstance(c, Tensor):
            learned.append(v * c)
        else:
            groups.setdefault(float(c), []).append(v)
    acc: Tensor | None = None
    for c, vs in groups.items():
        if len(vs) == 1 and acc is not None:
            acc = torch.add(acc, vs[0], alpha=c)
            continue
        part = vs[0]
        for v in vs[1:]:
            part = part + v
        part = part if c == 1.0 else part * c
        acc = part if acc is None else acc + part
    for v in learned:
        acc = v if acc is None else acc + v
    return acc


def rk_step(
    f: Callable[[Tensor], Tensor], x: Tensor, alpha: Sequence[Sequence[Coef]], beta: Sequence[Sequence[Coef]]
) -> Tensor:
    """One explicit RK step in Shu-Osher form with u_0 = x (see `sspnet.schemes`).

    Coefficients may be floats (a float 0 is skipped) or 0-d tensors (learned). F(u_j) is evaluated once,
    lazily, and only if some beta uses it; u_j is dropped as soon as no later stage needs it.
    """
    s = len(alpha)

    def used(c: Coef) -> bool:
        return isinstance(c, Tensor) or c != 0

    last_u = [-1] * s  # the last stage that reads u_j or F(u_j)
    for j in range(s):
        for i in range(j, s):
            if used(alpha[i][j]) or used(beta[i][j]):
                last_u[j] = i
    us: dict[int, Tensor] = {0: x}
    fs: dict[int, Tensor] = {}
    for i in range(s):
        if any(used(beta[k][i]) for k in range(i, s)):
            fs[i] = f(us[i])
        terms: list[tuple[Coef, Tensor]] = []
        for j in range(i + 1):  # u_j and F(u_j) are still held wherever a coefficient uses them
            if used(alpha[i][j]):
                terms.append((alpha[i][j], us[j]))
            if used(beta[i][j]):
                terms.append((beta[i][j], fs[j]))
        acc = _combine(terms)
        for j in range(i + 1):
            if last_u[j] <= i:
                us.pop(j, None)
                fs.pop(j, None)
        if acc is None:
            raise ValueError(f"stage {i + 1} of the scheme is identically zero")
        us[i + 1] = acc
    return us[s]


def check_step_size(h: object) -> float:
    """The step size h as a float; ValueError unless it is a finite number >= 0 (0: the block is the identity)."""
    if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h < 0:
        raise ValueError(f"step size must be a finite number >= 0 (1: the scheme as written), got {h!r}")
    return float(h)


class RKBlock(nn.Module):
    """y = one step of `scheme` with step size h on F, all stages sharing one F (its weights and norm layers).

    The step size scales every beta: u_i = sum_j alpha_ij u_j + h beta_ij F(u_j), so h = 1 is the scheme as
    written (res: y = x + F(x)), h = 0 the identity (F is never called) and res with h is y = x + h F(x).
    """

    def __init__(self, channels: int, norm: str, scheme: Scheme, step_size: float = 1.0):
        super().__init__()
        self.scheme = scheme
        self.step_size = check_step_size(step_size)
        self.f = ResidualBranch(channels, channels, norm)
        self._beta = tuple(tuple(self.step_size * b for b in row) for row in scheme.beta)
        self.f_calls = scheme.f_calls if self.step_size > 0 else 0

    def shu_osher(self) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
        """(alpha, h * beta) of this block as floats: what `forward` computes."""
        return tuple(tuple(float(a) for a in row) for row in self.scheme.alpha), self._beta

    def forward(self, x: Tensor) -> Tensor:
        if self.step_size == 0:  # sum_j alpha_ij x = x, exactly (1/3 x + 2/3 x need not round back to x)
            return x
        return rk_step(self.f, x, self.scheme.alpha, self._beta)

    def extra_repr(self) -> str:
        h = "" if self.step_size == 1.0 else f", step_size={self.step_size:g}"
        return f"scheme={self.scheme.name}, stages={self.scheme.stages}{h}"


class ARKBlock(nn.Module):
    """Adaptive 2-stage RK: c2 = b = sigmoid(b10) learned; y = x + h (1 - 1/(2b)) F(x) + h/(2b) F(x + h b F(x)).

    This is the original `ark` update (h = 1) with its a-terms cancelled (its output does not depend on a =
    sigmoid(a21)); `a21` and `b10` are kept as 1-element parameters for checkpoint compatibility.
    freeze_a / freeze_b really freeze (requires_grad False). Exactly 2 F calls per forward (none for h = 0).
    """

    def __init__(
        self,
        channels: int,
        norm: str,
        a21: float = 0.25,
        b10: float = 1.0,
        freeze_a: bool = True,
        freeze_b: bool = False,
        step_size: float = 1.0,
    ):
        super().__init__()
        self.step_size = check_step_size(step_size)
        self.f_calls = 2 if self.step_size > 0 else 0
        self.f = ResidualBranch(channels, channels, norm)
        self.a21 = nn.Parameter(torch.tensor([float(a21)]), requires_grad=not freeze_a)
        self.b10 = nn.Parameter(torch.tensor([float(b10)]), requires_grad=not freeze_b)

    @property
    def c2(self) -> Tensor:
        return torch.sigmoid(self.b10[0])

    def _coefficients(self, b: Coef) -> tuple[list[list[Coef]], list[list[Coef]]]:
        h, w2 = self.step_size, 0.5 / b
        if h == 0:
            return [[1.0], [1.0, 0.0]], [[0.0], [0.0, 0.0]]
        return [[1.0], [1.0, 0.0]], [[h * b], [h * (1.0 - w2), h * w2]]

    def shu_osher(self) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
        """(alpha, h * beta) at the current c2, as floats: what `forward` computes."""
        alpha, beta = self._coefficients(float(self.c2.detach()))
        return tuple(tuple(float(v) for v in r) for r in alpha), tuple(tuple(float(v) for v in r) for r in beta)

    def forward(self, x: Tensor) -> Tensor:
        if self.step_size == 0:
            return x
        alpha, beta = self._coefficients(self.c2)
        return rk_step(self.f, x, alpha, beta)

    def extra_repr(self) -> str:
        h = "" if self.step_size == 1.0 else f", step_size={self.step_size:g}"
        return (
            f"c2={self.c2.item():.4f}, a21 frozen={not self.a21.requires_grad}, "
            f"b10 frozen={not self.b10.requires_grad}{h}"
        )


class TransitionBlock(nn.Module):
    """Stride-2 block: y = F_s(x) + D(ReLU(n1(x))), D = Conv1x1(stride 2, no bias) -> Norm; n1 shared."""

    f_calls = 1

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__()
        self.f = ResidualBranch(c_in, c_out, norm, stride=2)
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), make_norm(norm, c_out))

    def forward(self, x: Tensor) -> Tensor:
        a = self.f.pre(x)
        return self.f.rest(a) + self.down(a)


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Within the context BatchNorm layers in `module` normalise with batch statistics as usual but leave their
    running statistics untouched (momentum 0). Used when activation checkpointing re-runs a forward."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (mom, nbt) in zip(bns, saved):
            m.momentum = mom
            if nbt is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(nbt)


def init_original(model: nn.Module, blocks: int, upscale: bool = True) -> None:
    """The original CIFAR/Tiny init: conv/linear weights kaiming_uniform(a = sqrt(5) * N if upscale else
    sqrt(5)), biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BatchNorm weight U(0, 1) and bias 0."""
    a = math.sqrt(5) * (blocks if upscale else 1)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=a)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(m.bias, -bound, bound)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.0, 1.0)
            nn.init.zeros_(m.bias)


def init_kaiming(model: nn.Module) -> None:
    """He-normal (fan_out, ReLU) convs, zero biases, unit norms: a common modern ResNet init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
