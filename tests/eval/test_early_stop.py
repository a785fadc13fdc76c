"""Early-stopped PGD and early-stopping evaluation: never weaker than the full attack, identical where nothing
falls, clean-misclassified images never attacked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from eval_models import stand_in, trained_stand_in
from torch import nn

from sspnet.attacks import PGD, make_attack
from sspnet.data.subsets import subset_indices
from sspnet.eval.robustness import EvalConfig, evaluate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist():
    from sspnet.data import load

    return load("mnist5k", split="test")


@pytest.fixture(scope="module")
def trained():
    return trained_stand_in(0)


def batch(mnist, n=150):
    images, labels = mnist
    idx = subset_indices(labels, n)
    return images[idx].float() / 255, labels[idx]


def correct(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


@pytest.mark.parametrize(
    "quantize, random_start, norm, eps",
    [(True, False, "linf", 0.1), (False, False, "linf", 0.1), (True, True, "linf", 0.08), (False, False, "l2", 1.5)],
)
def test_early_stop_never_weaker_than_the_full_attack(trained, mnist, quantize, random_start, norm, eps):
    x, y = batch(mnist)
    runs = {}
    for early in (False, True):
        attack = PGD(
            trained,
            eps,
            eps / 4,
            10,
            norm=norm,
            random_start=random_start,
            quantize=quantize,
            generator=torch.Generator().manual_seed(3),
            early_stop=early,
        )
        x_adv, logits = attack.run(x, y)
        assert (x_adv - x).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1).max() <= eps + 1e-6
        torch.testing.assert_close(logits, trained(x_adv).detach(), atol=1e-4, rtol=1e-4)
        runs[early] = logits.argmax(1) == y
    full, early = runs[False], runs[True]
    assert 0.1 < float(full.float().mean()) < 0.9  # a meaningful eps: some images fall, some do not
    assert not bool((early & ~full).any())  # every image the full attack breaks, early stop breaks too
    assert float(early.float().mean()) <= float(full.float().mean())


def test_early_stop_restarts_only_add_broken_images(trained, mnist):
    x, y = batch(mnist, 100)
    one = PGD(trained, 0.1, 0.025, 3, quantize=True, early_stop=True)(x, y)
    five = PGD(
        trained, 0.1, 0.025, 3, restarts=5, quantize=True, generator=torch.Generator().manual_seed(0), early_stop=True
    )(x, y)
    ok_one, ok_five = correct(trained, one, y), correct(trained, five, y)
    assert not bool((ok_five & ~ok_one).any())  # the first run starts from x in both
    assert int(ok_five.sum()) < int(ok_one.sum())  # random restarts find more on this model


class Confident(nn.Module):
    """Linear logits with a margin of 30 for class 0, so no eps <= 1 changes a prediction, but a
    non-zero input gradient, so PGD moves."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(10, 784, generator=g) * 0.01)

    def forward(self, x):
        logits = x.flatten(1) @ self.w.t()
        return logits + 30.0 * F.one_hot(torch.zeros(x.shape[0], dtype=torch.long), 10)


def test_identical_to_the_full_attack_when_every_image_stays_correct(mnist):
    model = Confident()
    x, _ = batch(mnist, 40)
    y = torch.zeros(40, dtype=torch.long)
    for restarts in (1, 2):
        kw = dict(restarts=restarts, quantize=True, random_start=restarts > 1)
        full = PGD(model, 0.2, 0.05, 6, generator=torch.Generator().manual_seed(1), **kw)
        early = PGD(model, 0.2, 0.05, 6, generator=torch.Generator().manual_seed(1), early_stop=True, **kw)
        x_full, x_early = full(x, y), early(x, y)
        assert not torch.equal(x_full, x)  # PGD did move
        assert torch.equal(x_full, x_early)
    cfg = dict(attack="fgsm,pgd", eps=[0.2], steps=6, batch_size=16, keep_adv=None)
    a = evaluate(model, x, y, EvalConfig(**cfg, early_stop=False))
    b = evaluate(model, x, y, EvalConfig(**cfg, early_stop=True))
    for key in ("clean/pred", "0/pgd/pred", "0/pgd/loss", "0/pgd/linf", "0/fgsm/loss", "0/worst/src"):
        assert torch.equal(a.per_sample[key], b.per_sample[key]), key
    assert torch.equal(a.adversarial_images(), b.adversarial_images())


class Recorder(nn.Module):
    """Wraps a model; records the batch sizes of the forwards that need an input gradient (attack steps)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.grad_rows = model, []

    def forward(self, x):
        if x.requires_grad:
            self.grad_rows.append(x.shape[0])
        return self.model(x)


def test_clean_misclassified_images_are_reported_wrong_without_being_attacked(trained, mnist):
    images, labels = mnist
    idx = subset_indices(labels, 120)
    model = Recorder(trained)
    r = evaluate(
        model, images, labels, EvalConfig(attack="pgd", eps=[0.1], steps=5, batch_size=120, keep_adv=0), indices=idx
    )
    assert r.config["early_stop"] is None and r.results[0].attacks["pgd"].params["early_stop"] is True
    clean_ok = r.correct("clean")
    assert 0 < int((~clean_ok).sum()) < 30
    assert model.grad_rows[0] == int(clean_ok.sum())  # the first PGD step sees only the clean-correct images
    assert all(b <= a for a, b in zip(model.grad_rows, model.grad_rows[1:]))  # and the batch only shrinks
    assert sum(model.grad_rows) < 5 * int(clean_ok.sum())  # fallen images were dropped
    wrong = ~clean_ok
    assert not bool(r.correct("pgd")[wrong].any())
    assert torch.equal(r.per_sample["0/pgd/pred"][wrong], r.per_sample["clean/pred"][wrong])
    assert float(r.per_sample["0/pgd/linf"][wrong].abs().max()) == 0.0  # left as they were
    model.grad_rows.clear()
    full = evaluate(
        model,
        images,
        labels,
        EvalConfig(attack="pgd", eps=[0.1], steps=5, batch_size=120, keep_adv=0, early_stop=False),
        indices=idx,
    )
    assert model.grad_rows == [120] * 5
    assert r.accuracy("pgd") <= full.accuracy("pgd")


def test_evaluate_early_stop_is_never_above_the_full_evaluation(trained, mnist):
    images, labels = mnist
    cfg = dict(attack="fgsm,pgd,ball", eps=[0.05, 0.15], steps=8, copies=2, n_images=150, batch_size=64)
    full = evaluate(trained, images, labels, EvalConfig(**cfg, early_stop=False))
    early = evaluate(trained, images, labels, EvalConfig(**cfg, early_stop=True))
    for eps in (0.05, 0.15):
        for name in ("fgsm", "pgd", "worst"):
            assert early.accuracy(name, eps) <= full.accuracy(name, eps)
        assert not bool((early.correct("pgd", eps) & ~full.correct("pgd", eps)).any())
    assert early.accuracy("pgd", 0.15) < early.clean_acc


def test_factory_passes_early_stop():
    model = stand_in(0)
    assert make_attack("pgd", model, 0.1, early_stop=True).early_stop is True
    assert make_attack("fgsm", model, 0.1, early_stop=True).early_stop is True
    assert make_attack("pgd", model, 0.1).early_stop is False
