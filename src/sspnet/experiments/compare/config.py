"""What a comparison runs: the presets, the evaluation settings and the experiment config, resolved and
checked before anything is trained.

Units: every eps / alpha here is in pixel units [0, 1] (training and evaluation alike); the CLI converts
from the dataset's CLI unit at its edge (`sspnet.cli.compare`).

Presets (`--dry-run` prints the expected time from per-step costs measured on the machine at hand):
- default: res vs ssp2 on mnist5k, 3 seeds, PGD-3 adversarial training at eps 0.2 warmed up over 2 epochs
  (docs/default-budget.md);
  evaluation at eps 0.2 with PGD-10 (2 restarts) on all 1,000 test images, the sweep and growth on 300, a
  gradient-masking audit on 100 (Square with 1000 queries, transfer from res); AutoAttack off (about 5 min per
  run on one CPU core). Two runs at a time in worker processes with one thread each.
- cpu-hour: the same training for 6 seeds, PGD-10 with 3 restarts, AutoAttack standard inside the audit.
- paper-mnist: the original's MNIST settings: full MNIST, 5 blocks, ball training (5 noisy copies,
  eps 0.3), SGD lr 0.1, 200 epochs; evaluation at eps 0.3 (PGD-20) on the 10,000 test images.
- paper-cifar10: the paper's grid (N, K) in {6, 10} x {7, 12}: PGD-K adversarial training at 8/255, 200
  epochs, SGD lr 0.1; evaluation PGD-20 at 8/255 on the 10,000 test images; growth as the paper (PGD-20).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sspnet.attacks import DEFAULTS, ThreatModel, threat_config
from sspnet.attacks.defaults import default_of, format_default
from sspnet.attacks.threat import check_config_names, flat_dict
from sspnet.experiments.compare.presets import PRESETS
from sspnet.experiments.compare.sources import compare_sources

AUTOATTACK_MODES = ("auto", "on", "off")
AUDIT_MODES = ("on", "off")
AUDIT_FIELDS = ("audit", "audit_images", "audit_queries")  # cached apart from the evaluation (work.audit)
RECORD_VERSION = 3  # 2: per-image correctness, checkpoint description; 3: Lipschitz bounds beside the growth
# dataset-dependent evaluation eps of the default (standard-training) budget, pixel units
BUDGET_EPS = {"mnist": 0.1, "cifar10": 2 / 255, "tinyimagenet": 1 / 255}
# evaluation options renamed to one name per concept: old name -> new name (for the error message)
RENAMED_EVAL = {
    "pgd_steps": "steps",
    "n": "n_images",
    "sweep_n": "sweep_images",
    "growth_n": "growth_images",
    "autoattack_n": "autoattack_images",
}

_USE = DEFAULTS["compare"]  # the threat model, batch size and images of the default preset
# what the hash of the evaluation leaves out: the relative defaults (their resolved values are hashed), the norm
# (compare evaluates linf only) and the random start (derived: restarts > 1); the audit has its own cache key
NOT_HASHED = ("sweep_rel", "alpha_rel", "norm", "random_start", *AUDIT_FIELDS)
PIXEL_OPTIONS = ("eps", "alpha", "sweep")  # in pixel units; a --help text shows them in the dataset's CLI unit


@threat_config
@dataclass
class EvalSettings:
    """Evaluation of every run; its defaults are the default preset's (`sspnet.attacks.DEFAULTS["compare"]`
    and the fields below), the other presets list what they change. eps / alpha / sweep in pixel units
    (None: from the dataset, see `resolve`).

    threat: the linf PGD (eps, alpha or alpha_rel * eps: `ThreatModel.step`, steps: iterations, restarts,
    8-bit rounding); its fields are also taken and shown flat (`EvalSettings(eps=0.2, steps=10)`); the PGD
    starts at random points exactly when it restarts (restarts > 1). n_images: test images of clean / FGSM /
    PGD at eps (None: all). sweep_images, growth_images, autoattack_images, audit_images: the images of the eps
    sweep, of the growth ratios (the PGD examples at eps, plus `growth_noise` noise of the same eps), of
    AutoAttack and of the gradient-masking audit (audit: on | off; audit_queries: model calls per image of its
    Square attack; it runs AutoAttack as `autoattack` says). Every image set is chosen by
    `sspnet.data.subsets.subset_indices` over the whole test split: class-stratified and nested, so each
    smaller set lies inside the n_images set.
    crit: the checkpoint of each run folder evaluated (`sspnet.nn.checkpoints.load_model`). early_stop: the
    sweep, AutoAttack and the audit skip clean-misclassified images and stop PGD per image at its first
    misclassified iterate (same or lower accuracy, see `sspnet.eval`); the main PGD at eps runs in full, as
    its examples feed the growth ratios.
    """

    threat: ThreatModel = _USE.threat
    n_images: int | None = _USE.n_images
    sweep: tuple[float, ...] | None = None
    sweep_rel: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    sweep_images: int = 300
    growth_images: int = 300
    growth_noise: str = "sign"
    autoattack: str = "off"
    autoattack_images: int = 100
    audit: str = "on"
    audit_images: int = 100
    audit_queries: int = 1000
    batch_size: int = _USE.batch_size
    crit: str = "final"
    early_stop: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalSettings:
        """From a dict of options (the threat model's flat, as before it existed); ValueError naming an
        unknown (or renamed) option."""
        for key in d:
            if key in RENAMED_EVAL:
                raise ValueError(f"evaluation option {key!r} is now called {RENAMED_EVAL[key]!r}")
            if key == "random_start":
                raise ValueError(
                    "random_start is not a compare option: its PGD starts at random points exactly "
                    "when it restarts (restarts > 1)"
                )
        return cls(**check_config_names(cls, d, what="evaluation option"))

    def to_dict(self) -> dict[str, Any]:
        """The flat options (JSON-able) that `from_dict` takes back: random_start, derived, left out."""
        return {k: v for k, v in flat_dict(self).items() if k != "random_start"}

    def resolve(self, dataset: str) -> EvalSettings:
        """A copy with eps / alpha / sweep / random start filled in for `dataset`, checked (ValueError naming
        the option). alpha: `ThreatModel.step` (alpha_rel * eps, at least 1/255 when quantised)."""
        from sspnet.data.specs import get_dataset_spec

        spec = get_dataset_spec(dataset)
        t = self.threat
        if t.eps is None:
            t = t.at(BUDGET_EPS.get(spec.arch, spec.train_eps))
        e = dataclasses.replace(self, threat=dataclasses.replace(t, alpha=t.step()) if t.alpha is None else t)
        if e.sweep is None:
            e.sweep = tuple(round(e.eps * r, 10) for r in e.sweep_rel)
        e.sweep = tuple(float(v) for v in e.sweep)
        e._check()
        e.random_start = e.restarts > 1
        return e

    def _check(self) -> None:
        if self.autoattack not in AUTOATTACK_MODES:
            raise ValueError(f"unknown autoattack mode {self.autoattack!r}; valid: {', '.join(AUTOATTACK_MODES)}")
        if self.audit not in AUDIT_MODES:
            raise ValueError(f"unknown audit mode {self.audit!r}; valid: {', '.join(AUDIT_MODES)}")
        if self.norm != "linf":
            raise ValueError(
                f"compare evaluates linf threat models only (its sweep, growth and report are linf), "
                f"got norm {self.norm!r}"
            )
        for name in (
            "steps",
            "restarts",
            "sweep_images",
            "growth_images",
            "autoattack_images",
            "audit_images",
            "audit_queries",
            "batch_size",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        n = self.n_images
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n_images (test images) must be an integer >= 1 or None (all), got {n!r}")
        for v in (self.eps, *self.sweep):
            if not 0 < v <= 1:
                raise ValueError(f"eps values must be in (0, 1] pixel units, got {v}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha <= 1:
            raise ValueError(f"alpha (--alpha, the PGD step) must be in (0, 1] pixel units, got {self.alpha!r}")

    def audit_config(self) -> Any:
        """The `sspnet.eval.AuditConfig` of every run's audit (resolved settings): this threat model with one PGD
        run per image from the image itself (the audit's long PGD, Square and transfer are its strength),
        audit_queries, AutoAttack as `autoattack` says, batch_size, early_stop. `work.audit.call_audit` runs
        it and `plan.estimate` counts its passes."""
        from sspnet.eval.masking import AuditConfig
        from sspnet.experiments.compare.work.evaluation import use_autoattack

        return AuditConfig(
            threat=dataclasses.replace(self.threat, restarts=1, random_start=False),
            queries=self.audit_queries,
            autoattack=use_autoattack(self.autoattack),
            batch_size=self.batch_size,
            early_stop=self.early_stop,
        )

    def key(self) -> dict[str, Any]:
        """What the evaluation hash covers: the resolved flat options less `NOT_HASHED` (the same dict as
        before the threat model was one field, so cached runs keep their hash)."""
        from sspnet.data.subsets import SUBSET_RULE

        d = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        d["sweep"] = list(d["sweep"] or [])
        d["subset_rule"] = SUBSET_RULE  # a new image rule re-evaluates the runs
        d["record_version"] = RECORD_VERSION  # so does a record that holds more
        return d


def preset_value(preset: str, name: str, section: str = "eval") -> Any:
    """Option `name` as preset `preset` sets it: eval, its resolved-before-the-dataset EvalSettings value
    (the default where the preset says nothing); train, the preset's TrainConfig option (None: not set)."""
    p = PRESETS[preset]
    if section == "train":
        return p["train"].get(name)
    return default_of(EvalSettings.from_dict(dict(p["eval"])), name)


def preset_help(name: str, section: str = "eval", *, none: str = "none") -> str:
    """'default 10; paper-mnist, paper-cifar10 20': option `name` of every preset for a --help text, the
    default preset's first, then the presets that differ (eps / alpha / sweep in each preset dataset's CLI
    unit; none: the words for None)."""
    from sspnet.data.specs import get_dataset_spec

    shown: dict[str, list[str]] = {}
    for preset, p in PRESETS.items():
        unit = get_dataset_spec(p["dataset"]).eps_unit if name in PIXEL_OPTIONS else 1.0
        text = format_default(preset_value(preset, name, section), unit=unit, none=none)
        shown.setdefault(text, []).append(preset)
    first = next(t for t, presets in shown.items() if "default" in presets)
    return "; ".join([f"default {first}"] + [f"{', '.join(ps)} {t}" for t, ps in shown.items() if t != first])


@dataclass(frozen=True)
class Resolved:
    """A CompareConfig with the preset filled in. train: TrainConfig options (eps / alpha in pixel units);
    grid: (blocks, PGD steps of training) variants, or None for one variant; sources: where each option came
    from (`sspnet.experiments.compare.sources`; in no hash)."""

    dataset: str
    models: list[str]
    seeds: int
    train: dict[str, Any]
    eval: EvalSettings
    grid: list[tuple[int, int]] | None
    sources: dict[str, Any] = field(default_factory=dict)  # where each option came from (`compare.sources`)


EXECUTORS = ("local", "submitit", "ray")
SUBMITIT_CLUSTERS = ("auto", "slurm", "local", "debug")


@dataclass
class ClusterSettings:
    """Resources of each job of `--executor submitit | ray` (one job = one run: train, evaluate, audit).
    cpus_per_run None: --threads (1 when not given); submitit_cluster: auto (Slurm when `sbatch` is found,
    else local processes) | slurm | local | debug (in the driver's process); slurm_options: sbatch options
    (KEY: VALUE, e.g. {"account": "proj", "mem": "16G"})."""

    gpus_per_run: int = 0
    cpus_per_run: int | None = None
    timeout_min: int = 240
    array_parallelism: int | None = None
    partition: str | None = None
    slurm_options: dict[str, str] = field(default_factory=dict)
    submitit_cluster: str = "auto"

    def check(self) -> None:
        """ValueError naming the option."""
        for name, low in (("gpus_per_run", 0), ("cpus_per_run", 1), ("timeout_min", 1), ("array_parallelism", 1)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {v!r}")
        if self.submitit_cluster not in SUBMITIT_CLUSTERS:
            raise ValueError(
                f"unknown --submitit-cluster {self.submitit_cluster!r}; valid: {', '.join(SUBMITIT_CLUSTERS)}"
            )


@dataclass
class CompareConfig:
    """The whole experiment. train: TrainConfig options shared by all runs (eps / alpha in pixel units);
    eval: EvalSettings options; grid: (blocks, PGD steps of training) variants, or None for one variant.
    jobs: runs in parallel processes with one thread each (None: 2 on a CPU with >= 2 cores, 1 on a GPU;
    1: in this process). threads: torch threads of each run (None: 1; on a CPU also with one job, so that the
    numbers do not depend on jobs; a value other than 1 is part of the runs' cache hashes).
    executor: local (this machine, `jobs` processes) | submitit (a Slurm job array) | ray (Ray tasks), the last
    two with `cluster` resources (`executors`); emit_jobs: write one shell command per run to do into this file
    instead of running; report_only: report the finished runs, run nothing; only_run: do this one run (its
    folder name) with its audits and no report."""

    preset: str = "default"
    dataset: str | None = None
    models: Sequence[str] | None = None
    seeds: int | None = None
    out: str = "compare"
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    grid: list[tuple[int, int]] | None = None
    data_root: str | None = None
    device: str = "auto"
    jobs: int | None = None
    dry_run: bool = False
    quiet: bool = False
    threads: int | None = None
    executor: str = "local"
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    emit_jobs: str | None = None
    report_only: bool = False
    only_run: str | None = None

    def check_modes(self) -> None:
        """ValueError for an unknown executor, bad cluster resources or modes that exclude each other."""
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown --executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        self.cluster.check()
        modes = [
            name
            for name, on in (
                ("--dry-run", self.dry_run),
                ("--emit-jobs", self.emit_jobs),
                ("--report-only", self.report_only),
                ("--only-run", self.only_run),
            )
            if on
        ]
        if len(modes) > 1:
            raise ValueError(f"{' and '.join(modes)} exclude each other; give one of them")

    def resolved(self) -> Resolved:
        """The preset filled in and every choice checked (ValueError with one line naming the option)."""
        from sspnet.data.specs import get_dataset_spec

        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        p = PRESETS[self.preset]
        dataset = self.dataset or p["dataset"]
        get_dataset_spec(dataset)  # ValueError listing the datasets
        models = _check_models(list(p["models"] if self.models is None else self.models))  # [] is refused
        seeds = p["seeds"] if self.seeds is None else self.seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"--seeds must be an integer >= 1, got {seeds!r}")
        train = {**p["train"], **_given(self.train)}  # each flag replaces its own option only, but for:
        _scale_warmup(train, p["train"], _given(self.train))
        _follow_opt(train, p["train"], _given(self.train))
        ev = EvalSettings.from_dict({**p["eval"], **_given(self.eval)}).resolve(dataset)
        grid = self.grid if self.grid is not None else p["grid"]
        return Resolved(
            dataset, models, seeds, train, ev, grid, compare_sources(self, p, train, dataset, EvalSettings().to_dict())
        )


def _scale_warmup(train: dict[str, Any], preset: dict[str, Any], given: dict[str, Any]) -> None:
    """A preset's eps warm-up is a share of its epochs: with other --epochs and no --eps-warmup it keeps that
    share (default / cpu-hour: 2 of 8 epochs, a quarter). The preset's own --epochs changes nothing (its run
    hashes stay)."""
    epochs = given.get("epochs")
    if (
        preset.get("eps_warmup")
        and "eps_warmup" not in given
        and isinstance(epochs, int)
        and not isinstance(epochs, bool)
        and epochs != preset.get("epochs")
    ):
        train["eps_warmup"] = preset["eps_warmup"] * epochs / preset["epochs"]


def _follow_opt(train: dict[str, Any], preset: dict[str, Any], given: dict[str, Any]) -> None:
    """A preset's lr belongs to its optimizer (as a dataset recipe's, `sspnet.train.options.default_recipe`):
    an --opt other than the preset's, without --lr, leaves the lr to the trainer's rule for that optimizer."""
    opt = given.get("opt")
    if opt is None or "lr" in given or "lr" not in preset:
        return
    if str(opt).lower() != str(preset.get("opt", opt)).lower():
        train.pop("lr", None)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options that are set (None: the preset's value)."""
    return {k: v for k, v in options.items() if v is not None}


def _check_models(models: list[str]) -> list[str]:
    """The models of --models, checked: registered names or scheme files, each optionally with a step size
    ('res@0.5', `sspnet.nn.registry.split_step_size`)."""
    from sspnet.nn.registry import check_model, split_step_size

    if not models:
        raise ValueError("--models: give at least one model")
    if len(set(models)) != len(models):
        raise ValueError(f"--models lists a model twice: {models}")
    for m in models:
        check_model(split_step_size(m)[0])  # ValueError listing the valid names
    return models
