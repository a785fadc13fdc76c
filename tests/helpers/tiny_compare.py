"""The tiny comparison plan the compare tests share: 2 models x 1 seed, 2 optimizer steps, a dozen test images."""

from sspnet.experiments.compare import CompareConfig

TINY_TRAIN = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 32, "blocks": 1, "eval_n_images": 50}
TINY_EVAL = {"n_images": 12, "sweep_images": 6, "growth_images": 6, "steps": 1, "batch_size": 6}


def tiny_config(out, eval_options: dict | None = None, **kw) -> CompareConfig:
    """The tiny plan into `out` (res, ssp2; CPU, one job, quiet); eval_options extend TINY_EVAL, kw replace."""
    opts = dict(
        models=["res", "ssp2"],
        seeds=1,
        out=str(out),
        train=dict(TINY_TRAIN),
        eval={**TINY_EVAL, **(eval_options or {})},
        device="cpu",
        quiet=True,
        jobs=1,
    )
    opts.update(kw)
    return CompareConfig(**opts)
