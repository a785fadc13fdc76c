"""The experiment presets of `sspnet compare` as data: dataset, models, seeds, the (blocks, PGD steps) grid,
the training options (pixel units) and the evaluation options each changes from `EvalSettings`' defaults
(`sspnet.experiments.compare.config`). A new preset is one more entry; `--help` texts are generated from them."""

from __future__ import annotations

from typing import Any

DEFAULT_MODELS = ("res", "ssp2", "ssp3", "ark", "midrk2")  # the paper presets

# the adversarial training of the default and cpu-hour budgets (docs/default-budget.md): PGD-3 with a random
# start at eps 0.2, step 2.5 eps / 3, the eps warmed up linearly over the first 2 epochs, Adam with a one-cycle
# lr of 3e-3, 8 epochs of batch 64, 2 blocks
ADVERSARIAL_MNIST5K = {
    "blocks": 2,
    "epochs": 8,
    "batch_size": 64,
    "opt": "adam",
    "lr": 3e-3,
    "schedule": "cyclic",
    "adv": "pgd",
    "eps": 0.2,
    "steps": 3,
    "alpha": 2.5 * 0.2 / 3,
    "eps_warmup": 2,
}

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "dataset": "mnist5k",
        "models": ("res", "ssp2"),
        "seeds": 3,
        "grid": None,
        "train": ADVERSARIAL_MNIST5K,
        "eval": {"eps": 0.2},  # the rest: EvalSettings' defaults
        "about": "res vs ssp2, 3 seeds, PGD-3 adversarial training on the embedded digits (about 9 minutes on 2 "
        "CPU cores)",
    },
    "paper-mnist": {
        "dataset": "mnist",
        "models": DEFAULT_MODELS,
        "seeds": 3,
        "grid": None,
        "train": {"blocks": 5, "epochs": 200, "batch_size": 128, "opt": "sgd", "adv": "ball", "eps": 0.3},
        "eval": {
            "eps": 0.3,
            "alpha": 0.05,
            "steps": 20,
            "restarts": 1,
            "sweep": (0.1, 0.2, 0.3, 0.4),
            "sweep_images": 1000,
            "growth_images": 1000,
            "autoattack": "auto",
            "audit_images": 1000,
            "audit_queries": 5000,
        },
        "about": "the original's MNIST settings: ball training, 200 epochs on full MNIST (GPU hours)",
    },
    "paper-cifar10": {
        "dataset": "cifar10",
        "models": DEFAULT_MODELS,
        "seeds": 3,
        "grid": [(6, 7), (6, 12), (10, 7), (10, 12)],
        "train": {"epochs": 200, "batch_size": 128, "opt": "sgd", "adv": "pgd"},
        "eval": {
            "eps": 8 / 255,
            "alpha": 2 / 255,
            "steps": 20,
            "restarts": 1,
            "sweep": (2 / 255, 4 / 255, 8 / 255, 16 / 255),
            "sweep_images": 1000,
            "growth_images": 1000,
            "autoattack": "auto",
            "audit_images": 1000,
            "audit_queries": 5000,
        },
        "about": "the paper's CIFAR-10 grid N x K in {6, 10} x {7, 12}, PGD-K training, 200 epochs (GPU days; "
        "split it with --models / --seeds / --grid)",
    },
}

# the default's design with the power it lacks: twice the seeds, more PGD restarts, AutoAttack in the audit
PRESETS["cpu-hour"] = {
    **PRESETS["default"],
    "seeds": 6,
    "eval": {
        **PRESETS["default"]["eval"],
        "restarts": 3,
        "sweep_images": 500,
        "growth_images": 500,
        "autoattack": "on",
    },
    "about": "res vs ssp2, 6 seeds, the default's training, PGD with 3 restarts and AutoAttack (about an hour on "
    "2 CPU cores)",
}

# Where the paper looked: its PGR figures put the difference between ResNet and SSP blocks in the last of three
# block groups (CIFAR-10, (N, K) = (6, 7)). The default's one-group MNIST network cannot show a group, so this
# preset trains the paper's 3-group CIFAR-10 network (16 / 32 / 64 channels, stride-2 transitions) on the
# embedded digits as they are (28 x 28: the network is convolutional with a global pool), adds a small-step
# ResNet (h = 0.5), and trains at eps 0.1 with He init and GroupNorm. Why not the paper's BatchNorm: an ssp2
# block calls its F, norm layers included, at two stages, so its BatchNorm's running statistics average two
# different inputs; after 4 epochs of PGD-3 training both BatchNorm ssp2 runs were at 0-7% accuracy in eval
# mode, 96% with batch statistics (docs/step-size-and-bounds.md). 2 blocks per group, 3 epochs of batch 64,
# Adam one-cycle lr 3e-3.
PRESETS["three-groups"] = {
    "dataset": "mnist5k",
    "models": ("res", "ssp2", "res@0.5"),
    "seeds": 3,
    "grid": None,
    "train": {
        **ADVERSARIAL_MNIST5K,
        "arch": "cifar10",
        "norm": "g",
        "init": "kaiming",
        "epochs": 3,
        "eps": 0.1,
        "alpha": 2.5 * 0.1 / 3,
        "eps_warmup": 1,
    },
    "eval": {"eps": 0.1, "n_images": 500, "restarts": 1, "sweep": (0.05, 0.2), "sweep_images": 200},
    "about": "res vs ssp2 vs res with step 0.5 on the paper's 3-group CIFAR-10 network (GroupNorm), digits, 3 "
    "seeds, PGD-3 adversarial training at eps 0.1; growth per block group",
}
