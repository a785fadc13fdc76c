"""The attack experiment of one trained model (`sspnet attack`): load a run folder or checkpoint, evaluate its
robustness (`sspnet.eval.evaluate`), write the result files (`attack_files`) and optionally run the
gradient-masking audit (`sspnet.eval.masking.audit`, with transfer attacks from another run).

    from sspnet.experiments.attack import AttackRunConfig, run_attack
    run = run_attack(AttackRunConfig(path="runs/mnist5k-res-none-seed0", eps_cli=(0.3,)))

eps_cli / alpha_cli are in the dataset's CLI unit (linf: 1/255 on cifar10/tiny, [0, 1] pixel units on grey
data; l2: always pixel units), the unit the result files are named in; `run_attack` converts them to pixel
units once the model (and so the dataset) is known.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sspnet.attacks import DEFAULTS, ThreatModel
from sspnet.nn.architectures import archi_dataset

_USE = DEFAULTS["evaluate"]  # the threat model, batch and images of `sspnet.eval.evaluate`: attack's defaults too
L2_DEFAULT_EPS = {"mnist": 2.0, "mnist5k": 2.0, "fmnist": 1.5, "cifar10": 0.5, "tiny": 0.5}


@dataclass
class AttackRunConfig:
    """What `run_attack` does. path: run folder or checkpoint; crit: final | acc | loss | last (= final).
    attack: fgsm | pgd | ball | autoattack | square | all, or a comma list; norm: linf | l2.
    eps_cli: one value or several (a sweep) in the CLI unit (None: linf the dataset's training eps, l2
    `L2_DEFAULT_EPS`); alpha_cli: the PGD step in the same unit (None: the training alpha / eps ratio times eps).
    steps: PGD iterations; restarts (worst case kept); copies: noise-ball copies; queries: Square's model calls
    per image; early_stop: stop attacking an image once it is misclassified. audit: the gradient-masking audit
    at the one eps; transfer_from: a run whose PGD examples the audit transfers (implies audit).
    batch_size / n_images: evaluation batch and class-stratified test images (None: all). dataset, model,
    blocks, norm_layer, archi: overrides for original checkpoints (None: the checkpoint's / inferred).
    data_root: the dataset folder (None: the run's recorded one, `sspnet.train.recorded_data_root`, else
    $SSPNET_DATA or ./data). grid: images in the PNG grid. out: output
    folder (None: the run folder / the checkpoint's folder). quiet: no progress lines on stderr."""

    path: str
    crit: str = "final"
    attack: str = "pgd"
    norm: str = "linf"
    eps_cli: tuple[float, ...] | None = None
    alpha_cli: float | None = None
    steps: int = _USE.threat.steps
    restarts: int = _USE.threat.restarts
    copies: int = 10
    random_start: bool = _USE.threat.random_start
    early_stop: bool = True
    queries: int = 5000
    audit: bool = False
    transfer_from: str | None = None
    audit_autoattack: bool = True
    batch_size: int = _USE.batch_size
    n_images: int | None = _USE.n_images
    device: str = "auto"
    dataset: str | None = None
    model: str | None = None
    blocks: int | None = None
    norm_layer: str | None = None
    archi: str | None = None
    data_root: str | None = None
    quantize: bool = _USE.threat.quantize
    seed: int = _USE.seed
    grid: int = 8
    out: str | None = None
    quiet: bool = False

    def validate(self) -> None:
        """ValueError naming the flag of the first bad option (before anything is loaded)."""
        from sspnet.distributed import env_world_size

        if self.eps_cli is not None and any(not math.isfinite(e) or e < 0 for e in self.eps_cli):
            raise ValueError(f"--eps must be >= 0, got {list(self.eps_cli)}")
        if self.alpha_cli is not None and not (math.isfinite(self.alpha_cli) and self.alpha_cli > 0):
            raise ValueError(f"--alpha must be > 0, got {self.alpha_cli}")
        for flag, value, low in (
            ("--pgd-steps", self.steps, 0),
            ("--restarts", self.restarts, 1),
            ("--copies", self.copies, 1),
            ("--eval-batch-size", self.batch_size, 1),
            ("--grid", self.grid, 0),
            ("--queries", self.queries, 1),
        ):
            if value < low:
                raise ValueError(f"{flag} must be >= {low}, got {value}")
        if (self.audit or self.transfer_from) and env_world_size() > 1:
            raise ValueError("--audit runs in one process: run it without torchrun")
        if self.n_images is not None and self.n_images < 1:
            raise ValueError(
                f"--n-images must be >= 1 (images to evaluate), got {self.n_images}; the evaluation set would be empty"
            )
        if self.archi is not None:
            archi_dataset(self.archi)  # ValueError listing the names
        if self.eps_cli is not None and len(self.eps_cli) > 1 and (self.audit or self.transfer_from):
            what = "--transfer-from (the audit)" if self.transfer_from else "--audit"
            raise ValueError(f"{what} runs at one eps: give a single --eps value")

    def wanted_dataset(self) -> str | None:
        """--dataset, else the one --archi names (None: the model's)."""
        return self.dataset or (archi_dataset(self.archi) if self.archi else None)


@dataclass
class AttackRun:
    """What `run_attack` did: the evaluation (`EvalResult`), the checkpoint file and how it was chosen
    (`describe_checkpoint`), the dataset spec, the result name (attack_<name>_<eps>.json), the files written
    and, with the audit, its result and file."""

    result: Any
    checkpoint: Path
    selection: dict
    spec: Any
    name: str
    written: list[Path]
    audit: Any = None
    audit_path: Path | None = None


def eps_in_cli_units(cfg: AttackRunConfig, spec) -> tuple[float, list[float]]:
    """(pixel units per CLI unit, eps in CLI units): eps_cli or the dataset's default, checked against the
    pixel range and against rounding (an eps below one 8-bit level would move no pixel)."""
    from sspnet.attacks.base import sub_quantum

    unit = spec.eps_unit if cfg.norm == "linf" else 1.0
    if cfg.eps_cli is None:
        eps_cli = [spec.train_eps / unit] if cfg.norm == "linf" else [L2_DEFAULT_EPS[spec.name]]
    else:
        eps_cli = list(cfg.eps_cli)
    pixel_max = 1.0 if cfg.norm == "linf" else math.sqrt(spec.channels * spec.size**2)
    for e in eps_cli:
        if e * unit > pixel_max * (1 + 1e-9):
            hint = "in 1/255 units, e.g. --eps 8" if unit != 1 else "in [0, 1], e.g. --eps 0.3"
            raise ValueError(
                f"--eps {e:g} is beyond the pixel range ({e * unit:.4g} > {pixel_max:.4g} in pixel "
                f"units); {spec.name} {cfg.norm} eps is given {hint}"
            )
        if sub_quantum(e * unit, cfg.quantize):
            one = "1 (1/255)" if unit != 1 else f"{1 / 255:.6g} (1/255)"
            raise ValueError(
                f"--eps {e:g} is below one 8-bit level, so with rounding on it cannot move a pixel: the "
                f"smallest eps that moves one is {one} for {spec.name} {cfg.norm}; or pass --no-quantize"
            )
    return unit, eps_cli


def eval_config(cfg: AttackRunConfig, spec, device: str):
    """The `EvalConfig` (pixel units) of an attack run on the dataset `spec`."""
    from sspnet.eval.config import EvalConfig

    unit, eps_cli = eps_in_cli_units(cfg, spec)
    eps = tuple(e * unit for e in eps_cli)
    threat = ThreatModel(
        norm=cfg.norm,
        eps=eps[0],
        alpha=None if cfg.alpha_cli is None else cfg.alpha_cli * unit,
        alpha_rel=spec.train_alpha / spec.train_eps,
        steps=cfg.steps,
        restarts=cfg.restarts,
        random_start=cfg.random_start,
        quantize=cfg.quantize,
    )
    return EvalConfig(
        attack=cfg.attack,
        threat=threat,
        eps=eps,
        copies=cfg.copies,
        batch_size=cfg.batch_size,
        n_images=cfg.n_images,
        device=device,
        seed=cfg.seed,
        eps_unit=unit,
        early_stop=cfg.early_stop,
        queries=cfg.queries,
    ).validated()


def result_name(cfg: AttackRunConfig) -> str:
    """The <name> of attack_<name>_<eps>.json: the attacks joined by "+", "-l2" for the l2 threat."""
    return cfg.attack.lower().replace(",", "+").replace(" ", "") + ("-l2" if cfg.norm == "l2" else "")


def run_attack(cfg: AttackRunConfig, echo: Callable[[str], None] | None = None) -> AttackRun:
    """Load, evaluate, write the result files, audit. echo(line): the summary lines as they become known
    (rank 0 only; None: silent). ValueError / FileNotFoundError in one line for bad input."""
    from sspnet.data import load
    from sspnet.data.specs import get_dataset_spec
    from sspnet.distributed import init_distributed
    from sspnet.eval.robustness import evaluate
    from sspnet.experiments.attack_files import summary_lines, write_outputs
    from sspnet.nn.checkpoints import describe_checkpoint
    from sspnet.train.folder import recorded_data_root

    cfg.validate()
    path = Path(cfg.path)
    crit = "final" if cfg.crit == "last" else cfg.crit
    info = init_distributed(cfg.device)
    overrides: dict[str, Any] = {
        "dataset": cfg.wanted_dataset(),
        "model": cfg.model,
        "blocks": cfg.blocks,
        "norm": cfg.norm_layer,
    }
    ckpt, model = load_checked(path, crit, info.device, overrides)
    spec = get_dataset_spec(overrides["dataset"] or model.config["dataset"])
    ecfg = eval_config(cfg, spec, info.device)
    source = None
    if cfg.transfer_from is not None:
        _, source = load_checked(Path(cfg.transfer_from), crit, info.device, {"dataset": spec.name})
    if "autoattack" in ecfg.attack_names():
        from sspnet.attacks import load_autoattack_class

        load_autoattack_class()
    root = cfg.data_root or recorded_data_root(path)  # default: the folder the run was trained from
    images, labels = load(spec.name, root=root, split="test", device=info.device)
    out_dir = Path(cfg.out) if cfg.out else (path if path.is_dir() else ckpt.parent)
    result = _with_progress(
        "sspnet attack",
        cfg.quiet or not info.is_main,
        lambda shown: evaluate(model, images, labels, ecfg, progress=shown),
    )
    name = result_name(cfg)
    selection = describe_checkpoint(path, crit)
    written = write_outputs(result, images, labels, out_dir, name, ckpt, spec, cfg.grid, info.rank, selection)
    run = AttackRun(result, ckpt, selection, spec, name, written)
    if not info.is_main:
        return run
    for line in summary_lines(result, ckpt, spec, name, written, selection):
        _echo(echo, line)
    if cfg.audit or cfg.transfer_from:
        run.audit, run.audit_path = _audit(cfg, model, source, images, labels, result, ecfg, out_dir)
        for line in run.audit.summary_lines():
            _echo(echo, "  " + line)
        _echo(echo, f"  wrote {run.audit_path}")
    return run


def load_checked(path: Path, crit: str, device, overrides: dict):
    """(checkpoint file, model) of a run folder or checkpoint; ValueError naming the overrides that failed."""
    from sspnet.nn.checkpoints import load_model, resolve_checkpoint

    ckpt = resolve_checkpoint(path, crit)
    try:
        return ckpt, load_model(ckpt, crit=crit, device=device, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        given = ", ".join(
            f"--{flag} {overrides[k]}"
            for k, flag in (("dataset", "dataset"), ("model", "model"), ("blocks", "blocks"))
            if overrides.get(k) is not None
        )
        raise ValueError(f"cannot load {ckpt}{' with ' + given if given else ''}: {exc}") from None


def _audit(cfg: AttackRunConfig, model, source, images, labels, result, ecfg, out_dir: Path):
    """The gradient-masking audit on the evaluation's images at its eps -> (AuditResult, attack_audit_<eps>.json)."""
    from sspnet.eval.masking import AuditConfig, audit
    from sspnet.experiments.attack_files import fmt_eps
    from sspnet.io.files import atomic_write_json

    eps = ecfg.eps[0]
    threat = dataclasses.replace(
        DEFAULTS["audit"].threat,
        norm=cfg.norm,
        eps=eps,
        alpha=ecfg.alpha_for(eps),
        steps=max(cfg.steps, 1),
        quantize=cfg.quantize,
    )
    acfg = AuditConfig(
        threat=threat,
        queries=cfg.queries,
        autoattack=cfg.audit_autoattack,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=ecfg.device,
    )
    found = _with_progress(
        "sspnet attack --audit",
        cfg.quiet,
        lambda shown: audit(model, images, labels, acfg, indices=result.indices, source_model=source, progress=shown),
    )
    out = out_dir / f"attack_audit_{fmt_eps(eps / ecfg.eps_unit)}.json"
    atomic_write_json(out, {"transfer_from": cfg.transfer_from, **found.to_dict()})
    return found, out


def _with_progress(title: str, quiet: bool, work: Callable[[Any], Any]) -> Any:
    """work(progress line or None), the line closed afterwards."""
    from sspnet.io.progress import progress_line

    shown = progress_line(title, quiet)
    try:
        return work(shown)
    finally:
        if shown is not None:
            shown.close()


def _echo(echo: Callable[[str], None] | None, line: str) -> None:
    if echo is not None:
        echo(line)
