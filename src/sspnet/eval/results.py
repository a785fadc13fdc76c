"""What `evaluate` returns: per-attack statistics per eps, the worst case, and per-sample access.

    result.accuracy("pgd", 8/255)                  # float in [0, 1]
    result.correct("fgsm", 8/255)                  # bool n, aligned with result.indices
    result.adversarial_images(8/255, idx)          # the kept images (config keep_attack) of images idx

Per-sample tensors (`per_sample`, CPU, length n, in the order of `result.indices`) are gathered over ranks;
adversarial images stay on the rank that made them. eps in pixel units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from sspnet.eval.selection import positions
from sspnet.io.files import atomic_write_json, provenance
from sspnet.io.jsonio import to_jsonable

CLEAN = "clean"
WORST = "worst"


@dataclass
class AttackStats:
    """One attack at one eps: accuracy, mean cross-entropy, perturbation sizes (pixel units), seconds."""

    attack: str
    acc: float
    loss: float
    linf_mean: float
    linf_max: float
    l2_mean: float
    l2_max: float
    l1_mean: float
    l1_max: float
    time_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpsResult:
    """All attacks at one eps, plus the per-sample worst case across them (`worst`)."""

    eps: float  # pixel units
    eps_cli: float  # eps / eps_unit
    attacks: dict[str, AttackStats]
    worst: AttackStats
    worst_source: dict[str, int]  # samples whose worst case came from each attack


@dataclass
class EvalResult:
    """Everything `evaluate` measured; `to_json(path)` writes all but the tensors. `subset` says which images
    were used (rule, seed, n, per_class, indices)."""

    n: int
    world_size: int
    clean_acc: float
    clean_loss: float
    results: list[EpsResult]
    flags: list[dict[str, Any]]
    grad_stats: dict[str, int]
    timings: dict[str, float]
    config: dict[str, Any]
    subset: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=provenance)
    # not in the JSON: per-sample tensors (gathered, length n) and this rank's adversarial images
    per_sample: dict[str, Tensor] = field(default_factory=dict, repr=False)
    adversarial: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        skip = {"per_sample", "adversarial"}
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in skip}

    def to_json(self, path) -> None:
        atomic_write_json(path, self.to_dict())

    def at(self, eps: float) -> EpsResult:
        """The result at the evaluated eps closest to `eps`."""
        return min(self.results, key=lambda r: abs(r.eps - eps))

    @property
    def indices(self) -> Tensor:
        """Image indices (int64 n, sorted) into the split passed to `evaluate`."""
        return self.per_sample["index"].long()

    def eps_position(self, eps: float | None) -> int:
        """Position of an evaluated eps (pixel units) in `results`; None: the only one."""
        evaluated = [r.eps for r in self.results]
        if eps is None:
            if len(evaluated) != 1:
                raise ValueError(f"several eps were evaluated ({', '.join(f'{e:g}' for e in evaluated)}): pass eps")
            return 0
        for i, e in enumerate(evaluated):
            if abs(e - float(eps)) <= 1e-9 * max(1.0, abs(e)):
                return i
        raise ValueError(f"eps {eps:g} was not evaluated; evaluated: {', '.join(f'{e:g}' for e in evaluated)}")

    def correct(
        self, attack: str = WORST, eps: float | None = None, indices: Tensor | Sequence[int] | None = None
    ) -> Tensor:
        """Per-sample correctness (bool) under `attack` at `eps`.

        Args:
            attack: "clean" (eps ignored), "worst" (the per-sample worst case over the attacks) or an attack name.
            eps: an evaluated eps in pixel units; None when only one was evaluated.
            indices: image indices (a subset of `result.indices`); None: all n, in the order of `result.indices`.
        Returns:
            bool tensor (len(indices) or n); its float mean is the reported accuracy.
        """
        key = CLEAN if attack == CLEAN else f"{self.eps_position(eps)}/{self._attack_key(attack)}"
        ok = self.per_sample[f"{key}/pred"].long() == self.per_sample["label"].long()
        return ok if indices is None else ok[positions(self.indices, indices)]

    def accuracy(
        self, attack: str = WORST, eps: float | None = None, indices: Tensor | Sequence[int] | None = None
    ) -> float:
        """Mean of `correct(attack, eps, indices)`, in [0, 1]."""
        ok = self.correct(attack, eps, indices)
        return float(ok.float().mean()) if ok.numel() else float("nan")

    def adversarial_images(self, eps: float | None = None, indices: Tensor | Sequence[int] | None = None) -> Tensor:
        """The kept adversarial images (config keep_attack: "worst" or an attack name) at `eps`, float CPU
        len(indices) x C x H x W in [0, 1]; indices: image indices kept on this rank (None: all kept, in the
        order of `adversarial["index"]`)."""
        i = self.eps_position(eps)
        if f"eps{i}" not in self.adversarial:
            raise ValueError("no adversarial images were kept: evaluate with keep_adv=None (all) or a count > 0")
        images = self.adversarial[f"eps{i}"]
        if indices is None:
            return images
        return images[positions(self.adversarial["index"], indices, "the kept adversarial images")]

    def attack_info(self, attack: str, eps: float | None = None) -> dict[str, Any]:
        """{"name", "eps", "norm", alpha, steps, ...}: what produced an attack's images (e.g. growth's adversary)."""
        r = self.results[self.eps_position(eps)]
        stats = r.attacks[self._attack_key(attack)]
        return {"name": stats.attack, "eps": r.eps, "norm": self.config.get("norm"), **stats.params}

    def _attack_key(self, attack: str) -> str:
        names = list(self.results[0].attacks) if self.results else []
        if attack != WORST and attack not in names:
            raise ValueError(f"attack {attack!r} was not evaluated; evaluated: {', '.join(names + [CLEAN, WORST])}")
        return attack


def sweep_table(result: EvalResult, fmt: str = "md") -> str:
    """Accuracy per eps and attack as a markdown (fmt="md") or CSV (fmt="csv") table."""
    names = list(result.results[0].attacks) if result.results else []
    head = ["eps", *names, "worst"]
    body = [
        [f"{r.eps_cli:g}", *(f"{r.attacks[k].acc:.4f}" for k in names), f"{r.worst.acc:.4f}"]
        for r in sorted(result.results, key=lambda r: r.eps)
    ]
    if fmt == "csv":
        return "\n".join(",".join(row) for row in [head, *body]) + "\n"
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


__all__ = ["AttackStats", "EpsResult", "EvalResult", "sweep_table"]
