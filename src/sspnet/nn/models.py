"""SSP networks for MNIST/Fashion-MNIST, CIFAR-10 and TinyImageNet, and the model registry.

Every model takes float images in [0, 1] of shape B x C x H x W (the dataset's normalisation is a buffer
inside the model) and returns logits B x num_classes. `model.config` rebuilds it: `create_model(**model.config)`.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sspnet.nn.blocks import ARKBlock, RKBlock, TransitionBlock, frozen_batchnorm_stats, init_kaiming, init_original, make_norm
from sspnet.nn.schemes import PRESETS, Scheme, get_scheme
from sspnet.data.specs import DatasetSpec, get_dataset_spec

ARK_DEFAULTS = {"mnist": (-1.0, 0.5), "cifar10": (0.25, 1.0), "tinyimagenet": (0.25, 1.0)}
ARK_GROUPS = {"mnist": ("ark",), "cifar10": ("ark", "res", "ssp2"), "tinyimagenet": ("ark", "res", "ssp2", "ssp2")}
WIDTHS = {"mnist": (64,), "cifar10": (16, 32, 64), "tinyimagenet": (16, 32, 64, 128)}
INITS = ("original", "torch", "kaiming")


class Normalize(nn.Module):
    """(x - mean) / std per channel; identity when mean is None. Buffers mean/std of shape 1 x C x 1 x 1."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int):
        super().__init__()
        mean = mean if mean is not None else [0.0] * channels
        std = std if std is not None else [1.0] * channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class SSPNet(nn.Module):
    """normalize -> stem -> group_1 -> transition_1 -> group_2 ... -> head.

    groups: nn.ModuleList of nn.Sequential blocks; transitions[j-1] sits before groups[j].
    """

    def __init__(self, spec: DatasetSpec, stem: nn.Module, groups: list[nn.Sequential],
                 transitions: list[nn.Module], head: nn.Module, config: dict[str, Any],
                 activation_checkpointing: bool = False):
        super().__init__()
        self.spec = spec
        self.normalize = Normalize(spec.mean, spec.std, spec.channels)
        self.stem = stem
        self.groups = nn.ModuleList(groups)
        self.transitions = nn.ModuleList(transitions)
        self.head = head
        self.config = config
        self.activation_checkpointing = activation_checkpointing

    def _check_input(self, x: Tensor) -> None:
        s = self.spec
        if x.dim() != 4 or x.shape[1] != s.channels or x.shape[2] != s.size or x.shape[3] != s.size:
            raise ValueError(f"{self.config['dataset']} model expects input B x {s.channels} x {s.size} x {s.size} "
                             f"in [0, 1], got shape {tuple(x.shape)}")

    def run_group(self, j: int, h: Tensor) -> Tensor:
        """Apply the blocks of group j (feature space) with optional activation checkpointing."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            for block in self.groups[j]:
                h = checkpoint(block, h, use_reentrant=False,
                               context_fn=lambda b=block: (contextlib.nullcontext(), frozen_batchnorm_stats(b)))
            return h
        return self.groups[j](h)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        h = self.stem(self.normalize(x))
        for j in range(len(self.groups)):
            if j > 0:
                h = self.transitions[j - 1](h)
            h = self.run_group(j, h)
        return self.head(h)

    @property
    def f_calls_per_block(self) -> list[int]:
        """F evaluations of each RK block, in depth order (transitions excluded)."""
        return [b.f_calls for g in self.groups for b in g]


def _block(kind: str | Scheme, channels: int, norm: str, arch: str, ark: dict[str, Any]) -> nn.Module:
    if kind == "ark":
        a21, b10 = ARK_DEFAULTS[arch]
        return ARKBlock(channels, norm, a21=ark.get("a21", a21), b10=ark.get("b10", b10),
                        freeze_a=ark.get("freeze_a", True), freeze_b=ark.get("freeze_b", False))
    return RKBlock(channels, norm, get_scheme(kind))


def _build(spec: DatasetSpec, groups: Sequence[str | Scheme], blocks: int, norm: str, ark: dict[str, Any],
           config: dict[str, Any], activation_checkpointing: bool) -> SSPNet:
    arch = spec.arch
    widths = WIDTHS[arch]
    if arch == "mnist":
        c = widths[0]
        stem = nn.Sequential(nn.Conv2d(spec.channels, c, 3, 1, 0), make_norm(norm, c), nn.ReLU(inplace=True),
                             nn.Conv2d(c, c, 4, 2, 1), make_norm(norm, c), nn.ReLU(inplace=True),
                             nn.Conv2d(c, c, 4, 2, 1))
        head = nn.Sequential(make_norm(norm, c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(c, spec.num_classes))
        transitions = []
    else:
        stem = nn.Sequential(nn.Conv2d(spec.channels, widths[0], 3, 1, 1, bias=True))
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], spec.num_classes))
        transitions = [TransitionBlock(widths[j], widths[j + 1], norm) for j in range(len(widths) - 1)]
    group_mods = [nn.Sequential(*[_block(kind, widths[j], norm, arch, ark) for _ in range(blocks)])
                  for j, kind in enumerate(groups)]
    return SSPNet(spec, stem, group_mods, transitions, head, config, activation_checkpointing)


def create_model(scheme: str | Scheme | dict = "ssp2", dataset: str = "cifar10", blocks: int | None = None,
                 norm: str | None = None, groups: Sequence[str | Scheme | dict] | None = None,
                 init: str | None = None, upscale: bool | None = None, a21: float | None = None,
                 b10: float | None = None, freeze_a: bool | None = None, freeze_b: bool | None = None,
                 activation_checkpointing: bool = False, seed: int | None = None) -> SSPNet:
    """Build an SSP network.

    scheme: a registered scheme name (see `list_models()`), "ark", a Scheme, a dict description, or a
        JSON/YAML scheme file path. Used for every group unless `groups` is given; "ark" on CIFAR/Tiny means the
        paper's SSP-adap composition (ark, res, ssp2[, ssp2]).
    dataset: mnist5k | mnist | fmnist | cifar10 | tiny (alias tinyimagenet); picks architecture and input
        normalisation. blocks: N blocks per group (default: the dataset's). norm: b | g | l | i.
    groups: one scheme per group (1 for mnist, 3 for cifar10, 4 for tiny), overriding `scheme`.
    init: "original" (CIFAR/Tiny default; `upscale` scales kaiming's a by N), "torch" (MNIST default), "kaiming".
    a21, b10, freeze_a, freeze_b: ARK block options (defaults per architecture; a frozen, b trainable).
    activation_checkpointing: recompute each block in backward to save memory (training only).
    seed: if given, parameters are initialised from torch.manual_seed(seed).
    """
    spec = get_dataset_spec(dataset)
    arch = spec.arch
    n_groups = len(WIDTHS[arch])
    if blocks is None:
        blocks = spec.blocks
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks must be an integer >= 1 (blocks per group), got {blocks!r}")
    norm = spec.norm if norm is None else norm
    make_norm(norm, 4)  # validates the letter
    init = ("torch" if arch == "mnist" else "original") if init is None else init
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    upscale = True if upscale is None else bool(upscale)

    def resolve(kind: Any) -> str | dict:
        if isinstance(kind, str) and kind == "ark":
            return "ark"
        s = get_scheme(kind)
        return s.name if PRESETS.get(s.name) == s else s.to_dict()

    scheme_key = resolve(scheme)
    if groups is None:
        kinds = list(ARK_GROUPS[arch]) if scheme_key == "ark" else [scheme_key] * n_groups
    else:
        if isinstance(groups, str):
            groups = [g.strip() for g in groups.split(",")]
        kinds = [resolve(g) for g in groups]
        if len(kinds) != n_groups:
            raise ValueError(f"groups must name {n_groups} scheme(s) for the {arch} architecture "
                             f"(one per block group), got {len(kinds)}")
    ark = {k: v for k, v in dict(a21=a21, b10=b10, freeze_a=freeze_a, freeze_b=freeze_b).items() if v is not None}
    config = {"scheme": scheme_key, "dataset": spec.name, "blocks": blocks, "norm": norm, "groups": kinds,
              "init": init, "upscale": upscale, **ark}
    block_kinds = [k if isinstance(k, str) else Scheme.from_dict(k) for k in kinds]
    with _seeded(seed):
        model = _build(spec, block_kinds, blocks, norm, ark, config, activation_checkpointing)
        if init == "original":
            init_original(model, blocks, upscale)
        elif init == "kaiming":
            init_kaiming(model)
    return model


def preferred_memory_format(model: nn.Module, device: torch.device | str | None = None) -> torch.memory_format:
    """The faster layout for `model` on `device` (default: the model's): channels_last on CUDA; on CPU
    channels_last unless the model has GroupNorm layers. Measured on a 2-core CPU (benchmarks, case `layout`):
    oneDNN's NHWC convolutions make a BatchNorm model's training step 1.2-1.4x faster, but PyTorch's NHWC
    GroupNorm is slow enough on CPU that a GroupNorm MNIST model's step is slower in channels_last."""
    if device is None:
        device = next((t.device for t in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    if device.type == "cuda":
        return torch.channels_last
    if device.type == "cpu" and not any(isinstance(m, nn.GroupNorm) for m in model.modules()):
        return torch.channels_last
    return torch.contiguous_format


def _fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution computing bn(conv(x)) with bn's running statistics (eval mode)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
    fmt = (torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last)
           and not conv.weight.is_contiguous() else torch.contiguous_format)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused.to(memory_format=fmt)


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` for attacks, scoring and growth, in its preferred memory layout
    (`preferred_memory_format`) and with frozen parameters. Every BatchNorm that directly follows a convolution
    (F's n2 after conv1, a transition's shortcut norm) is folded into that convolution, so each F call runs one
    normalisation kernel less forward and backward (PGD evaluation ~7% faster on a CPU). Outputs equal the
    model's eval-mode outputs up to float rounding; the caller's model is untouched."""
    from sspnet.nn.blocks import ResidualBranch, TransitionBlock

    copy_ = copy.deepcopy(model).eval()
    copy_ = copy_.to(memory_format=preferred_memory_format(copy_))

    def foldable(bn: nn.Module) -> bool:
        return isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.running_var is not None

    for m in copy_.modules():
        if isinstance(m, ResidualBranch) and foldable(m.n2):
            m.conv1, m.n2 = _fold_bn_into_conv(m.conv1, m.n2), nn.Identity()
        if isinstance(m, TransitionBlock) and foldable(m.down[1]):
            m.down = nn.Sequential(_fold_bn_into_conv(m.down[0], m.down[1]), nn.Identity())
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


class _seeded:
    def __init__(self, seed: int | None):
        self.seed = seed

    def __enter__(self):
        if self.seed is not None:
            self.state = torch.random.get_rng_state()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        if self.seed is not None:
            torch.random.set_rng_state(self.state)


# ---- registry ---------------------------------------------------------------------------------------------

def list_models() -> list[str]:
    """Names accepted by `create_model` / `sspnet train --model`: every registered scheme (presets and those
    added with `sspnet.schemes.register_scheme`) and 'ark'."""
    return list(PRESETS) + ["ark"]


def model_cost(model: nn.Module) -> dict[str, Any]:
    """Parameters and F calls per block of a built model."""
    calls = model.f_calls_per_block if isinstance(model, SSPNet) else []
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "f_calls_per_block": calls, "f_calls_total": sum(calls)}
