"""Training loop: standard or adversarial training, crash-safe run folder, exact resume, DDP under torchrun.

    from sspnet.train import TrainConfig, train
    result = train(TrainConfig(dataset="mnist5k", model="ssp2", epochs=2, save="runs/demo"))

Run folder (only rank 0 writes; every file atomically): config.json (resolved config + provenance),
metrics.jsonl (one line per epoch), train.log, model_acc.pt / model_loss.pt (best test accuracy / loss),
model_final.pt (latest epoch), last.pt (everything needed to continue: weights, optimizer, scheduler, scaler,
position (epoch, step), running sums of the epoch, best metrics, RNG states).

Determinism: batch order and augmentation are a pure function of (seed, epoch) (`sspnet.data.Batches`); random
starts and noise of the adversary come from a generator seeded from (seed, epoch, step). last.pt is written at
every epoch end and every `save_every` steps, so on CPU a run killed at any moment and resumed ends with
bit-identical weights and metrics (timing fields aside).
"""
from __future__ import annotations

import dataclasses
import gc
import json
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sspnet import distributed as dist
from sspnet.io import files as fileio
from sspnet.nn.models import preferred_memory_format
from sspnet.train.optim import build_optimizer, build_schedule
from sspnet.train.folder import check_folder, load_state, open_folder
from sspnet.data.specs import get_dataset_spec
from sspnet.train.config import ADVERSARIES, ALIASES, IDENTITY_FIELDS, TrainConfig, read_run_config

__all__ = ["ADVERSARIES", "ALIASES", "IDENTITY_FIELDS", "NonFiniteLossError", "TrainConfig", "TrainResult",
           "load_state", "read_run_config", "step_generator", "train"]

STATE_FORMAT = "sspnet-train-state"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; `epoch` and `step` are 1-based, last.pt is the last good state."""

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step


@dataclass
class TrainResult:
    """What a finished `train` call returns. history: the metrics.jsonl records; best_*: over test epochs."""

    run_dir: Path
    epochs_completed: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float | None = None
    best_loss: float | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def step_generator(seed: int, epoch: int, step: int, device: torch.device, rank: int = 0) -> torch.Generator:
    """A generator for the adversary's randomness at (seed, epoch, step, rank), independent of any history."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + step * 0x94D049BB133111EB
         + rank * 0xD1B54A32D192ED03 + 1) % (1 << 64)
    z = ((z ^ (z >> 31)) * 0xD6E8FEB86659FD93) % (1 << 64)
    g = torch.Generator(device=device)
    g.manual_seed((z ^ (z >> 32)) & ((1 << 63) - 1))
    return g


def _create_model(cfg: TrainConfig) -> nn.Module:
    """sspnet.create_model with only the options the user set (None -> model defaults)."""
    from sspnet.nn.models import create_model

    kw = {"dataset": cfg.dataset, "blocks": cfg.blocks, "norm": cfg.norm, "groups": cfg.groups, "init": cfg.init}
    kw = {k: v for k, v in kw.items() if v is not None}
    if cfg.activation_checkpointing:
        kw["activation_checkpointing"] = True
    return create_model(cfg.model, seed=cfg.seed, **kw)


def _make_attack(cfg: TrainConfig, model: nn.Module, eps: float, alpha: float):
    """The training adversary (None for `none` and `ball`, done in the step). eps/alpha in pixel units.

    Crafted in the model's current (train) mode as the original, or in eval mode with craft_eval.
    """
    from sspnet import attacks

    mode = "eval" if cfg.craft_eval else "keep"
    if cfg.adv == "fgsm":
        return attacks.FGSM(model, eps, mode=mode)
    if cfg.adv == "pgd":
        return attacks.PGD(model, eps, alpha, cfg.iters, random_start=True, mode=mode)
    if cfg.adv == "fast":
        return attacks.FastFGSM(model, eps, mode=mode)
    return None


class _Stop:
    """SIGINT handler: the first Ctrl-C asks the loop to stop at the next step boundary, a second one aborts."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: KeyboardInterrupt arrives as usual
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(config: TrainConfig) -> TrainResult:
    """Train per `config` (see the module docstring); returns the run's metrics.

    Raises ValueError (bad options, resume mismatch), FileExistsError (folder in use without resume/force),
    NonFiniteLossError (NaN/inf loss; last.pt keeps the last good state) and KeyboardInterrupt after saving
    last.pt on Ctrl-C.
    """
    config.validate()
    cfg = config.resolved()
    created = not dist.is_distributed()
    info = dist.init_distributed(cfg.device)
    trainer, finished = None, False
    try:
        trainer = _Trainer(cfg, info)
        result = trainer.run()
        finished = True
        return result
    finally:
        if created and info.distributed:
            # DDP holds the process group: left to the interpreter's exit, gloo's threads can abort the process
            trainer = None
            gc.collect()
            if finished:
                dist.barrier()  # no barrier after an error: the other ranks may be gone
            dist.cleanup()


class _Trainer:
    def __init__(self, cfg: TrainConfig, info: dist.DistInfo):
        from sspnet.data import Batches, load

        self.cfg, self.info = cfg, info
        self.spec = spec = get_dataset_spec(cfg.dataset)
        self.device = torch.device(info.device)
        self.main = info.is_main
        W = info.world_size
        if cfg.batch_size % W:
            raise ValueError(f"--tbsize {cfg.batch_size} must be divisible by the number of processes ({W})")
        existing = check_folder(cfg)
        xtr, ytr = load(cfg.dataset, root=cfg.data_root, split="train", device=self.device)
        xte, yte = load(cfg.dataset, root=cfg.data_root, split="test", device=self.device)
        if cfg.test_limit and cfg.test_limit < xte.shape[0]:  # evenly spaced: test splits may be sorted by class
            idx = torch.arange(cfg.test_limit, device=xte.device) * xte.shape[0] // cfg.test_limit
            xte, yte = xte[idx], yte[idx]
        self.n_train = n = xtr.shape[0]
        if cfg.batch_size > n:
            raise ValueError(f"--tbsize {cfg.batch_size} is larger than the {n} training images of {cfg.dataset}")
        tail = n % cfg.batch_size
        self.train_batches = Batches(xtr, ytr, cfg.batch_size // W, shuffle=True, seed=cfg.seed,
                                     crop_pad=spec.crop_pad, flip=spec.flip, drop_last=0 < tail < W,
                                     rank=info.rank, world_size=W)
        self.test_batches = Batches(xte, yte, max(1, cfg.eval_batch_size // W), shuffle=False, rank=info.rank,
                                    world_size=W)
        self.steps = len(self.train_batches) if cfg.steps_per_epoch is None else min(len(self.train_batches),
                                                                                      cfg.steps_per_epoch)
        cuda = self.device.type == "cuda"
        self.amp_dtype = None
        if cfg.amp if cfg.amp is not None else cuda:
            if not cuda:
                raise ValueError("--amp needs a CUDA device")
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.acc_dtype = torch.float32 if self.device.type == "mps" else torch.float64

        self.model = _create_model(cfg).to(self.device)
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None else
                              preferred_memory_format(self.model, self.device) == torch.channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.net = DDP(self.model, device_ids=[self.device.index] if cuda else None)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.opt, cfg.lr, cfg.decay, spec.arch)
        self.scheduler = build_schedule(self.optimizer, cfg.schedule, epochs=cfg.epochs, steps_per_epoch=self.steps,
                                        milestones=cfg.milestones)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.eps_px, self.alpha_px = cfg.eps * spec.eps_unit, cfg.alpha * spec.eps_unit
        self.attack = _make_attack(cfg, self.model, self.eps_px, self.alpha_px)
        self.epoch, self.step, self.seconds, self.t0 = 0, 0, 0.0, time.perf_counter()
        self.best = {"acc": None, "loss": None}
        self.sums = self._zero_sums()
        self.history: list[dict[str, Any]] = []
        # the old run is cleared (--force) only once data and model are known to be good
        self.run_dir, state = Path(cfg.save), open_folder(cfg, info, existing)
        self.tb = None
        if state is not None:
            self._restore(state)
        elif cfg.init_from:
            self._load_init(cfg.init_from)
        if self.main:
            self._start_files(state is not None)

    # ---- state -------------------------------------------------------------------------------------------
    def _zero_sums(self) -> torch.Tensor:
        """Running sums of the epoch on device: [loss, correct, count, adv_loss, adv_correct, adv_count]."""
        return torch.zeros(6, dtype=self.acc_dtype, device=self.device)

    def _state(self) -> dict[str, Any]:
        import random

        cuda = self.device.type == "cuda"
        return {"format": STATE_FORMAT, "format_version": 1, "config": dataclasses.asdict(self.cfg),
                "model_config": dict(getattr(self.model, "config", {})),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "epoch": self.epoch, "step": self.step, "sums": self.sums.detach().cpu(), "seconds": self._seconds(),
                "best": dict(self.best), "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                                                 "cuda": torch.cuda.get_rng_state_all() if cuda else None}}

    def _restore(self, st: dict[str, Any]) -> None:
        import random

        if st.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.run_dir / 'last.pt'} is not an sspnet training state")
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.epoch, self.step, self.seconds = int(st["epoch"]), int(st["step"]), float(st["seconds"])
        self.sums = st["sums"].to(self.device, self.acc_dtype)
        self.best = dict(st["best"])
        torch.set_rng_state(st["rng"]["torch"])
        random.setstate(st["rng"]["python"])
        if st["rng"].get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])

    def _load_init(self, path: str) -> None:
        from sspnet.nn.checkpoints import load_model

        src = load_model(path)
        mine, theirs = self.model.state_dict(), src.state_dict()
        if set(mine) != set(theirs) or any(mine[k].shape != theirs[k].shape for k in mine):
            raise ValueError(f"--init-from {path}: its model {getattr(src, 'config', '?')} does not match this run's "
                             f"model {getattr(self.model, 'config', '?')}")
        self.model.load_state_dict(theirs)

    def _seconds(self) -> float:
        """Training seconds of the current epoch so far (0 at an epoch boundary)."""
        return self.seconds + (time.perf_counter() - self.t0 if self.step else 0.0)

    def _save_last(self) -> None:
        if self.main:
            fileio.atomic_torch_save(self._state(), self.run_dir / "last.pt")

    def _start_files(self, resumed: bool) -> None:
        run = self.run_dir
        metrics = run / "metrics.jsonl"
        if self.cfg.resume and metrics.is_file():  # drop lines of epochs redone after the crash
            lines = [ln for ln in metrics.read_text(encoding="utf-8").splitlines() if ln.strip()]
            self.history = [r for r in map(json.loads, lines) if r["epoch"] <= self.epoch]
            fileio.atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in self.history))
        # (re)written on resume too, so it records extended epochs
        fileio.atomic_write_json(run / "config.json", {"config": dataclasses.asdict(self.cfg),
                                                       "eps_px": self.eps_px, "alpha_px": self.alpha_px,
                                                       "world_size": self.info.world_size,
                                                       "model_config": getattr(self.model, "config", None),
                                                       "provenance": fileio.provenance()})
        what = f"resumed at epoch {self.epoch + 1} step {self.step}" if resumed else "started"
        self.log(f"run {what}: {self.cfg.dataset} {self.cfg.model} adv={self.cfg.adv} opt={self.cfg.opt} "
                 f"lr={self.cfg.lr} batch={self.cfg.batch_size} epochs={self.cfg.epochs} steps/epoch={self.steps} "
                 f"device={self.device} world_size={self.info.world_size} amp={self.amp_dtype}")
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(run / "tb"))
            except ImportError:
                self.log("tensorboard is not installed (pip install tensorboard); continuing without it")

    def log(self, msg: str) -> None:
        if not self.main:
            return
        fileio.append_line(self.run_dir / "train.log", f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}")
        if not self.cfg.quiet:
            from tqdm import tqdm
            tqdm.write(msg, file=sys.stderr)

    # ---- steps -------------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def _adversarial(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        cfg = self.cfg
        if cfg.adv == "ball":
            k = cfg.ball_copies
            xr = x.repeat(k, 1, 1, 1)
            noise = (torch.rand(xr.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1) * self.eps_px
            return (xr + noise).clamp_(0, 1), y.repeat(k)
        self.attack.generator = gen  # random starts depend on (seed, epoch, step) only
        with self._autocast() if self.amp_dtype == torch.bfloat16 else nullcontext():
            xa = self.attack(x, y)
        return xa.detach(), y

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        """One optimizer step; returns the loss sum of the training batch (on device) and updates self.sums."""
        cfg = self.cfg
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        sums = self.sums
        if cfg.adv != "none":
            if cfg.clean_metrics:
                from sspnet.nn.blocks import frozen_batchnorm_stats
                with torch.no_grad(), self._autocast(), frozen_batchnorm_stats(self.model):
                    clean = self.model(x).float()
                sums[0] += F.cross_entropy(clean, y, reduction="sum").to(sums.dtype)
                sums[1] += (clean.argmax(1) == y).sum()
            sums[2] += y.shape[0]
            gen = step_generator(cfg.seed, epoch, step, x.device, self.info.rank)
            x, y = self._adversarial(x, y, gen)
        # loss = sum over this rank / images of the global step * world size: DDP's mean is the global mean
        copies = cfg.ball_copies if cfg.adv == "ball" else 1
        g = self.train_batches.global_batch_size
        global_n = min(g, self.n_train - step * g) * copies
        with self._autocast():
            logits = self.net(x).float()
        loss_sum = F.cross_entropy(logits, y, reduction="sum")
        loss = loss_sum * (self.info.world_size / global_n)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        k = 0 if cfg.adv == "none" else 3
        with torch.no_grad():
            sums[k] += loss_sum.detach().to(sums.dtype)
            sums[k + 1] += (logits.argmax(1) == y).sum()
            sums[k + 2] += y.shape[0]
        if self.tb is not None and cfg.adv != "none" and step == 0:
            self.tb.add_images("adversarial_train_images", x[:16].float().cpu(), epoch + 1)
        return loss_sum.detach()

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(mean cross-entropy, accuracy in %) on the test split, all ranks together."""
        self.model.eval()
        s = torch.zeros(3, dtype=self.acc_dtype, device=self.device)
        for x, y in self.test_batches.iterate(0):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = self.model(x).float()
            s[0] += F.cross_entropy(logits, y, reduction="sum").to(s.dtype)
            s[1] += (logits.argmax(1) == y).sum()
            s[2] += y.shape[0]
        self.model.train()
        s = dist.all_reduce_sum(s).tolist()
        return s[0] / max(s[2], 1), 100.0 * s[1] / max(s[2], 1)

    def _check(self, bad: torch.Tensor, stop: _Stop) -> tuple[int, bool]:
        """Sync point: (first non-finite step (1-based) or 0, stop requested), agreed by all ranks."""
        flags = torch.stack([bad, torch.full_like(bad, float(stop.requested))])
        a, b = dist.all_reduce_max(flags).tolist()
        return int(a), bool(b)

    # ---- loop --------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        with _Stop() as stop:
            try:
                while self.epoch < cfg.epochs:
                    self._run_epoch(stop)
            except KeyboardInterrupt:
                self._save_last()
                self.log(f"interrupted at epoch {self.epoch + 1} step {self.step}; last.pt saved. Continue with: "
                         f"sspnet train --resume {self.run_dir}")
                raise
            finally:
                if self.tb is not None:
                    self.tb.close()
        self.log(f"done: {self.epoch} epochs, best test acc {self.best['acc']}, best test loss {self.best['loss']}")
        return TrainResult(self.run_dir, self.epoch, list(self.history), self.best["acc"], self.best["loss"])

    def _run_epoch(self, stop: _Stop) -> None:
        from tqdm import tqdm

        cfg, epoch, steps = self.cfg, self.epoch, self.steps
        lr = cfg.lr * self.scheduler.lr_lambdas[0](epoch * steps)
        bar = tqdm(total=steps, initial=self.step, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=cfg.quiet or not self.main, file=sys.stderr, dynamic_ncols=True)
        # first non-finite step (1-based; 0: none so far), kept on device: no sync per step
        bad = torch.zeros((), dtype=self.acc_dtype, device=self.device)
        self.t0, images0 = time.perf_counter(), self.sums[2].item()
        single = not self.info.distributed
        for step, (x, y) in zip(range(self.step, steps), self.train_batches.iterate(epoch, self.step)):
            loss_sum = self._train_step(x, y, epoch, step)
            bad = torch.where((bad == 0) & ~torch.isfinite(loss_sum), float(step + 1), bad)
            self.step = done = step + 1
            at_log = done % cfg.log_interval == 0 or done == steps or (single and stop.requested)
            at_save = bool(cfg.save_every) and done % cfg.save_every == 0 and done < steps
            if at_log or at_save:
                first_bad, stopping = self._check(bad, stop)
                if first_bad:
                    bar.close()
                    self._nonfinite(epoch, first_bad)
                if stopping:
                    bar.close()
                    raise KeyboardInterrupt
                if at_save:
                    self._save_last()
                if not bar.disable:
                    s = self.sums.tolist()
                    k = 0 if cfg.adv == "none" else 3
                    rate = (s[2] - images0) / max(time.perf_counter() - self.t0, 1e-9)
                    bar.set_postfix(loss=f"{s[k] / max(s[k + 2], 1):.4f}",
                                    acc=f"{100 * s[k + 1] / max(s[k + 2], 1):.2f}%", img_s=f"{rate:.0f}")
            bar.update(1)
        bar.close()
        first_bad, _ = self._check(bad, stop)
        if first_bad:
            self._nonfinite(epoch, first_bad)
        seconds = self.seconds + time.perf_counter() - self.t0
        s = dist.all_reduce_sum(self.sums.clone()).tolist()
        test_loss, test_acc = self.evaluate()
        clean = cfg.adv == "none" or cfg.clean_metrics  # else s[0], s[1] were not measured
        rec = {"epoch": epoch + 1, "train_loss": s[0] / max(s[2], 1) if clean else None,
               "train_acc": 100 * s[1] / max(s[2], 1) if clean else None,
               "adv_train_loss": s[3] / s[5] if s[5] else None, "adv_train_acc": 100 * s[4] / s[5] if s[5] else None,
               "test_loss": test_loss, "test_acc": test_acc, "lr": lr, "steps": steps, "images": int(s[2]),
               "images_per_s": (s[2] - images0 * self.info.world_size) / max(seconds, 1e-9), "seconds": seconds}
        for key in ("acc", "loss"):
            v, best = rec["test_" + key], self.best[key]
            rec["best_" + key] = best is None or (v > best if key == "acc" else v < best)
            if rec["best_" + key]:
                self.best[key] = v
        self.history.append(rec)
        self.epoch, self.step, self.seconds, self.sums = epoch + 1, 0, 0.0, self._zero_sums()
        if self.main:
            self._end_epoch_files(rec)

    def _end_epoch_files(self, rec: dict[str, Any]) -> None:
        """metrics line, best/final checkpoints, then last.pt (a crash in between redoes the epoch on resume)."""
        from sspnet.nn.checkpoints import save_checkpoint

        run, cfg = self.run_dir, self.cfg
        fileio.append_line(run / "metrics.jsonl", json.dumps(rec))
        extra = {"args": _original_args(cfg), "epoch": rec["epoch"], "test_acc": rec["test_acc"],
                 "test_loss": rec["test_loss"]}
        for key in ("acc", "loss"):
            if rec["best_" + key]:
                save_checkpoint(run / f"model_{key}.pt", self.model, **extra)
        save_checkpoint(run / "model_final.pt", self.model, **extra)
        self._save_last()
        parts = []
        if rec["train_loss"] is not None:
            parts.append(f"loss {rec['train_loss']:.4f} acc {rec['train_acc']:.2f}%")
        if rec["adv_train_loss"] is not None:
            parts.append(f"adv loss {rec['adv_train_loss']:.4f} adv acc {rec['adv_train_acc']:.2f}%")
        self.log(f"epoch {rec['epoch']}/{cfg.epochs} train {' '.join(parts)} | test loss {rec['test_loss']:.4f} "
                 f"acc {rec['test_acc']:.2f}% | lr {rec['lr']:.3g} | {rec['images_per_s']:.0f} img/s "
                 f"{rec['seconds']:.1f} s")
        if self.tb is not None:
            for key, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and key != "epoch":
                    self.tb.add_scalar(key, v, rec["epoch"])

    def _nonfinite(self, epoch: int, step: int) -> None:
        msg = (f"non-finite training loss (NaN or inf) at epoch {epoch + 1}, step {step}; stopped. "
               f"{self.run_dir / 'last.pt'} keeps the last good state; lower --lr and resume with --resume, "
               "or restart with --force")
        self.log(msg)
        raise NonFiniteLossError(msg, epoch + 1, step)


def _original_args(cfg: TrainConfig) -> dict[str, Any]:
    """The original code's argparse names, as a plain dict (for checkpoints' "args" entry)."""
    return {"model": cfg.model, "block": cfg.blocks, "lr": cfg.lr, "decay": cfg.decay, "tbsize": cfg.batch_size,
            "iters": cfg.iters, "adv": cfg.adv, "attack": cfg.adv, "epochs": cfg.epochs, "save": cfg.save,
            "opt": cfg.opt, "norm": cfg.norm, "seed": cfg.seed, "eps": cfg.eps, "alpha": cfg.alpha,
            "dataset": cfg.dataset, "groups": cfg.groups}
