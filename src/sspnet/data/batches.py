"""Batches on the device: slices of a seeded permutation, crop/flip done for the whole batch at once.

Determinism: the permutation and augmentation of epoch `e` come from a CPU `torch.Generator` seeded with
`epoch_seed(seed, e)`; they do not depend on the global RNG, the device, the batch size or the number of ranks.
Augmentation parameters are drawn once per epoch for every position of the permutation, so resuming at batch
`start` (`iterate(epoch, start)`) yields exactly the batches an uninterrupted epoch would have yielded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

_MASK64 = (1 << 64) - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed mixing (seed, epoch) with SplitMix64 (distinct pairs give unrelated streams)."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(epoch) + 0x632BE59BD9B4E019) & _MASK64
    for mul, shift in ((0xBF58476D1CE4E5B9, 30), (0x94D049BB133111EB, 27)):
        z = ((z ^ (z >> shift)) * mul) & _MASK64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


def draw_params(n: int, generator: torch.Generator, crop_pad: int, flip: bool, size: tuple[int, int] | None = None):
    """Per-image crop offsets dy, dx in [0, 2*crop_pad] (int64 n) and flip mask (bool n), on the generator's device."""
    dev = generator.device
    dy = torch.randint(0, 2 * crop_pad + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * crop_pad + 1, (n,), generator=generator, device=dev)
    fl = torch.rand(n, generator=generator, device=dev) < 0.5 if flip else torch.zeros(n, dtype=torch.bool, device=dev)
    return dy, dx, fl


def apply_crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, fl: torch.Tensor, crop_pad: int
) -> torch.Tensor:
    """out[b] = zero-padded x[b] cropped at (dy[b], dx[b]) to H x W, then mirrored left-right where fl[b].

    x: B x C x H x W (any dtype, same dtype out); dy, dx: int64 B in [0, 2*crop_pad]; fl: bool B. One gather,
    no Python loop: out[b, c, i, j] = pad(x)[b, c, dy[b] + i, dx[b] + (W-1-j if fl[b] else j)].
    Integer input is gathered as float32 (exact for 0..255; the CPU gather kernel is far faster for floats).
    """
    if x.shape[0] == 0:
        return x.clone()
    if not x.is_floating_point():
        return apply_crop_flip(x.float(), dy, dx, fl, crop_pad).to(x.dtype)
    B, C, H, W = x.shape
    dev = x.device
    dy, dx, fl = dy.to(dev), dx.to(dev), fl.to(dev)
    xp = F.pad(x, (crop_pad,) * 4) if crop_pad else x
    ar_h, ar_w = torch.arange(H, device=dev), torch.arange(W, device=dev)
    rows = dy[:, None] + ar_h  # B x H
    cols = dx[:, None] + torch.where(fl[:, None], (W - 1) - ar_w, ar_w)  # B x W
    Wp = W + 2 * crop_pad
    flat = (rows[:, :, None] * Wp + cols[:, None, :]).reshape(B, 1, H * W).expand(B, C, H * W)
    return torch.gather(xp.reshape(B, C, -1), 2, flat).reshape(B, C, H, W)


def augment(x: torch.Tensor, generator: torch.Generator, crop_pad: int = 0, flip: bool = False) -> torch.Tensor:
    """Random crop (zero padding `crop_pad`, output the input size) and random horizontal flip (p = 1/2) of a
    whole batch B x C x H x W (uint8 or float, same dtype out) on its device; parameters drawn from `generator`."""
    if crop_pad < 0:
        raise ValueError(f"crop_pad must be >= 0, got {crop_pad}")
    if not crop_pad and not flip:
        return x
    dy, dx, fl = draw_params(x.shape[0], generator, crop_pad, flip)
    return apply_crop_flip(x, dy, dx, fl, crop_pad)


class Batches:
    """Iterable of (x, y): x float32 B x C x H x W in [0, 1] on the images' device, y int64 B.

    images: uint8 N x C x H x W; labels: int64 N (same device). Each epoch, the N indices are permuted
    (shuffle=True; identity otherwise) and cut into global batches of G = batch_size * world_size consecutive
    indices. `batch_size` is per rank: rank r receives the r-th of the world_size contiguous slices of every
    global batch, so ranks see disjoint images, together cover the epoch, and all use the same permutation.
    Every rank gets the same number of batches, len(self) = floor(N / G) with drop_last, else ceil(N / G). With
    drop_last=False the last global batch has m < G images split as evenly as possible (sizes differ by at most
    1, some may be empty when m < world_size): every image is seen exactly once, as evaluation needs. For
    multi-rank training use drop_last=True so every step has full, equal batches. With world_size=1 this is
    the usual loader; with W ranks of batch B the data seen equals 1 rank of batch B*W.
    Augmentation (crop_pad > 0: random crop with zero padding; flip: random horizontal flip) is applied on the
    device to whole batches, with parameters fixed per (seed, epoch, position in the permutation).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        crop_pad: int = 0,
        flip: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            desc = (
                f"{images.dtype} tensor of shape {tuple(images.shape)}"
                if isinstance(images, torch.Tensor)
                else type(images).__name__
            )
            raise ValueError(f"images must be a uint8 tensor N x C x H x W, got {desc}")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be a 1-d tensor with one label per image ({images.shape[0]})")
        if labels.device != images.device:
            raise ValueError(f"labels on {labels.device} but images on {images.device}; put both on one device")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(
                f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if int(crop_pad) < 0:
            raise ValueError(f"crop_pad must be >= 0, got {crop_pad}")
        self.images, self.labels = images, labels.long()
        self.batch_size, self.world_size, self.rank = int(batch_size), int(world_size), int(rank)
        self.shuffle, self.seed, self.crop_pad, self.flip = bool(shuffle), int(seed), int(crop_pad), bool(flip)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n, g = self.images.shape[0], self.global_batch_size
        return n // g if self.drop_last else math.ceil(n / g)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate(self.epoch)

    def epoch_plan(self, epoch: int):
        """(order int64 N, dy, dx, flip) of an epoch, on the images' device; a pure function of (seed, epoch)."""
        n = self.images.shape[0]
        gen = torch.Generator(device="cpu")
        gen.manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        dy, dx, fl = draw_params(n, gen, self.crop_pad, self.flip)
        dev = self.images.device
        return order.to(dev), dy.to(dev), dx.to(dev), fl.to(dev)

    def shard(self, i: int, n: int) -> slice:
        """Positions (in the epoch order) of this rank's part of global batch i."""
        g = self.global_batch_size
        lo, hi = i * g, min((i + 1) * g, n)
        m = hi - lo
        q, r = divmod(m, self.world_size)
        a = lo + self.rank * q + min(self.rank, r)
        return slice(a, a + q + (1 if self.rank < r else 0))

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of `epoch` from batch index `start` (mid-epoch resume)."""
        if not 0 <= int(start) <= len(self):
            raise ValueError(f"start must be in 0..{len(self)}, got {start}")
        order, dy, dx, fl = self.epoch_plan(int(epoch))
        n = self.images.shape[0]
        augmenting = self.crop_pad > 0 or self.flip
        for i in range(int(start), len(self)):
            s = self.shard(i, n)
            idx = order[s]
            x = self.images[idx].float().div_(255)
            if augmenting:
                x = apply_crop_flip(x, dy[s], dx[s], fl[s], self.crop_pad)
            yield x, self.labels[idx]
