"""L2 operator norms of the layers of an SSP network (float64, on the CPU): the pieces of `sspnet.eval.lipschitz`.

Convolution (`conv_norm_bound`): a Conv2d with zero padding p, stride s and kernel k on an n x n input reads
the zero-padded input x_pad (length n + 2p per axis) as y[o] = sum_t K[t] x_pad[s o + t]. Split x_pad into its
s^2 phases X_q[r] = x_pad[s r + q] and the kernel alike (K_q[a] = K[s a + q]): y = sum_q K_q * X_q, a stride-1
valid conv with s^2 c_in input channels and kernel ceil(k / s) on a grid of N = ceil((n + 2p) / s). The map x ->
(X_q) only embeds and reorders coordinates (an isometry onto its image), and the valid conv is a crop of the
circular conv of the zero-embedded phases on an m-torus with m >= N and m >= the output size: every tap with a
non-zero weight reads an index < N, so none wraps. Cropping has norm <= 1, so the conv's norm is at most the
circular conv's, whose singular values are those of the c_out x (s^2 c_in) matrices K_hat(w) (2-D DFT of the
polyphase kernel zero-padded to m x m) over all m^2 frequencies (Sedghi, Gupta and Long, ICLR 2019). For s = 1
this is the plain kernel on an (n + 2p)-torus (n + k - 1 for "same" padding). Bounding the strided conv by the
stride-1 one (subsampling has norm <= 1) is valid too but loose: power iteration reached 0.6 and 0.8 of it on
two random stride-2 convs, and 0.97 and 0.996 of this bound. `conv_norm_power` estimates the norm from below.

Norm layers (`norm_factor`): an eval-mode BatchNorm is x -> d * x + shift per channel, d = gamma /
sqrt(running_var + eps); the diagonal d is folded into the adjacent conv (`in_scale` / `out_scale`). A
GroupNorm's Jacobian is Gamma (P - z z^T / n) / sigma per group (P the centring projector, z the normalised
group, ||z||^2 / n = var / (var + eps) < 1), whose norm is <= max|gamma| / sigma <= max|gamma| / sqrt(eps): a true
bound, approached as a group's variance tends to 0, and vacuous (316 max|gamma| at eps 1e-5).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

GN_REASON = "GroupNorm has no global Lipschitz bound better than max|gamma|/sqrt(eps)"
BN_BATCH_REASON = "BatchNorm without running statistics normalises with batch statistics: no per-sample bound"


def _f64(t: Tensor) -> Tensor:
    return t.detach().to("cpu", torch.float64)


def _hw(n: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(n, int):
        return n, n
    h, w = n[-2], n[-1]
    return int(h), int(w)


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    """A Conv2d's numeric (height, width) padding; ValueError for a padding string ("same", "valid")."""
    if isinstance(conv.padding, str):
        raise ValueError(f"conv_norm_bound needs numeric padding, got {conv.padding!r}")
    h, w = conv.padding
    return int(h), int(w)


def _scaled_kernel(conv: nn.Conv2d, in_scale: Tensor | None, out_scale: Tensor | None) -> Tensor:
    """The conv's kernel (c_out x c_in x kh x kw, float64) times diag(out_scale) on the left, diag(in_scale) on
    the right; ValueError for what the bound does not cover (groups, dilation, non-zero padding modes)."""
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
        raise ValueError("conv_norm_bound covers Conv2d with groups=1, dilation=1 and zero padding only")
    _padding(conv)
    w = _f64(conv.weight)
    if in_scale is not None:
        w = w * _f64(in_scale).view(1, -1, 1, 1)
    if out_scale is not None:
        w = w * _f64(out_scale).view(-1, 1, 1, 1)
    return w


def _polyphase(w: Tensor, stride: tuple[int, int]) -> Tensor:
    """The stride-1 kernel c_out x (c_in s_h s_w) x ceil(kh/s_h) x ceil(kw/s_w) of a strided kernel: entry
    [:, (q_h, q_w, c), a_h, a_w] = w[:, c, s_h a_h + q_h, s_w a_w + q_w] (0 past the kernel)."""
    sh, sw = stride
    c_out, c_in, kh, kw = w.shape
    ah, aw = -(-kh // sh), -(-kw // sw)
    padded = torch.nn.functional.pad(w, (0, aw * sw - kw, 0, ah * sh - kh))
    phases = padded.view(c_out, c_in, ah, sh, aw, sw).permute(0, 3, 5, 1, 2, 4)  # c_out, q_h, q_w, c_in, a_h, a_w
    return phases.reshape(c_out, sh * sw * c_in, ah, aw)


def torus_size(conv: nn.Conv2d, n: int | tuple[int, ...]) -> tuple[int, int]:
    """The torus (m_h, m_w) of the wrap-around argument: per axis max(ceil((n + 2p) / s), output size, ceil(k / s))."""
    out = []
    for size, k, p, s in zip(_hw(n), conv.kernel_size, _padding(conv), conv.stride):
        padded = size + 2 * p
        out.append(max(-(-padded // s), (padded - k) // s + 1, -(-k // s)))
    return out[0], out[1]


def conv_norm_bound(
    conv: nn.Conv2d,
    n: int | tuple[int, ...],
    in_scale: Tensor | None = None,
    out_scale: Tensor | None = None,
) -> float:
    """Upper bound on the L2 norm of x -> diag(out_scale) conv(diag(in_scale) x) (bias ignored) on an n x n (or
    H x W) input: the largest singular value of the DFT symbol of the polyphase kernel over the torus of
    `torus_size` (module docstring). in_scale: c_in, out_scale: c_out per-channel factors (e.g. folded
    BatchNorm), None for ones."""
    w = _polyphase(_scaled_kernel(conv, in_scale, out_scale), _hw(tuple(conv.stride)))
    c_out, c_in = w.shape[:2]
    (m_h, m_w), (k_h, k_w) = torus_size(conv, n), w.shape[-2:]
    # the DFT of the kernel zero-padded to m_h x m_w, as two small matrix products (kernels are small). Half the
    # spectrum: a real kernel's K_hat(-w) is the conjugate of K_hat(w), with the same singular values
    f_h = torch.exp(-2j * math.pi * torch.outer(torch.arange(m_h), torch.arange(k_h)).double() / m_h)
    f_w = torch.exp(-2j * math.pi * torch.outer(torch.arange(m_w // 2 + 1), torch.arange(k_w)).double() / m_w)
    mats = torch.einsum("ua,vb,oiab->uvoi", f_h, f_w, w.to(torch.complex128)).reshape(-1, c_out, c_in)
    gram = mats @ mats.mH if c_out <= c_in else mats.mH @ mats  # sigma_max^2 = top eigenvalue, smaller side
    with _one_thread():  # thousands of tiny eigenproblems: threads only contend (seconds on a busy 2-core CPU)
        top = float(torch.linalg.eigvalsh(gram)[:, -1].max())
    return math.sqrt(max(top, 0.0))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch's intra-op threads set to 1 inside, the caller's count restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def conv_norm_power(
    conv: nn.Conv2d,
    in_shape: tuple[int, ...],
    in_scale: Tensor | None = None,
    out_scale: Tensor | None = None,
    iters: int = 200,
    seed: int = 0,
) -> float:
    """Lower estimate of the same norm: ||A x|| for the unit x that `iters` power iterations on A^T A reach,
    A the real zero-padded strided operator (conv2d, adjoint conv_transpose2d) on a C x H x W input."""
    w = _scaled_kernel(conv, in_scale, out_scale)
    c, h, wd = in_shape[-3:]
    stride, pad = _hw(tuple(conv.stride)), _padding(conv)

    def a(x: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)

    def a_t(y: Tensor, size: tuple[int, int]) -> Tensor:
        extra = tuple(
            n - ((o - 1) * s - 2 * p + k) for n, o, s, p, k in zip(size, y.shape[-2:], stride, pad, w.shape[-2:])
        )  # output_padding that restores the input size (always < stride)
        return torch.nn.functional.conv_transpose2d(y, w, stride=stride, padding=pad, output_padding=extra)

    x = torch.randn(1, c, h, wd, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x = x / torch.linalg.vector_norm(x)
    with torch.no_grad():
        for _ in range(iters):
            g = a_t(a(x), (h, wd))
            norm = torch.linalg.vector_norm(g)
            if norm == 0:
                return 0.0
            x = g / norm
        return float(torch.linalg.vector_norm(a(x)))


def linear_norm(linear: nn.Linear, in_scale: Tensor | None = None) -> float:
    """Spectral norm of W diag(in_scale) (bias ignored)."""
    w = _f64(linear.weight)
    if in_scale is not None:
        w = w * _f64(in_scale).view(1, -1)
    return float(torch.linalg.matrix_norm(w, ord=2))


@dataclass(frozen=True)
class NormFactor:
    """A norm layer's Jacobian bound: diag(scale) (per channel, float64; None: identity) times the scalar `lip`;
    reason: why that scalar makes the bound vacuous (None where it does not)."""

    scale: Tensor | None = None
    lip: float = 1.0
    reason: str | None = None


def norm_factor(layer: nn.Module) -> NormFactor:
    """The factor of a norm layer in eval mode: BatchNorm -> diag(gamma / sqrt(running_var + eps)); GroupNorm ->
    max|gamma| / sqrt(eps) (vacuous); Identity -> 1. TypeError for any other layer."""
    if isinstance(layer, nn.Identity):
        return NormFactor()
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        if layer.running_var is None:
            return NormFactor(lip=math.inf, reason=BN_BATCH_REASON)
        var = _f64(layer.running_var)
        gamma = _f64(layer.weight) if layer.weight is not None else torch.ones_like(var)
        return NormFactor(scale=gamma / torch.sqrt(var + layer.eps))
    if isinstance(layer, nn.GroupNorm):
        top = float(_f64(layer.weight).abs().max()) if layer.weight is not None else 1.0
        return NormFactor(lip=top / math.sqrt(layer.eps), reason=GN_REASON)
    raise TypeError(f"no Lipschitz factor for a {type(layer).__name__} norm layer")


def _top(scale: Tensor | None) -> float:
    return 1.0 if scale is None else float(scale.abs().max())


_PASS = (nn.ReLU, nn.Identity, nn.Flatten, nn.Dropout)  # 1-Lipschitz, commute with a per-channel diagonal


def sequential_bound(layers: nn.Sequential, shapes: dict[nn.Module, tuple[int, ...]]) -> NormFactor:
    """Bound of a stem or head (Conv2d, BatchNorm2d, GroupNorm, ReLU, Identity, Flatten, AdaptiveAvgPool2d(1),
    Linear), as NormFactor(lip=bound, reason). shapes: each layer's input shape (C x H x W or features).

    A BatchNorm right after a conv (ReLUs between allowed: diagonal masks commute with diagonals) is folded into
    it as out_scale; any other BatchNorm waits for the next conv/linear (in_scale), passing ReLUs and the global
    average pool (which commutes with a per-channel scale; its own norm is 1/sqrt(H*W)). A GroupNorm multiplies
    by its vacuous factor. A layer of another kind raises TypeError."""
    mods = list(layers)
    total, pending, reason = 1.0, None, None
    folded: set[int] = set()
    for i, layer in enumerate(mods):
        if i in folded or isinstance(layer, _PASS):
            continue
        if isinstance(layer, nn.Conv2d):
            nxt = next((k for k in range(i + 1, len(mods)) if not isinstance(mods[k], _PASS)), None)
            out_scale = None
            if nxt is not None and isinstance(mods[nxt], nn.BatchNorm2d):
                factor = norm_factor(mods[nxt])
                if factor.scale is not None:
                    out_scale = factor.scale
                    folded.add(nxt)
            total *= conv_norm_bound(layer, shapes[layer], in_scale=pending, out_scale=out_scale)
            pending = None
        elif isinstance(layer, nn.Linear):
            total *= linear_norm(layer, in_scale=pending)
            pending = None
        elif isinstance(layer, nn.AdaptiveAvgPool2d):
            if layer.output_size not in (1, (1, 1)):
                raise TypeError("sequential_bound covers the global average pool (output size 1) only")
            h, w = _hw(shapes[layer])
            total /= math.sqrt(h * w)
        elif isinstance(layer, (nn.BatchNorm2d, nn.GroupNorm)):
            factor = norm_factor(layer)
            if factor.scale is not None:
                pending = factor.scale if pending is None else pending * factor.scale
            else:
                total *= _top(pending) * factor.lip
                pending, reason = None, reason or factor.reason
        else:
            raise TypeError(f"no Lipschitz bound for a {type(layer).__name__} layer")
    return NormFactor(lip=total * _top(pending), reason=reason)


__all__ = [
    "BN_BATCH_REASON",
    "GN_REASON",
    "NormFactor",
    "conv_norm_bound",
    "conv_norm_power",
    "linear_norm",
    "norm_factor",
    "sequential_bound",
    "torus_size",
]
