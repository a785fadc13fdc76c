"""Everything a training run is made of, built from a resolved TrainConfig: data, model, state, adversary, folder.

The order matters: the run folder is checked before anything is loaded, and an old run is cleared (--force)
or its last.pt read (--resume) only once data and model are known to be good.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sspnet import distributed as dist
from sspnet.data.specs import get_dataset_spec
from sspnet.train.config import TrainConfig
from sspnet.train.folder import RunFolder
from sspnet.train.meter import TRAIN_SUMS, Meter
from sspnet.train.optim import build_optimizer, build_schedule
from sspnet.train.options import flag
from sspnet.train.state import TrainState
from sspnet.train.step import Adversary


@dataclass
class Run:
    """A run ready to train. net: the model or its DDP wrapper; val_batches: the validation split held out of
    the training images (None with val_split 0); steps: optimizer steps per epoch; memory_format: the inputs'
    layout (channels_last or None); history: metrics records so far; resumed: whether `state` came from
    last.pt; batchnorm: how BatchNorm statistics are taken ("per-rank", "global" under DDP with sync_bn,
    "" without BatchNorm)."""

    cfg: TrainConfig
    info: dist.DistInfo
    device: torch.device
    folder: RunFolder
    state: TrainState
    net: nn.Module
    train_batches: Any  # sspnet.data.Batches
    val_batches: Any
    test_batches: Any
    steps: int
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format | None
    adversary: Adversary | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False
    batchnorm: str = ""

    def loss_scale(self, step: int) -> float:
        """world_size / images of global step `step` (adversary copies included): the factor that turns this
        rank's loss sum into its share of the global mean, so that DDP's gradient average is that mean."""
        g = self.train_batches.global_batch_size
        n_train = self.train_batches.images.shape[0]
        copies = self.adversary.copies if self.adversary is not None else 1
        return self.info.world_size / (min(g, n_train - step * g) * copies)


def build_model(cfg: TrainConfig) -> nn.Module:
    """`sspnet.nn.create_model` with only the options the user set (None: the model's default)."""
    from sspnet.nn.models import create_model

    kw = {
        "dataset": cfg.dataset,
        "blocks": cfg.blocks,
        "norm": cfg.norm,
        "groups": cfg.groups,
        "init": cfg.init,
        "activation_checkpointing": cfg.activation_checkpointing,
        "seed": cfg.seed,
        "step_size": cfg.step_size,
        "arch": cfg.arch,
    }
    return create_model(cfg.model, **{k: v for k, v in kw.items() if v is not None})


def eval_subset(images: Tensor, labels: Tensor, n: int | None) -> tuple[Tensor, Tensor]:
    """n class-stratified images of a split (`sspnet.data.subsets.subset_indices`); all when n is None."""
    from sspnet.data.subsets import subset_indices

    if n is None or n >= labels.shape[0]:
        return images, labels
    idx = subset_indices(labels, n).to(labels.device)
    return images[idx], labels[idx]


def prepare(
    cfg: TrainConfig,
    info: dist.DistInfo,
    defaulted: list[str] | None = None,
    sources: dict[str, str] | None = None,
) -> Run:
    """Build the run of a validated, resolved config (ValueError / FileExistsError before anything is written).

    defaulted: the options `resolved()` filled in (`TrainConfig.defaulted`); sources: where each option came
    from (`sspnet.train.sources.option_sources`); config.json records both."""
    device = torch.device(info.device)
    if cfg.batch_size % info.world_size:
        raise ValueError(
            f"{flag('batch_size')} {cfg.batch_size} must be divisible by the number of processes ({info.world_size})"
        )
    folder = RunFolder(cfg, info, defaulted, sources)
    try:
        return _prepare(cfg, info, device, folder)
    except BaseException:
        folder.release()  # the folder's lock (`RunFolder.check`), held only while the run is alive
        raise


def _prepare(cfg: TrainConfig, info: dist.DistInfo, device: torch.device, folder: RunFolder) -> Run:
    folder.check()
    train_batches, val_batches, test_batches = _batches(cfg, info, device)
    steps = len(train_batches) if cfg.steps_per_epoch is None else min(len(train_batches), cfg.steps_per_epoch)
    amp_dtype = _amp_dtype(cfg, device)
    model, net, memory_format, batchnorm = _model(cfg, info, device)
    arch = get_dataset_spec(cfg.dataset).arch
    optimizer = build_optimizer(model.parameters(), cfg.opt, cfg.lr, cfg.decay, arch)
    scheduler = build_schedule(
        optimizer, cfg.schedule, epochs=cfg.epochs, steps_per_epoch=steps, milestones=cfg.milestones
    )
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    state = TrainState(model, optimizer, scheduler, scaler, Meter(TRAIN_SUMS, device), config=dataclasses.asdict(cfg))
    threat = cfg.threat()  # the training adversary's threat model (None: no adversary)
    adversary = (
        None if threat is None else Adversary(cfg.adv, model, threat, cfg.ball_copies, cfg.craft_eval, amp_dtype)
    )
    saved = folder.open()
    if saved is not None:
        state.load_state_dict(saved, str(folder.state_file))
    elif cfg.init_from:
        _load_init(model, cfg.init_from)
    history = folder.start(state.epoch, state.step, getattr(model, "config", None))
    return Run(
        cfg,
        info,
        device,
        folder,
        state,
        net,
        train_batches,
        val_batches,
        test_batches,
        steps,
        amp_dtype,
        memory_format,
        adversary,
        history,
        resumed=saved is not None,
        batchnorm=batchnorm,
    )


def split_train(images: Tensor, labels: Tensor, val_split: float, seed: int):
    """((train images, labels), (validation images, labels) or None): the class-stratified validation split
    of `val_split` of the training images, a function of `seed` (`sspnet.data.subsets.holdout_indices`)."""
    from sspnet.data.subsets import holdout_indices

    keep, held = holdout_indices(labels, val_split, seed)
    if not held.numel():
        return (images, labels), None
    keep, held = keep.to(labels.device), held.to(labels.device)
    return (images[keep], labels[keep]), (images[held], labels[held])


def _batches(cfg: TrainConfig, info: dist.DistInfo, device: torch.device):
    """(training batches: shuffled by (seed, epoch), augmented, split over ranks; validation batches or None;
    test batches)."""
    from sspnet.data import Batches, load

    spec, W = get_dataset_spec(cfg.dataset), info.world_size
    (xtr, ytr), val = split_train(
        *load(cfg.dataset, root=cfg.data_root, split="train", device=device), cfg.val_split, cfg.seed
    )
    xte, yte = eval_subset(*load(cfg.dataset, root=cfg.data_root, split="test", device=device), cfg.eval_n_images)
    n = xtr.shape[0]
    if cfg.batch_size > n:
        raise ValueError(
            f"{flag('batch_size')} {cfg.batch_size} is larger than the {n} training images of "
            f"{cfg.dataset} left after --val-split {cfg.val_split:g}; use at most {n}"
        )
    tail = n % cfg.batch_size
    train = Batches(
        xtr,
        ytr,
        cfg.batch_size // W,
        shuffle=True,
        seed=cfg.seed,
        crop_pad=spec.crop_pad,
        flip=spec.flip,
        drop_last=0 < tail < W,
        rank=info.rank,
        world_size=W,
    )
    eval_bs = max(1, cfg.eval_batch_size // W)
    val = None if val is None else Batches(*val, eval_bs, shuffle=False, rank=info.rank, world_size=W)
    test = Batches(xte, yte, eval_bs, shuffle=False, rank=info.rank, world_size=W)
    return train, val, test


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 (float16 where bf16 is unsupported) with --amp, which defaults to on for CUDA; None: off."""
    cuda = device.type == "cuda"
    if not (cfg.amp if cfg.amp is not None else cuda):
        return None
    if not cuda:
        raise ValueError("--amp needs a CUDA device")
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _model(cfg: TrainConfig, info: dist.DistInfo, device: torch.device):
    """(model on the device, the module to train: the model or its DDP wrapper, input memory format or None,
    `Run.batchnorm`). Under DDP with sync_bn, BatchNorm takes global-batch statistics (`syncbn`)."""
    from sspnet.nn.inference import preferred_memory_format
    from sspnet.train.syncbn import has_batchnorm, sync_batchnorm

    model = build_model(cfg).to(device)
    channels_last = (
        cfg.channels_last
        if cfg.channels_last is not None
        else preferred_memory_format(model, device) == torch.channels_last
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net, batchnorm = model, "per-rank" if has_batchnorm(model) else ""
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if batchnorm and cfg.sync_bn:
            model, batchnorm = sync_batchnorm(model, device), "global"
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, net, torch.channels_last if channels_last else None, batchnorm


def _load_init(model: nn.Module, path: str) -> None:
    """--init-from: the weights of a checkpoint or run folder with the same model config."""
    from sspnet.nn.checkpoints import load_model

    src = load_model(path)
    mine, theirs = model.state_dict(), src.state_dict()
    if set(mine) != set(theirs) or any(mine[k].shape != theirs[k].shape for k in mine):
        raise ValueError(
            f"--init-from {path}: its model {getattr(src, 'config', '?')} does not match this run's "
            f"model {getattr(model, 'config', '?')}"
        )
    model.load_state_dict(theirs)
