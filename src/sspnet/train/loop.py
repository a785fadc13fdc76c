"""Training loop: standard or adversarial training, crash-safe run folder, exact resume, DDP under torchrun.

    from sspnet.train import TrainConfig, train
    result = train(TrainConfig(dataset="mnist5k", model="ssp2", epochs=2, save="runs/demo"))

The parts: `setup.prepare` builds the run (data, model, `TrainState`, adversary, `RunFolder`), `step.train_step`
does one optimizer step, `step.evaluate_clean` the validation and test evaluations, this module the loop around
them. Model selection: model_acc.pt / model_loss.pt hold the epoch of best accuracy / loss on the split
`select_on` names (the validation split held out of the training images by default), never chosen by default
on the test set that robustness is then measured on.

Determinism: batch order and augmentation are a pure function of (seed, epoch) (`sspnet.data.Batches`); random
starts and noise of the adversary come from `step_generator(seed, epoch, step, device, rank)`. last.pt is
written at every epoch end and every `save_every` steps, so on CPU a run killed at any moment and resumed ends
with bit-identical weights and metrics (timing fields aside). Host syncs happen only every `log_interval` /
`save_every` steps (the NaN guard and Ctrl-C are checked there) and at epoch ends.
"""

from __future__ import annotations

import functools
import gc
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sspnet import distributed as dist
from sspnet.train.config import TrainConfig
from sspnet.train.setup import Run, prepare
from sspnet.train.sources import option_sources
from sspnet.train.step import evaluate_clean, train_step, warmup_fraction


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; `epoch` and `step` are 1-based, last.pt is the last good state."""

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step


@dataclass
class TrainResult:
    """What a finished `train` call returns. history: the metrics.jsonl records; best_*: the best accuracy (%)
    and mean cross-entropy over the epochs on the split `selected_on` (val | test; None with none)."""

    run_dir: Path
    epochs_completed: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float | None = None
    best_loss: float | None = None
    selected_on: str = "none"

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def step_generator(seed: int, epoch: int, step: int, device: torch.device, rank: int = 0) -> torch.Generator:
    """A generator for the adversary's randomness at (seed, epoch, step, rank), independent of any history."""
    z = (
        seed * 0x9E3779B97F4A7C15
        + epoch * 0xBF58476D1CE4E5B9
        + step * 0x94D049BB133111EB
        + rank * 0xD1B54A32D192ED03
        + 1
    ) % (1 << 64)
    z = ((z ^ (z >> 31)) * 0xD6E8FEB86659FD93) % (1 << 64)
    g = torch.Generator(device=device)
    g.manual_seed((z ^ (z >> 32)) & ((1 << 63) - 1))
    return g


class _Stop:
    """SIGINT handler: the first Ctrl-C asks the loop to stop at the next sync point, a second one aborts.

    A second SIGINT within `SAME_PRESS` seconds of the first counts as the same Ctrl-C: a terminal's Ctrl-C
    reaches every process of its group, so `sspnet compare`'s workers get it from the terminal and again from
    the driver that forwards it."""

    SAME_PRESS = 2.0

    def __init__(self):
        self.requested = False
        self._old = None
        self._first = 0.0

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: KeyboardInterrupt arrives as usual
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self._first < self.SAME_PRESS:
                return
            raise KeyboardInterrupt
        self.requested, self._first = True, time.monotonic()

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(config: TrainConfig, given: Mapping[str, str] | Iterable[str] | None = None) -> TrainResult:
    """Train per `config` (see the module docstring); returns the run's metrics. given: the options the caller
    set, {option: source} or their names, for config.json's "sources" (`sspnet.train.sources`; None: an option
    whose value differs from its dataclass default counts as set by the caller).

    Raises ValueError (bad options, resume mismatch), FileExistsError (folder in use without resume/force),
    NonFiniteLossError (NaN/inf loss; last.pt keeps the last good state) and KeyboardInterrupt after saving
    last.pt on Ctrl-C.
    """
    config.validate()
    cfg = config.resolved()
    created = not dist.is_distributed()
    info = dist.init_distributed(cfg.device)
    run, finished = None, False
    try:
        run = prepare(cfg, info, config.defaulted(), option_sources(config, given))
        result = _train_run(run)
        finished = True
        return result
    finally:
        if run is not None:
            run.folder.release()
        if created and info.distributed:
            # DDP holds the process group: left to the interpreter's exit, gloo's threads can abort the process
            run = None
            gc.collect()
            if finished:
                dist.barrier()  # no barrier after an error: the other ranks may be gone
            dist.cleanup()


def _train_run(run: Run) -> TrainResult:
    """The epochs still to do: train, evaluate, write the epoch's files; last.pt saved on Ctrl-C."""
    cfg, st, folder = run.cfg, run.state, run.folder
    what = f"resumed at epoch {st.epoch + 1} step {st.step}" if run.resumed else "started"
    folder.log(
        f"run {what}: {cfg.dataset} {cfg.model} adv={cfg.adv} opt={cfg.opt} lr={cfg.lr} "
        f"batch={cfg.batch_size} epochs={cfg.epochs} steps/epoch={run.steps} device={run.device} "
        f"world_size={run.info.world_size} amp={run.amp_dtype} val_split={cfg.val_split:g} "
        f"select_on={cfg.select_on}" + (f" batchnorm={run.batchnorm}" if run.batchnorm else "")
    )
    if cfg.select_on == "test":
        folder.log(
            f"{folder.checkpoint_name('acc')} / {folder.checkpoint_name('loss')} are selected on the test set "
            "(--select-on test): accuracy and robustness measured with them on that test set are "
            "optimistically biased"
        )
    tb = folder.tensorboard()
    with _Stop() as stop:
        try:
            while st.epoch < cfg.epochs:
                images0 = _train_epoch(run, stop, tb)
                rec = _epoch_record(run, images0)
                st.next_epoch()
                run.history.append(rec)
                folder.end_epoch(rec, st)
                _log_epoch(run, rec, tb)
        except KeyboardInterrupt:
            if bool(_finite_state(run)):
                folder.save_state(st)
                folder.log(
                    f"interrupted at epoch {st.epoch + 1} step {st.step}; {folder.STATE} saved. Continue "
                    f"with: sspnet train --resume {folder.path}"
                )
            else:  # aborted between two checks with broken weights: keep the last good last.pt
                folder.log(
                    f"interrupted at epoch {st.epoch + 1} step {st.step} with non-finite weights; "
                    f"{folder.STATE} not overwritten (it keeps the last good state)"
                )
            raise
        finally:
            if tb is not None:
                tb.close()
    folder.log(
        f"done: {st.epoch} epochs"
        + (
            ""
            if cfg.select_on == "none"
            else f", best {cfg.select_on} acc {st.best['acc']}, best {cfg.select_on} loss {st.best['loss']}"
        )
    )
    return TrainResult(folder.path, st.epoch, list(run.history), st.best["acc"], st.best["loss"], cfg.select_on)


def _train_epoch(run: Run, stop: _Stop, tb) -> float:
    """The remaining steps of the current epoch; returns this rank's image count when it (re)started."""
    from tqdm import tqdm

    cfg, st = run.cfg, run.state
    epoch, single = st.epoch, not run.info.distributed
    # first non-finite step (1-based; 0: none so far), kept on the device: no sync per step
    bad = torch.zeros((), dtype=st.meter.sums.dtype, device=run.device)
    images0 = st.meter.totals()["count"]
    st.start_clock()
    bar = tqdm(
        total=run.steps,
        initial=st.step,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False,
        disable=cfg.quiet or not run.info.is_main,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for step, (x, y) in zip(range(st.step, run.steps), run.train_batches.iterate(epoch, st.step)):
            if run.memory_format is not None:
                x = x.contiguous(memory_format=run.memory_format)
            show = None
            if tb is not None and step == 0:
                show = functools.partial(_show_adversarial, tb, epoch + 1)
            if run.adversary is not None:
                run.adversary.set_fraction(warmup_fraction(epoch * run.steps + step, cfg.eps_warmup * run.steps))
            loss_sum = train_step(
                run.net,
                st.optimizer,
                st.scheduler,
                st.scaler,
                (x, y),
                st.meter,
                adversary=run.adversary,
                generator=_generator(run, epoch, step),
                loss_scale=run.loss_scale(step),
                amp_dtype=run.amp_dtype,
                clean_metrics=cfg.clean_metrics,
                show=show,
            )
            bad = torch.where((bad == 0) & ~torch.isfinite(loss_sum), float(step + 1), bad)
            st.step = done = step + 1
            at_save = bool(cfg.save_every) and done % cfg.save_every == 0 and done < run.steps
            if at_save or done % cfg.log_interval == 0 or done == run.steps or (single and stop.requested):
                _check(run, bad, stop)
                if at_save:
                    run.folder.save_state(st)
                if not bar.disable:
                    _show_progress(run, bar, images0)
            bar.update(1)
    finally:
        bar.close()
    _check(run, bad, None)
    return images0


def _show_adversarial(tb: Any, epoch: int, x_adv: torch.Tensor) -> None:
    """TensorBoard: the first 16 adversarial training images of an epoch."""
    tb.add_images("adversarial_train_images", x_adv[:16].float().cpu(), epoch)


def _generator(run: Run, epoch: int, step: int) -> torch.Generator | None:
    if run.adversary is None:
        return None
    return step_generator(run.cfg.seed, epoch, step, run.device, run.info.rank)


def _finite_state(run: Run) -> torch.Tensor:
    """1 when every weight, buffer and floating optimizer-state tensor is finite, else 0 (on the device, no
    sync): a huge --decay can overflow the weights at a step whose loss was still finite."""
    st = run.state
    tensors = [t for t in st.model.state_dict().values() if t.is_floating_point()]
    tensors += [
        v
        for s in st.optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]
    if not tensors:
        return torch.ones((), device=run.device)
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all().float()


def _nonfinite_advice(run: Run) -> str:
    """What to do after a non-finite loss or weights: commands that work (a resume keeps the run's --lr)."""
    last = run.folder.state_file
    kept = (
        f"{last} keeps the last good state, but a resume keeps the run's --lr and --decay and would fail again"
        if last.is_file()
        else "no training state was saved"
    )
    return f"{kept}; start the run over with a lower --lr (or --decay) and --force"


def _check(run: Run, bad: torch.Tensor, stop: _Stop | None) -> None:
    """Sync point, agreed by all ranks: NonFiniteLossError for a non-finite loss or non-finite weights /
    optimizer state (checked here, before any save), KeyboardInterrupt on Ctrl-C."""
    requested = stop is not None and stop.requested
    broken = 1.0 - _finite_state(run).to(bad.dtype)
    flags = torch.stack([bad, torch.full_like(bad, float(requested)), broken])
    first_bad, stopping, weights_bad = dist.all_reduce_max(flags).tolist()
    if first_bad or weights_bad:
        epoch, step = run.state.epoch + 1, int(first_bad) or run.state.step
        what = (
            f"non-finite training loss (NaN or inf) at epoch {epoch}, step {step}"
            if first_bad
            else f"non-finite weights or optimizer state (NaN or inf) at epoch {epoch}, by step {step}"
        )
        msg = f"{what}; stopped. {_nonfinite_advice(run)}"
        run.folder.log(msg)
        raise NonFiniteLossError(msg, epoch, step)
    if stopping:
        raise KeyboardInterrupt


def _show_progress(run: Run, bar, images0: float) -> None:
    """Progress-bar postfix: running loss / accuracy of the batches trained on, images per second."""
    st = run.state
    p = "" if run.adversary is None else "adv_"
    means, count = st.meter.means(), st.meter.totals()["count"]
    rate = (count - images0) / max(time.perf_counter() - st.clock, 1e-9)
    bar.set_postfix(loss=f"{means[p + 'loss'] or 0:.4f}", acc=f"{means[p + 'acc'] or 0:.2f}%", img_s=f"{rate:.0f}")


def _evaluate(run: Run, batches) -> tuple[float | None, float | None]:
    """(mean cross-entropy, accuracy in %) of the model on a split's batches; (None, None) without the split."""
    if batches is None:
        return None, None
    return evaluate_clean(
        run.state.model, batches.iterate(0), amp_dtype=run.amp_dtype, memory_format=run.memory_format, device=run.device
    )


def _epoch_record(run: Run, images0: float) -> dict[str, Any]:
    """The metrics.jsonl record of the epoch just trained (validation and test evaluations included; best
    metrics on the selection split updated: best_acc / best_loss say whether model_acc.pt / model_loss.pt are
    this epoch's model)."""
    cfg, st = run.cfg, run.state
    seconds = st.seconds + time.perf_counter() - st.clock
    total = st.meter.reduced()
    sums, means = total.totals(), total.means()
    val_loss, val_acc = _evaluate(run, run.val_batches)
    test_loss, test_acc = _evaluate(run, run.test_batches)
    clean = cfg.adv == "none" or cfg.clean_metrics  # else the clean loss / correct were not measured
    rec = {
        "epoch": st.epoch + 1,
        "train_loss": means["loss"] if clean else None,
        "train_acc": means["acc"] if clean else None,
        "adv_train_loss": means["adv_loss"],
        "adv_train_acc": means["adv_acc"],
        "val_loss": val_loss,
        "val_acc": val_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "lr": cfg.lr * st.scheduler.lr_lambdas[0](st.epoch * run.steps),
        "steps": run.steps,
        "images": int(sums["count"]),
        "images_per_s": (sums["count"] - images0 * run.info.world_size) / max(seconds, 1e-9),
        "seconds": seconds,
    }
    best = {"acc": False, "loss": False}
    if cfg.select_on != "none":
        best = st.update_best(rec[f"{cfg.select_on}_loss"], rec[f"{cfg.select_on}_acc"])
    rec["best_acc"], rec["best_loss"] = best["acc"], best["loss"]
    return rec


def _log_epoch(run: Run, rec: dict[str, Any], tb) -> None:
    """The epoch's train.log line and TensorBoard scalars."""
    parts = []
    if rec["train_loss"] is not None:
        parts.append(f"loss {rec['train_loss']:.4f} acc {rec['train_acc']:.2f}%")
    if rec["adv_train_loss"] is not None:
        parts.append(f"adv loss {rec['adv_train_loss']:.4f} adv acc {rec['adv_train_acc']:.2f}%")
    for split in ("val", "test"):
        if rec[f"{split}_loss"] is not None:
            parts.append(f"| {split} loss {rec[f'{split}_loss']:.4f} acc {rec[f'{split}_acc']:.2f}%")
    run.folder.log(
        f"epoch {rec['epoch']}/{run.cfg.epochs} train {' '.join(parts)} | lr {rec['lr']:.3g} | "
        f"{rec['images_per_s']:.0f} img/s {rec['seconds']:.1f} s"
    )
    if tb is not None:
        for key, v in rec.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and key != "epoch":
                tb.add_scalar(key, v, rec["epoch"])
