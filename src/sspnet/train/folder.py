"""The run folder of `sspnet train`: every file of a run, written only by rank 0, each atomically. The file names
are `sspnet.io.runlayout.RunLayout`'s (RunFolder is a RunLayout); the readers use the same table.

    config.json     {"format_version": 2, "config": resolved TrainConfig (eps/alpha in pixel units),
                     "defaulted": the options filled from defaults, "sources": {option: where its value came
                     from: flag | dataset recipe | ... (`sspnet.train.sources`)}, "budget_history": [{"epochs": E,
                     "at_epoch": epochs done, "at_step": steps done in the next epoch[, "milestones"]}, ...] (one
                     entry per --epochs the run was started or resumed with), "world_size", "model_config",
                     "scheme_hashes": {scheme file: hash of its coefficients} (a resume refuses an edited
                     file), "provenance"}
    .sspnet.lock    while a process trains the run: its PID (`sspnet.io.lock`; a second process is refused)
    metrics.jsonl   one JSON record per finished epoch (val_* / test_*: clean loss and accuracy in %)
    train.log       timestamped lines (also echoed to stderr unless quiet)
    model_acc.pt / model_loss.pt    the model of the best accuracy / loss on the split --select-on names (val
                    by default; not written with select_on none)
    model_final.pt  the model after the latest epoch
                    Every model_*.pt is a `sspnet.nn.save_checkpoint` file with "args" (the original code's
                    argparse names and units), "epoch", "selected_on" (val | test | final), "criterion" (acc |
                    loss | final), "val_split" and the epoch's val_acc / val_loss / test_acc / test_loss.
    last.pt         the `TrainState` (see `sspnet.train.state`)
    tb/             TensorBoard events (--tensorboard)
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from sspnet import distributed as dist
from sspnet.data.specs import get_dataset_spec
from sspnet.io import files as fileio
from sspnet.io.jsonio import canonical_hash
from sspnet.io.runlayout import RunLayout
from sspnet.train.config import CONFIG_FORMAT_VERSION, IDENTITY_FIELDS, TrainConfig
from sspnet.train.options import EPOCH_DEPENDENT, to_cli_units
from sspnet.train.run_config import read_run_config, read_run_meta
from sspnet.train.sources import resumed_sources
from sspnet.train.state import TrainState


def load_state(path: str | Path) -> dict[str, Any]:
    """A last.pt training state (the safe loader: torch.load with weights_only=True, on CPU); ValueError in one
    line naming the file when it is empty, truncated or no checkpoint."""
    from sspnet.nn.checkpoints import safe_load

    return safe_load(path)


def recorded_data_root(path: str | Path) -> str | None:
    """The data folder a training run recorded (config.json's data_root) for a run folder or a checkpoint inside
    one; None when there is none (no config.json, mnist5k, or no --data-root at training). A recorded folder
    that does not exist here is not used (the default data root is, with a note on stderr)."""
    path = Path(path)
    layout = RunLayout(path if path.is_dir() else path.parent)
    if not layout.config.is_file():
        return None
    try:
        root = read_run_config(layout.path).get("data_root")
    except (ValueError, OSError):
        return None
    if not root:
        return None
    if not Path(root).expanduser().is_dir():
        print(
            f"note: the data folder {root} recorded in {layout.config} does not exist here; using the default "
            f"data folder (pass --data-root)",
            file=sys.stderr,
        )
        return None
    return str(root)


def scheme_hashes(cfg: TrainConfig) -> dict[str, str]:
    """{scheme file: hash of its coefficients} for the model and block groups that are scheme files (registered
    names have none): config.json records them, and a resume refuses a file whose coefficients changed."""
    from sspnet.nn.registry import model_identity

    out = {}
    for name in [cfg.model, *(cfg.groups or [])]:
        identity = model_identity(name)
        if isinstance(identity, dict):
            out[str(name)] = canonical_hash(identity)
    return out


class RunFolder(RunLayout):
    """The files of one run (cfg.save; their paths: the `RunLayout` attributes). Every method that writes is a
    no-op on ranks other than 0.

    Use: `check()` before loading anything, `open()` once data and model are known good (clears the old run
    with --force, returns the last.pt state with --resume), then the writers. defaulted: the options of cfg
    filled from defaults (`TrainConfig.defaulted`); sources: {option: source} (`sspnet.train.sources`).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        info: dist.DistInfo,
        defaulted: list[str] | None = None,
        sources: dict[str, str] | None = None,
    ):
        super().__init__(cfg.save)
        self.cfg, self.info = cfg, info
        self.main = info.is_main
        self.existing: list[str] = []
        self.defaulted = list(defaulted or [])
        self.sources = dict(sources or {})
        self.saved: dict[str, Any] = {}  # resume: the stored options and config.json's other records
        self.meta: dict[str, Any] = {"defaulted": [], "budget_history": []}
        self.state: dict[str, Any] | None = None  # resume: last.pt, read by check()
        self._lock = None  # rank 0: the folder's FolderLock from check() to release()

    def check(self) -> None:
        """ValueError / FileExistsError when the folder does not fit --resume / --force (nothing written);
        FolderLockedError when another process works in it (rank 0 holds the folder's lock from here to
        `release()`).

        An epoch-dependent option the run took from its default (milestones) must equal the default for the
        new --epochs. A resume reads last.pt here: it must exist and be readable, hold no more epochs than
        --epochs, and every scheme file must still hold the coefficients the run started with."""
        from sspnet.io.lock import FolderLock

        if self.main and self._lock is None:
            self._lock = FolderLock(self.path, "sspnet train").acquire()
        try:
            self._check()
        except BaseException:
            self.release()
            raise

    def _check(self) -> None:
        run, cfg = self.path, self.cfg
        self.existing = self.train_files()
        if cfg.resume:
            self.saved, self.meta = read_run_config(run), read_run_meta(run)
            saved = dict(self.saved)
            fresh = dataclasses.replace(cfg, **{k: None for k in EPOCH_DEPENDENT}).resolved()
            saved.update({k: getattr(fresh, k) for k in EPOCH_DEPENDENT if k in self.meta["defaulted"]})
            bad = [
                f"{k}={saved.get(k)!r} (asked: {getattr(cfg, k)!r})"
                for k in IDENTITY_FIELDS
                if k in saved and saved.get(k) != getattr(cfg, k)
            ]
            if bad:
                raise ValueError(
                    f"cannot resume {run}: it was made with other settings: {'; '.join(bad)}. "
                    "Resume without those flags, or start a new run with another --out (or --force)"
                )
            self._check_schemes()
            self.state = self._read_last()
        elif self.existing and not cfg.force:
            raise FileExistsError(
                f"run folder {run} already holds a run ({', '.join(self.existing)}); pass "
                f"--resume {run} to continue it, --force to overwrite it, or another --out folder"
            )

    def _check_schemes(self) -> None:
        """Resume: ValueError when a scheme file's coefficients differ from those the run started with."""
        stored = self.meta.get("scheme_hashes") or {}
        now = scheme_hashes(self.cfg)
        changed = [name for name, h in stored.items() if name in now and now[name] != h]
        if changed:
            raise ValueError(
                f"cannot resume {self.path}: the scheme file {changed[0]} was edited since the run "
                "started (its coefficients differ); restore it, or start a new run with another --out "
                "(or --force)"
            )

    def _read_last(self) -> dict[str, Any]:
        """Resume: last.pt, checked against --epochs; one-line errors saying what to do."""
        run, last = self.path, self.state_file
        if not last.is_file():
            raise FileNotFoundError(
                f"cannot resume {run}: it has no {self.STATE} (the run saved no training state "
                "yet); start it over with --force instead of --resume"
            )
        try:
            state = load_state(last)
        except ValueError as exc:
            raise ValueError(f"cannot resume {run}: {exc}; or start the run over with --force") from None
        done = state.get("epoch") if isinstance(state, dict) else None
        if isinstance(done, int) and self.cfg.epochs < done:
            raise ValueError(
                f"cannot resume {run} with --epochs {self.cfg.epochs}: it has trained {done} epochs "
                f"already; pass --epochs {done} or more (nothing was changed)"
            )
        return state

    def release(self) -> None:
        """Drop the folder's lock (rank 0; a no-op when not held)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def open(self) -> dict[str, Any] | None:
        """Resume: the last.pt state read by `check()` (its epoch sums, those of all ranks, on rank 0 only: the
        other ranks start from zero). Otherwise delete the old run's files."""
        if self.cfg.resume:
            if self.main or self.state is None:
                return self.state
            return {**self.state, "sums": self.state["sums"].new_zeros(self.state["sums"].shape)}
        dist.barrier()
        if self.main:
            for n in self.existing:
                (self.path / n).unlink(missing_ok=True)
        dist.barrier()
        return None

    def start(self, epoch: int, step: int, model_config: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Write config.json (again on resume, with the new budget in its history); on resume drop the metrics
        lines of epochs after `epoch` (redone after a crash). epoch / step: the position the run starts at.
        Returns the metrics records kept (the history)."""
        history: list[dict[str, Any]] = []
        metrics = self.metrics
        if self.cfg.resume and metrics.is_file():
            history = [r for r in self.read_metrics() if r["epoch"] <= epoch]
        if self.main:
            if self.cfg.resume and metrics.is_file():
                fileio.atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in history))
            fileio.atomic_write_json(
                self.config,
                {
                    "format_version": CONFIG_FORMAT_VERSION,
                    "config": dataclasses.asdict(self.cfg),
                    "defaulted": self._defaulted(),
                    "sources": self._sources(),
                    "budget_history": self._budgets(epoch, step),
                    "world_size": self.info.world_size,
                    "model_config": model_config,
                    "scheme_hashes": scheme_hashes(self.cfg),
                    "provenance": fileio.provenance(),
                },
            )
        return history

    def _defaulted(self) -> list[str]:
        """The options filled from defaults: on resume those of the run so far (the saved values are passed
        back explicitly), an epoch-dependent one only while it still is a default."""
        if not self.cfg.resume:
            return sorted(self.defaulted)
        kept = {k for k in self.meta["defaulted"] if k not in EPOCH_DEPENDENT}
        return sorted(kept | set(self.defaulted))

    def _sources(self) -> dict[str, str]:
        """Where each option came from; on resume an option not given again keeps its recorded source
        (`sspnet.train.sources.resumed_sources`)."""
        if not self.cfg.resume or not self.sources:
            return dict(self.sources)
        return resumed_sources(self.sources, self.cfg, self.saved, self.meta)

    def _budgets(self, epoch: int, step: int) -> list[dict[str, Any]]:
        """budget_history with an entry for this start when it brings a new --epochs (or is the first)."""
        budgets = [dict(b) for b in self.meta["budget_history"]]
        if self.cfg.resume and not budgets and "epochs" in self.saved:  # config.json from before the history
            budgets = [{"epochs": self.saved["epochs"], "at_epoch": 0, "at_step": 0}]
        if not budgets or budgets[-1]["epochs"] != self.cfg.epochs:
            entry = {"epochs": self.cfg.epochs, "at_epoch": epoch, "at_step": step}
            if self.cfg.schedule == "multistep":
                entry["milestones"] = list(self.cfg.milestones or [])
            budgets.append(entry)
        return budgets

    def log(self, msg: str) -> None:
        """A timestamped train.log line, echoed to stderr unless quiet."""
        if not self.main:
            return
        fileio.append_line(self.log_file, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}")
        if not self.cfg.quiet:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def tensorboard(self):
        """A SummaryWriter on RUN/tb (rank 0 with --tensorboard), else None."""
        if not (self.main and self.cfg.tensorboard):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("tensorboard is not installed (pip install tensorboard); continuing without it")
            return None
        return SummaryWriter(str(self.tensorboard_dir))

    def save_state(self, state: TrainState) -> None:
        """last.pt = state.state_dict(), atomically (a crash while saving keeps the previous one), with the
        epoch's metric sums of all ranks: mid-epoch under torchrun a collective, so every rank calls it (at an
        epoch end, step 0, the sums are zero and rank 0 alone may call it)."""
        sums = state.meter.sums
        if self.info.distributed and state.step:
            sums = dist.all_reduce_sum(sums.detach().clone())
        if self.main:
            fileio.atomic_torch_save({**state.state_dict(), "sums": sums.detach().cpu()}, self.state_file)

    def end_epoch(self, rec: dict[str, Any], state: TrainState) -> None:
        """The metrics line, best / final checkpoints, then last.pt (a crash in between redoes the epoch)."""
        if not self.main:
            return
        from sspnet.nn.checkpoints import save_checkpoint

        fileio.append_line(self.metrics, json.dumps(rec))
        extra = {
            "args": original_args(self.cfg),
            "epoch": rec["epoch"],
            "val_split": self.cfg.val_split,
            **{k: rec[k] for k in ("val_acc", "val_loss", "test_acc", "test_loss")},
        }
        for key in ("acc", "loss"):
            if rec["best_" + key]:
                save_checkpoint(
                    self.checkpoint(key), state.model, **extra, selected_on=self.cfg.select_on, criterion=key
                )
        save_checkpoint(self.checkpoint("final"), state.model, **extra, selected_on="final", criterion="final")
        self.save_state(state)


def original_args(cfg: TrainConfig) -> dict[str, Any]:
    """The original code's argparse names and units (eps / alpha in 1/255 on cifar10/tiny), for checkpoints'
    "args" entry."""
    spec = get_dataset_spec(cfg.dataset)

    def cli(v: float | None) -> float | None:
        return None if v is None else to_cli_units(v, spec)

    return {
        "model": cfg.model,
        "block": cfg.blocks,
        "lr": cfg.lr,
        "decay": cfg.decay,
        "tbsize": cfg.batch_size,
        "iters": cfg.steps,
        "adv": cfg.adv,
        "attack": cfg.adv,
        "epochs": cfg.epochs,
        "save": cfg.save,
        "opt": cfg.opt,
        "norm": cfg.norm,
        "seed": cfg.seed,
        "eps": cli(cfg.eps),
        "alpha": cli(cfg.alpha),
        "dataset": cfg.dataset,
        "groups": cfg.groups,
    }
