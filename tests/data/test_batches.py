"""Batches and augmentation: determinism, resume, shards, crop/flip invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sspnet.data import Batches, augment, epoch_seed
from sspnet.data.batches import apply_crop_flip


def _data(n=103, c=3, s=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g)
    return images, torch.arange(n)  # label i identifies image i


def _ids(batches, epoch=0, start=0):
    return [y.tolist() for _, y in batches.iterate(epoch, start)]


def test_batches_types_and_order_without_shuffle():
    images, labels = _data()
    b = Batches(images, labels, 10, shuffle=False)
    out = list(b)
    assert len(b) == len(out) == 11
    x, y = out[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (10, 3, 8, 8)
    assert torch.equal(x, images[:10].float() / 255)
    assert torch.cat([y for _, y in out]).tolist() == list(range(103))  # eval keeps every image, in order
    assert len(Batches(images, labels, 10, drop_last=True)) == 10


def test_same_seed_same_batches_different_seed_or_epoch_differs():
    images, labels = _data()
    mk = lambda seed: Batches(images, labels, 16, seed=seed, crop_pad=2, flip=True)  # noqa: E731
    a, b, c = mk(1), mk(1), mk(2)
    torch.manual_seed(0)
    xa = [x for x, _ in a]
    torch.manual_seed(123)  # global RNG state is irrelevant
    xb = [x for x, _ in b]
    assert all(torch.equal(u, v) for u, v in zip(xa, xb))
    assert _ids(a) == _ids(b) and _ids(a) != _ids(c)
    assert _ids(a, epoch=0) != _ids(a, epoch=1)
    a.set_epoch(1)
    assert [y.tolist() for _, y in a] == _ids(b, epoch=1)
    assert sorted(sum(_ids(a, epoch=5), [])) == list(range(103))  # a permutation
    assert len({epoch_seed(s, e) for s in range(20) for e in range(20)}) == 400


def test_resume_mid_epoch_matches_uninterrupted():
    images, labels = _data()
    b = Batches(images, labels, 8, seed=3, crop_pad=3, flip=True)
    full = list(b.iterate(4))
    tail = list(b.iterate(4, start=5))
    assert len(tail) == len(full) - 5
    for (x1, y1), (x2, y2) in zip(full[5:], tail):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    with pytest.raises(ValueError, match="start must be in 0..13"):
        next(b.iterate(0, start=14))


@pytest.mark.parametrize("world,drop_last", [(2, False), (3, False), (4, True), (3, True)])
def test_shards_disjoint_cover_and_same_permutation(world, drop_last):
    images, labels = _data(n=103)
    ranks = [
        Batches(images, labels, 7, seed=9, rank=r, world_size=world, drop_last=drop_last, crop_pad=1, flip=True)
        for r in range(world)
    ]
    lens = {len(b) for b in ranks}
    assert len(lens) == 1  # every rank runs the same number of steps
    per_rank = [_ids(b, epoch=2) for b in ranks]
    seen = [i for ids in per_rank for batch in ids for i in batch]
    assert len(seen) == len(set(seen))  # disjoint
    g = 7 * world
    expected_n = (103 // g) * g if drop_last else 103
    assert len(seen) == expected_n  # cover (all of it without drop_last)
    single = Batches(images, labels, g, seed=9, drop_last=drop_last, crop_pad=1, flip=True)
    for step, (xs, ys) in enumerate(single.iterate(2)):
        # global batch = concatenation of the rank batches, with identical augmentation
        assert sum((per_rank[r][step] for r in range(world)), []) == ys.tolist()
        xr = torch.cat([list(ranks[r].iterate(2, step))[0][0] for r in range(world)])
        assert torch.equal(xr, xs)
        if drop_last:
            assert all(len(per_rank[r][step]) == 7 for r in range(world))


def test_bad_batches_arguments():
    images, labels = _data()
    with pytest.raises(ValueError, match="uint8 tensor N x C x H x W"):
        Batches(images.float(), labels, 4)
    with pytest.raises(ValueError, match="one label per image"):
        Batches(images, labels[:5], 4)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Batches(images, labels, 0)
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        Batches(images, labels, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="crop_pad must be >= 0"):
        Batches(images, labels, 4, crop_pad=-1)


# --- augmentation -----------------------------------------------------------------------------------------
def test_flip_twice_is_identity_and_flip_mirrors():
    x, _ = _data(n=32)
    dy = torch.zeros(32, dtype=torch.long)
    fl = torch.arange(32) % 2 == 0
    once = apply_crop_flip(x, dy, dy, fl, 0)
    assert once.dtype == torch.uint8 and once.shape == x.shape
    assert torch.equal(once[fl], x[fl].flip(3)) and torch.equal(once[~fl], x[~fl])
    assert torch.equal(apply_crop_flip(once, dy, dy, fl, 0), x)


def test_crop_pad_zero_is_identity_and_crop_matches_padded_original():
    x, _ = _data(n=40, c=2, s=6)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, g, crop_pad=0, flip=False), x)
    pad = 3
    dy = torch.randint(0, 2 * pad + 1, (40,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (40,), generator=g)
    fl = torch.rand(40, generator=g) < 0.5
    out = apply_crop_flip(x.float() / 255, dy, dx, fl, pad)
    padded = F.pad(x.float() / 255, (pad,) * 4)
    for b in range(40):
        ref = padded[b, :, dy[b] : dy[b] + 6, dx[b] : dx[b] + 6]
        assert torch.equal(out[b], ref.flip(2) if fl[b] else ref)
    # centred crop (offset = pad) without flip is the identity
    centre = torch.full((40,), pad)
    assert torch.equal(apply_crop_flip(x, centre, centre, torch.zeros(40, dtype=torch.bool), pad), x)


def test_augment_keeps_shape_dtype_and_pixel_values():
    x, _ = _data(n=64, c=3, s=16)
    g = torch.Generator().manual_seed(1)
    out = augment(x, g, crop_pad=4, flip=True)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for b in range(64):  # every output pixel is an input pixel of the same image and channel, or padding
        for c in range(3):
            vals = set(out[b, c].unique().tolist()) - {0}
            assert vals <= set(x[b, c].unique().tolist())
    xf = x.float() / 255
    outf = augment(xf, torch.Generator().manual_seed(1), crop_pad=4, flip=True)
    assert torch.equal(outf, out.float() / 255)  # uint8 and float paths agree for the same generator
    assert not torch.equal(out, x)
    with pytest.raises(ValueError, match="crop_pad must be >= 0"):
        augment(x, g, crop_pad=-2)
    assert augment(x[:0], g, crop_pad=2, flip=True).shape == (0, 3, 16, 16)


def test_batches_augmentation_is_applied_per_image():
    images, labels = _data(n=50)
    plain = torch.cat([x for x, _ in Batches(images, labels, 50, shuffle=False)])
    aug = torch.cat([x for x, _ in Batches(images, labels, 50, shuffle=False, flip=True)])
    flipped = (aug == plain.flip(3)).flatten(1).all(1)
    same = (aug == plain).flatten(1).all(1)
    assert bool((flipped | same).all()) and 5 < int(flipped.sum()) < 45


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_on_cuda_equal_cpu():
    images, labels = _data(n=300, c=3, s=32)
    cpu = list(Batches(images, labels, 64, seed=4, crop_pad=4, flip=True).iterate(3))
    gpu = list(Batches(images.cuda(), labels.cuda(), 64, seed=4, crop_pad=4, flip=True).iterate(3))
    assert len(cpu) == len(gpu)
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
    g = torch.Generator(device="cuda").manual_seed(0)
    out = augment(images.cuda(), g, crop_pad=4, flip=True)
    assert out.is_cuda and out.dtype == torch.uint8 and out.shape == images.shape
