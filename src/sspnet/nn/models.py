"""SSP networks for MNIST/Fashion-MNIST, CIFAR-10 and TinyImageNet, and the model registry.

Every model takes float images in [0, 1] of shape B x C x H x W (the dataset's normalisation is a buffer
inside the model) and returns logits B x num_classes. `model.config` rebuilds it: `create_model(**model.config)`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sspnet.data.specs import DatasetSpec, get_dataset_spec
from sspnet.nn.architectures import Architecture, get_architecture
from sspnet.nn.blocks import check_step_size, frozen_batchnorm_stats, init_kaiming, init_original, make_norm
from sspnet.nn.inference import inference_copy, preferred_memory_format  # noqa: F401  (re-exported)
from sspnet.nn.registry import BlockEntry, get_block, get_model_entry, list_models, model_identity  # noqa: F401
from sspnet.nn.schemes import SCHEME_PRESETS, Scheme, get_scheme

MAX_BLOCKS = 1000  # per group; far beyond any published SSP network, small enough to fail with a message
INITS = ("original", "torch", "kaiming")


class Normalize(nn.Module):
    """(x - mean) / std per channel; identity when mean is None. Buffers mean/std of shape 1 x C x 1 x 1."""

    mean: Tensor
    std: Tensor

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

    def __init__(
        self,
        spec: DatasetSpec,
        stem: nn.Module,
        groups: list[nn.Sequential],
        transitions: list[nn.Module],
        head: nn.Module,
        config: dict[str, Any],
        activation_checkpointing: bool = False,
    ):
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
            raise ValueError(
                f"{self.config['dataset']} model expects input B x {s.channels} x {s.size} x {s.size} "
                f"in [0, 1], got shape {tuple(x.shape)}"
            )

    def _group(self, j: int) -> nn.Sequential:
        """The blocks of group j, in depth order."""
        g = self.groups[j]
        if not isinstance(g, nn.Sequential):
            raise TypeError(f"group {j} of the model is a {type(g).__name__}, expected an nn.Sequential of blocks")
        return g

    def run_group(self, j: int, h: Tensor) -> Tensor:
        """Apply the blocks of group j (feature space) with optional activation checkpointing."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            for block in self._group(j):
                h = checkpoint(block, h, use_reentrant=False, context_fn=functools.partial(_recompute_contexts, block))
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
        return [_f_calls(b) for j in range(len(self.groups)) for b in self._group(j)]


def _recompute_contexts(block: nn.Module) -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
    """checkpoint's context_fn: nothing around the first forward, BatchNorm statistics frozen around the
    recomputation in backward."""
    return contextlib.nullcontext(), frozen_batchnorm_stats(block)


def _f_calls(block: nn.Module) -> int:
    """The F calls per forward a block declares (its `f_calls` attribute). AttributeError when it declares none,
    so `getattr(model, "f_calls_per_block", default)` gives the default for a model with such a block."""
    calls = getattr(block, "f_calls", None)
    if calls is None:
        raise AttributeError(f"{type(block).__name__} declares no f_calls (F evaluations per forward)")
    return calls


def _build(
    spec: DatasetSpec,
    arch: Architecture,
    groups: Sequence[BlockEntry],
    blocks: int,
    norm: str,
    options: dict[str, Any],
    config: dict[str, Any],
    activation_checkpointing: bool,
) -> SSPNet:
    stem = arch.build_stem(spec.channels, norm)  # built in this order: the seeded parameters depend on it
    head = arch.build_head(spec.num_classes, norm)
    transitions = arch.build_transitions(norm)
    group_mods = [
        nn.Sequential(*[entry.build(arch.widths[j], norm, arch.name, options) for _ in range(blocks)])
        for j, entry in enumerate(groups)
    ]
    return SSPNet(spec, stem, group_mods, transitions, head, config, activation_checkpointing)


def create_model(
    scheme: str | Scheme | dict = "ssp2",
    dataset: str = "cifar10",
    blocks: int | None = None,
    norm: str | None = None,
    groups: Sequence[str | Scheme | dict] | None = None,
    init: str | None = None,
    upscale: bool | None = None,
    a21: float | None = None,
    b10: float | None = None,
    freeze_a: bool | None = None,
    freeze_b: bool | None = None,
    activation_checkpointing: bool = False,
    seed: int | None = None,
    step_size: float | None = None,
    arch: str | None = None,
) -> SSPNet:
    """Build an SSP network.

    scheme: a registered model name (see `list_models()`), a Scheme, a dict description, or a JSON/YAML
        scheme file path. A scheme fills every group unless `groups` is given; a composite model such as "ark"
        (the paper's SSP-adap: ark, res, ssp2[, ssp2]) names one block kind per group (`sspnet.nn.registry`).
    dataset: mnist5k | mnist | fmnist | cifar10 | tiny (alias tinyimagenet); picks architecture and input
        normalisation. blocks: N blocks per group (default: the dataset's). norm: b | g | l | i.
    groups: one block kind per group (1 for mnist, 3 for cifar10, 4 for tiny), overriding `scheme`.
    Every option left at None takes the model's default (so unset CLI flags never override it).
    init: "original" (CIFAR/Tiny default; `upscale` scales kaiming's a by N), "torch" (MNIST default), "kaiming".
    a21, b10, freeze_a, freeze_b: ARK block options (defaults per architecture; a frozen, b trainable).
    activation_checkpointing: recompute each block in backward to save memory (training only).
    seed: if given, parameters are initialised from torch.manual_seed(seed).
    step_size: h of every RK block (y = x + h F(x) for res, h * beta for any scheme; default 1, the scheme as
        written; 0 makes every block the identity). Transitions and stem are not RK steps and do not take it.
    arch: the architecture (mnist | cifar10 | tinyimagenet, `sspnet.nn.architectures`), default the dataset's;
        another one takes the dataset's images as they are (every architecture is convolutional with a global
        pool), e.g. the 3-group CIFAR-10 network on the 28 x 28 digits. The config records it only when it is
        not the dataset's, so every other config is what it was before the option.
    """
    spec = get_dataset_spec(dataset)
    architecture = get_architecture(spec.arch if arch is None else arch)
    own_arch = architecture.name == spec.arch
    blocks, norm, init = _checked_options(architecture, blocks, norm, init)
    upscale = True if upscale is None else bool(upscale)
    scheme_key = _model_key(scheme)
    n_groups = architecture.n_groups
    if groups is None:
        entry = get_model_entry(scheme)
        kinds = (
            [_model_key(b) for b in entry.blocks_per_group(architecture.name, n_groups)]
            if entry.groups
            else [scheme_key] * n_groups
        )
    else:
        if isinstance(groups, str):
            groups = [g.strip() for g in groups.split(",")]
        kinds = [_model_key(g) for g in groups]
        if len(kinds) != n_groups:
            raise ValueError(
                f"groups must name {n_groups} block kind(s) for the {architecture.name} architecture "
                f"(one per block group), got {len(kinds)}"
            )
    options = {k: v for k, v in dict(a21=a21, b10=b10, freeze_a=freeze_a, freeze_b=freeze_b).items() if v is not None}
    h = 1.0 if step_size is None else check_step_size(step_size)
    config = {
        "scheme": scheme_key,
        "dataset": spec.name,
        "blocks": blocks,
        "norm": norm,
        "groups": kinds,
        "init": init,
        "upscale": upscale,
        "step_size": h,
        **({} if own_arch else {"arch": architecture.name}),
        **options,
    }
    entries = [get_block(k) for k in kinds]
    with _seeded(seed):
        model = _build(
            spec,
            architecture,
            entries,
            blocks,
            norm,
            {**options, "step_size": h},
            config,
            bool(activation_checkpointing),
        )
        if init == "original":
            init_original(model, blocks, upscale)
        elif init == "kaiming":
            init_kaiming(model)
    return model


def _checked_options(
    arch: Architecture, blocks: int | None, norm: str | None, init: str | None
) -> tuple[int, str, str]:
    """(blocks, norm, init) with None replaced by the architecture's defaults; ValueError for bad values."""
    blocks = arch.blocks if blocks is None else blocks
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks must be an integer >= 1 (blocks per group), got {blocks!r}")
    if blocks > MAX_BLOCKS:
        raise ValueError(f"blocks must be at most {MAX_BLOCKS} per group, got {blocks}")
    norm = arch.norm if norm is None else norm
    make_norm(norm, 4)  # validates the letter
    init = arch.init if init is None else init
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    return blocks, norm, init


def _model_key(kind: Any) -> str | dict:
    """How config.json stores a block/model kind: a registered name, or a scheme's coefficients."""
    key = model_identity(kind)
    if isinstance(key, dict):
        name = key.get("name")
        if isinstance(name, str) and SCHEME_PRESETS.get(name) == get_scheme(kind):
            return name
    return key


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


def model_cost(model: nn.Module) -> dict[str, Any]:
    """Parameters and F calls per block of a built model."""
    calls = model.f_calls_per_block if isinstance(model, SSPNet) else []
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "f_calls_per_block": calls,
        "f_calls_total": sum(calls),
    }
