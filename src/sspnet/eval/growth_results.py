"""Results of `sspnet.eval.growth`: mean growth profiles over samples and the JSON-backed `GrowthResult`."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sspnet.io.files import atomic_write_json
from sspnet.io.jsonio import from_jsonable_floats, to_jsonable


@dataclass
class GrowthProfile:
    """Mean ratios of one kind of perturbation (adversarial or noise).

    groups[p][j]: PGR of group j; blocks[p][k]: ratio of block k (depth order); std_*: standard deviation
    over samples; skipped: samples excluded because the input difference was 0 (per group, at p = first p);
    undefined: why an entry is NaN (no sample with a non-zero input difference), empty when none is.
    """

    groups: dict[str, list[float]] = field(default_factory=dict)
    blocks: dict[str, list[float]] = field(default_factory=dict)
    std_groups: dict[str, list[float]] = field(default_factory=dict)
    std_blocks: dict[str, list[float]] = field(default_factory=dict)
    skipped: int = 0
    undefined: list[str] = field(default_factory=list)


def reduce_ratios(chunks: list[dict[str, dict[str, Tensor]]], what: str) -> GrowthProfile:
    """Mean and std over samples of per-sample ratios (NaN entries excluded); notes and warns about NaN means."""
    prof = GrowthProfile()
    if not chunks:
        return prof
    for key, mean_d, std_d in (("groups", prof.groups, prof.std_groups), ("blocks", prof.blocks, prof.std_blocks)):
        for pos, name in enumerate(chunks[0][key]):
            r = torch.cat([c[key][name] for c in chunks], dim=0)
            valid = ~torch.isnan(r)
            cnt = valid.sum(0)
            mean = torch.where(valid, r, torch.zeros_like(r)).sum(0) / cnt.clamp_min(1)
            var = (torch.where(valid, (r - mean) ** 2, torch.zeros_like(r))).sum(0) / (cnt - 1).clamp_min(1)
            mean_d[name] = [float(v) if c > 0 else math.nan for v, c in zip(mean, cnt)]
            std_d[name] = [float(v) for v in var.sqrt()]
            if pos == 0:  # a zero difference is zero in every norm: one note per entry
                prof.undefined += [
                    f"{what} {key[:-1]} {j}: the perturbation is exactly 0 at its input for all "
                    f"{r.shape[0]} images, so the ratio is 0/0, undefined"
                    for j in (cnt == 0).nonzero().flatten().tolist()
                ]
                if key == "groups":
                    prof.skipped = int((~valid).any(1).sum())
    if prof.undefined:
        warnings.warn(f"growth: {len(prof.undefined)} undefined ratios; first: {prof.undefined[0]}", stacklevel=3)
    return prof


@dataclass
class GrowthResult:
    """Growth ratios of one model: adversarial and noise-baseline profiles plus what produced them.

        n: images used; subset: which ones ({"rule", "seed", "n", "per_class", "indices"}; None in files written
        before it existed); checkpoint: which file and how it was selected (None when measured on a model
    object); lipschitz: the L2 Lipschitz bounds, certified accuracy and forward-Euler / SSP certificates beside
    the measured ratios (`sspnet.eval.growth.bound_record`; None when skipped and in files written before it).
    JSON round trip: `save(path)` / `GrowthResult.load(path)` (NaN and inf stored as null).
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
    subset: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None  # `sspnet.nn.checkpoints.describe_checkpoint` of the model measured
    provenance: dict[str, Any] = field(default_factory=dict)
    lipschitz: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GrowthResult:
        d = dict(d)
        d["adversarial"] = GrowthProfile(**d["adversarial"])
        d["baseline"] = GrowthProfile(**d["baseline"]) if d.get("baseline") else None
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, to_jsonable(self))

    @classmethod
    def load(cls, path: str | Path) -> GrowthResult:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no growth result at {path}; run `sspnet growth RUN_DIR` first")
        return cls.from_dict(from_jsonable_floats(json.loads(path.read_text(encoding="utf-8"))))


__all__ = ["GrowthProfile", "GrowthResult", "reduce_ratios"]
