"""The block and model registry, in the spirit of timm's `register_model`.

A *block* entry knows how to build one residual block (channels, norm, arch, options -> nn.Module), how many
F calls it makes and how to present itself. Every registered RK scheme (`sspnet.nn.schemes.register_scheme`)
is a block automatically (the generic `RKBlock`); blocks that are not a fixed scheme, such as the adaptive
`ark` block, are registered here with their own builder.

A *model* entry names what goes in each block group. By default a model uses its own block in every group;
a composite entry lists one block per group for each architecture, like the paper's SSP-adap model
(`ark`: ark, res, ssp2 on CIFAR-10; ark, res, ssp2, ssp2 on TinyImageNet; ark on MNIST).

    from sspnet.nn.registry import f_calls_per_group, display_name
    f_calls_per_group("ark", "cifar10")   # [2, 1, 2]
    display_name("ark")                    # 'SSP-adap'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from sspnet.nn.architectures import get_architecture
from sspnet.nn.blocks import ARKBlock, RKBlock
from sspnet.nn.schemes import RESERVED_NAMES, SCHEME_PRESETS, Scheme, get_scheme

BlockBuilder = Callable[[int, str, str, Mapping[str, Any]], nn.Module]


@dataclass(frozen=True)
class BlockEntry:
    """One block kind. build(channels, norm, arch, options) -> block; f_calls: F evaluations per forward;
    stages / order / ssp_coefficient: for tables (None where they do not apply; for an RK scheme the values
    computed from its coefficients, not the declared ones)."""

    name: str
    build: BlockBuilder
    f_calls: int
    description: str = ""
    stages: int | None = None
    order: int | None = None
    ssp_coefficient: float | None = None
    scheme: Scheme | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A model name: its display name and, for composite models, the block of each group per architecture
    (arch -> tuple of block names); without `groups` the model's own block fills every group."""

    name: str
    display: str
    description: str = ""
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def blocks_per_group(self, arch: str, n_groups: int) -> list[str]:
        """The block name of each of the n_groups block groups of architecture `arch`."""
        if self.groups:
            if arch not in self.groups:
                raise ValueError(
                    f"model {self.name!r} is not defined for the {arch} architecture; "
                    f"it is for: {', '.join(self.groups)}"
                )
            return list(self.groups[arch])
        return [self.name] * n_groups


_BLOCKS: dict[str, BlockEntry] = {}
_MODELS: dict[str, ModelEntry] = {}
# display names of the preset schemes (a user scheme is shown by its own name)
_DISPLAY = {
    "res": "ResNet",
    "ssp2": "SSP-2",
    "ssp3": "SSP-3",
    "midrk2": "MidRK2",
    "midrk2-orig": "MidRK2-orig",
    "ssp43": "SSP-4,3",
    "rk4": "RK4",
}


def register_block(entry: BlockEntry, overwrite: bool = False) -> BlockEntry:
    """Register a block kind that is not a fixed RK scheme (fixed schemes: `register_scheme`)."""
    if not overwrite and (entry.name in _BLOCKS or entry.name in SCHEME_PRESETS):
        raise ValueError(f"a block named {entry.name!r} is already registered (pass overwrite=True)")
    _BLOCKS[entry.name] = entry
    RESERVED_NAMES.add(entry.name)
    return entry


def register_model(entry: ModelEntry, overwrite: bool = False) -> ModelEntry:
    """Register a model name (its groups must name registered blocks)."""
    if entry.name in _MODELS and not overwrite:
        raise ValueError(f"a model named {entry.name!r} is already registered (pass overwrite=True)")
    for names in entry.groups.values():
        for b in names:
            get_block(b)  # ValueError for an unknown block
    _MODELS[entry.name] = entry
    return entry


def _scheme_entry(scheme: Scheme) -> BlockEntry:
    def build(channels: int, norm: str, arch: str, options: Mapping[str, Any]) -> nn.Module:
        return RKBlock(channels, norm, scheme, step_size=options.get("step_size", 1.0))

    return BlockEntry(
        scheme.name,
        build,
        scheme.f_calls,
        scheme.description,
        scheme.stages,
        scheme.computed_order,
        scheme.computed_ssp_coefficient,
        scheme,
    )


def get_block(kind: str | Scheme | dict | Path) -> BlockEntry:
    """The block entry of a registered block or scheme name, a Scheme, a dict description or a scheme file.

    Raises ValueError naming the valid models for an unknown name.
    """
    if isinstance(kind, str) and kind in _BLOCKS:
        return _BLOCKS[kind]
    try:
        return _scheme_entry(get_scheme(kind))
    except ValueError as exc:
        if isinstance(kind, str) and str(exc).startswith("unknown scheme"):
            raise ValueError(
                f"unknown model {kind!r}; valid models: {', '.join(list_models())}, or a JSON/YAML scheme file"
            ) from None
        raise


def get_model_entry(name: str | Scheme | dict | Path) -> ModelEntry:
    """The model entry of a name (registered model, scheme name, Scheme or scheme file)."""
    if isinstance(name, str) and name in _MODELS:
        return _MODELS[name]
    block = get_block(name)
    return ModelEntry(block.name, _DISPLAY.get(block.name, block.name), block.description)


def list_models() -> list[str]:
    """Every name `create_model` accepts: registered schemes, then registered models that are not schemes."""
    return list(SCHEME_PRESETS) + [m for m in _MODELS if m not in SCHEME_PRESETS]


def check_model(name: str | Scheme | dict | Path) -> None:
    """ValueError (listing the valid names) unless `name` is a registered model, scheme or scheme file."""
    get_model_entry(name)


def f_calls_per_group(name: str | Scheme | dict | Path, arch: str) -> list[int]:
    """F calls of one block in each block group of model `name` on architecture `arch` (or a dataset's)."""
    arch_entry = get_architecture(arch)
    arch, n_groups = arch_entry.name, arch_entry.n_groups
    entry = get_model_entry(name)
    blocks = entry.blocks_per_group(arch, n_groups) if entry.groups else None
    if blocks is None:
        return [get_block(name).f_calls] * n_groups
    return [get_block(b).f_calls for b in blocks]


def model_identity(name: str | Scheme | dict | Path) -> str | dict:
    """What defines the computation of `name`: the registered name, or a scheme file's coefficients (so an
    edited file is a different model)."""
    if isinstance(name, str) and (name in _MODELS or name in _BLOCKS or name in SCHEME_PRESETS):
        return name
    entry = get_block(name)
    if entry.scheme is None:  # a block kind registered with its own builder: its name says what it computes
        return entry.name
    return entry.scheme.to_dict()


def display_name(name: str | Scheme | dict | Path) -> str:
    """A reader's name: 'ResNet', 'SSP-2', 'SSP-adap', ... (a scheme file: its scheme's name); a model with a
    step size (`split_step_size`) is shown with it: 'ResNet h=0.5'."""
    if isinstance(name, str):
        base, h = split_step_size(name)
        if h is not None:
            return f"{get_model_entry(base).display} h={h:g}"
    return get_model_entry(name).display


def model_stem(spec: str) -> str:
    """A model as a folder name: 'res@0.5' -> 'res-h0.5', '/path/ralston.yaml' -> 'ralston', 'ssp2' -> 'ssp2'."""
    base, h = split_step_size(str(spec))
    stem = Path(base).stem if base.lower().endswith((".yaml", ".yml", ".json")) else Path(base).name
    return stem if h is None else f"{stem}-h{h:g}"


STEP_MARK = "@"  # "res@0.5": the model res with step size 0.5 (compare's --models)


def split_step_size(spec: str) -> tuple[str, float | None]:
    """'res@0.5' -> ('res', 0.5); 'res' -> ('res', None). ValueError in one line for a step size that is not a
    number >= 0."""
    from sspnet.nn.blocks import check_step_size

    if STEP_MARK not in spec or Path(spec).is_file():  # a scheme file whose name holds the mark is a file
        return spec, None
    base, _, h = spec.rpartition(STEP_MARK)
    try:
        value = float(h)
    except ValueError:
        value = math.nan
    if not base or not math.isfinite(value):
        raise ValueError(f"model {spec!r}: after {STEP_MARK!r} comes the step size h, a number like res@0.5")
    try:
        return base, check_step_size(value)
    except ValueError as exc:
        raise ValueError(f"model {spec!r}: {exc}") from None


# ---- the adaptive RK block and the SSP-adap model ----------------------------------------------------------
def _build_ark(channels: int, norm: str, arch: str, options: Mapping[str, Any]) -> nn.Module:
    a21, b10 = get_architecture(arch).ark  # the architecture's defaults (a21, b10)
    return ARKBlock(
        channels,
        norm,
        a21=options.get("a21", a21),
        b10=options.get("b10", b10),
        freeze_a=options.get("freeze_a", True),
        freeze_b=options.get("freeze_b", False),
        step_size=options.get("step_size", 1.0),
    )


register_block(BlockEntry("ark", _build_ark, 2, "adaptive 2-stage RK, learned c2 = sigmoid(b10)", stages=2, order=2))
register_model(
    ModelEntry(
        "ark",
        "SSP-adap",
        "the paper's SSP-adap: ark in the first group, then res and ssp2",
        groups={"mnist": ("ark",), "cifar10": ("ark", "res", "ssp2"), "tinyimagenet": ("ark", "res", "ssp2", "ssp2")},
    )
)
