"""A seed-style reference: the computational pattern of the original SSP-network code, written fresh.

Used only by the benchmarks, as the baseline every ratio is measured against (the original code's blocks,
architectures, checkpoint layout and inefficiencies):
- every layer of F is registered twice (n1/conv1/n2/conv2 and an nn.Sequential alias `residual` or `f`), so the
  state_dict has the original's duplicated keys and loads into sspnet through its original-checkpoint importer;
- ssp2/ssp3/midrk2 blocks nest F under `.block.`; `midrk2` is the original's (u = x + F(x)/2; y = u + F(u));
- `ark` evaluates F(x) twice (3 F calls per block), both a21 and b10 trainable;
- models take *normalised* NCHW fp32 input (the original normalised in the data loader);
- attacks work in pixel space: inverse-normalise a copy, normalise a copy for every forward pass, call
  loss.backward() (computing parameter gradients) and zero them every step, round to 8 bits every step;
- the data pipeline is per image: a PIL image per sample, pad + random crop + random flip, ToTensor-like
  conversion, per-image Normalize, then collate (torch.stack).
This is a faithful, reasonable implementation of that pattern, not a deliberately slow one.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CIFAR_MEAN = (0.4914, 0.4822, 0.2265)  # the original's constants (blue mean typo included)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
SCHEMES = ("res", "ssp2", "ssp3", "ark", "midrk2")


class _FLayers(nn.Module):
    """n1, conv1, n2, conv2 plus the alias Sequential `alias_name` = (n1, ReLU, conv1, n2, ReLU, conv2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, alias_name: str = "residual"):
        super().__init__()
        self.n1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=True)
        self.n2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=True)
        self.alias_name = alias_name
        setattr(self, alias_name, nn.Sequential(self.n1, nn.ReLU(), self.conv1, self.n2, nn.ReLU(), self.conv2))

    def F(self, x: Tensor) -> Tensor:
        return getattr(self, self.alias_name)(x)


class RefResBlock(_FLayers):
    """y = x + F(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return x + self.F(x)


class RefFBlock(_FLayers):
    """The F module the ssp blocks nest under `.block.`."""

    def forward(self, x: Tensor) -> Tensor:
        return self.F(x)


class _NestedF(nn.Module):
    """A block whose F sits under `.block.`, as the original's ssp2/ssp3/midrk2 blocks."""

    def __init__(self, c: int):
        super().__init__()
        self.block = RefFBlock(c, c)


class RefSSP2Block(_NestedF):
    def forward(self, x: Tensor) -> Tensor:
        u1 = x + self.block(x)
        return 0.5 * x + 0.5 * (u1 + self.block(u1))


class RefSSP3Block(_NestedF):
    def forward(self, x: Tensor) -> Tensor:
        u1 = x + self.block(x)
        u2 = 0.75 * x + 0.25 * (u1 + self.block(u1))
        return x / 3 + 2 / 3 * (u2 + self.block(u2))


class RefMidRK2Block(_NestedF):
    """The original's midrk2: u = x + F(x)/2; y = u + F(u)."""

    def forward(self, x: Tensor) -> Tensor:
        u = x + 0.5 * self.block(x)
        return u + self.block(u)


class RefARKBlock(_FLayers):
    """a = sigmoid(a21), b = sigmoid(b10); u1 = x + b F(x);
    y = (1-a) x + (1 - 1/(2b) - a b) F(x) + a u1 + 1/(2b) F(u1), F(x) evaluated twice (3 F calls)."""

    def __init__(self, c: int, a21: float = 0.25, b10: float = 1.0):
        super().__init__(c, c, alias_name="f")
        self.a21 = nn.Parameter(torch.tensor([a21]))
        self.b10 = nn.Parameter(torch.tensor([b10]))

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.sigmoid(self.a21), torch.sigmoid(self.b10)
        u1 = x + b * self.f(x)
        return (1 - a) * x + (1 - 1 / (2 * b) - a * b) * self.f(x) + a * u1 + 1 / (2 * b) * self.f(u1)


class RefTransition(_FLayers):
    """y = F_s(x) + D(ReLU(n1(x))), D = Conv1x1(stride 2, no bias) -> BatchNorm; n1 shared."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, stride=2)
        self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.n1(x))
        shortcut = self.downsample(out)
        out = self.conv2(F.relu(self.n2(self.conv1(out))))
        return out + shortcut


_BLOCKS = {
    "res": lambda c: RefResBlock(c, c),
    "ssp2": RefSSP2Block,
    "ssp3": RefSSP3Block,
    "ark": RefARKBlock,
    "midrk2": RefMidRK2Block,
}


class RefCifarNet(nn.Module):
    """CIFAR-10 network on normalised NCHW input: conv -> block1 -> sub1 -> block2 -> sub2 -> block3 -> pool -> fc.

    scheme: res | ssp2 | ssp3 | midrk2 (the original's) | ark (groups ark, res, ssp2: "SSP-adap").
    """

    def __init__(self, scheme: str = "ssp2", blocks: int = 6, num_classes: int = 10):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"unknown reference scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
        kinds = ("ark", "res", "ssp2") if scheme == "ark" else (scheme,) * 3
        widths = (16, 32, 64)
        self.scheme, self.blocks = scheme, blocks
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=True)
        self.block1 = nn.Sequential(*[_BLOCKS[kinds[0]](widths[0]) for _ in range(blocks)])
        self.sub1 = RefTransition(16, 32)
        self.block2 = nn.Sequential(*[_BLOCKS[kinds[1]](widths[1]) for _ in range(blocks)])
        self.sub2 = RefTransition(32, 64)
        self.block3 = nn.Sequential(*[_BLOCKS[kinds[2]](widths[2]) for _ in range(blocks)])
        self.fc = nn.Linear(64, num_classes)
        self._init(blocks)

    def _init(self, blocks: int) -> None:
        a = math.sqrt(5) * blocks
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=a)
                if m.bias is not None:
                    bound = 1 / math.sqrt(m.weight[0].numel())
                    nn.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.0, 1.0)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.sub2(self.block2(self.sub1(self.block1(self.conv(x))))))
        out = F.adaptive_avg_pool2d(out, 1).view(out.size(0), -1)
        return self.fc(out)


def save_original(model: RefCifarNet, path: str | Path) -> Path:
    """Write the model as the original code did: {"state_dict", "args": argparse.Namespace}."""
    args = argparse.Namespace(model=model.scheme, block=model.blocks, norm="b", eval="cifar10", lr=0.1)
    torch.save({"state_dict": model.state_dict(), "args": args}, path)
    return Path(path)


# ---- input scaling (the original's loader-side normalisation) ---------------------------------------------


def _stats(like: Tensor) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(CIFAR_MEAN, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
    return mean, std


def normalize(x: Tensor) -> Tensor:
    mean, std = _stats(x)
    return (x - mean) / std


def inv_normalize(x: Tensor) -> Tensor:
    mean, std = _stats(x)
    return x * std + mean


# ---- attack and training steps --------------------------------------------------------------------------


def pgd(
    model: nn.Module, x_norm: Tensor, y: Tensor, eps: float, alpha: float, iters: int, random_start: bool
) -> Tensor:
    """L-inf PGD in the original's style: x_norm normalised input; returns the normalised adversarial image.

    Each step: normalise a copy, forward, model.zero_grad(), loss.backward() (parameter gradients computed too),
    sign step, clip to the eps-ball and [0, 1], round to 8 bits. Runs in the model's current mode.
    """
    x_nat = inv_normalize(x_norm).detach()
    x = x_nat.clone()
    if random_start:
        x = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(iters):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(normalize(x)), y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            x = x + alpha * x.grad.sign()
            x = torch.min(torch.max(x, x_nat - eps), x_nat + eps).clamp(0, 1)
            x = torch.round(x * 255) / 255
    model.zero_grad()
    return normalize(x).detach()


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The original CIFAR optimizer: SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4."""
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x_norm: Tensor,
    y: Tensor,
    adv_iters: int = 0,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
) -> tuple[float, int]:
    """One training step as the original loop: optional PGD (random start, train mode), then SGD on the batch.
    Returns (loss, correct) read back with .item() as the original's progress bar did."""
    model.train()
    if adv_iters:
        x_norm = pgd(model, x_norm, y, eps, alpha, adv_iters, random_start=True)
    opt.zero_grad()
    out = model(x_norm)
    loss = F.cross_entropy(out, y)
    loss.backward()
    opt.step()
    return loss.item(), out.max(1)[1].eq(y).sum().item()


# ---- per-image data pipeline ----------------------------------------------------------------------------


class PerImageDataset:
    """images uint8 N x H x W x C (numpy); __getitem__: PIL image -> pad + random crop -> random flip ->
    ToTensor (C x H x W float in [0, 1]) -> Normalize. One image at a time, as torchvision transforms do."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, pad: int = 4, flip: bool = True, mean=CIFAR_MEAN, std=CIFAR_STD
    ):
        self.images, self.labels, self.pad, self.flip = images, labels, pad, flip
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image, ImageOps

        img = Image.fromarray(self.images[i])
        if self.pad:
            w, h = img.size
            img = ImageOps.expand(img, border=self.pad, fill=0)
            top, left = random.randint(0, 2 * self.pad), random.randint(0, 2 * self.pad)
            img = img.crop((left, top, left + w, top + h))
        if self.flip and random.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
        t = t.float().div(255)
        return (t - self.mean) / self.std, int(self.labels[i])


def per_image_loader(dataset: PerImageDataset, batch_size: int, shuffle: bool = True, drop_last: bool = False):
    """A DataLoader-like iterator (in process): shuffled indices, per-sample __getitem__, collate by stack."""
    idx = list(range(len(dataset)))
    if shuffle:
        random.shuffle(idx)
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        if drop_last and len(chunk) < batch_size:
            break
        items = [dataset[i] for i in chunk]
        yield torch.stack([t for t, _ in items]), torch.tensor([c for _, c in items], dtype=torch.int64)
