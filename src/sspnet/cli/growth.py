"""`sspnet growth RUN_DIR [RUN_DIR ...]`: perturbation growth ratios per group and per block.

Writes RUN_DIR/growth.json, RUN_DIR/growth.png (ratio per block, group boundaries marked) and
RUN_DIR/growth_groups.png (ratio per block group, the paper's PGR figures) for every run, and with several runs
combined plots (one line per run) at --plot and its *_groups.png. Progress on stderr (--quiet: none).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from sspnet.cli._options import add_threads, print_checkpoint, recorded_data_root
from sspnet.nn.checkpoints import load_model
from sspnet.eval.growth import (ADVERSARIES, NOISE_BASELINES, P_NAMES, GrowthConfig, GrowthResult,
                                growth_of_run)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "growth", help="perturbation growth ratio per block group and per block (depth profile)",
        description="Perturbation growth ratio ||G(h(x')) - G(h(x))||_p / ||h(x') - h(x)||_p (mean over test "
                    "images) of every block group and every single block, for an adversarial x' and a "
                    "random-noise baseline at the same eps. eps/alpha are in the dataset's CLI unit (1/255 for "
                    "cifar10/tiny, pixel units for mnist/fmnist); default: the dataset's training eps/alpha.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or checkpoint files)")
    p.add_argument("--dataset", default=None, help="dataset of the test images (default: the model's)")
    p.add_argument("--data-root", default=None, help="folder with the dataset files (default: each run's recorded "
                   "--data-root, else $SSPNET_DATA or ./data; mnist5k needs none)")
    p.add_argument("--crit", default="final", choices=("acc", "loss", "final"),
                   help="checkpoint of a run folder: final (end of training) | acc | loss (best on the run's "
                        "selection split, validation unless trained with --select-on test) (default final)")
    p.add_argument("--attack", default="pgd", choices=ADVERSARIES, help="adversary (default pgd)")
    p.add_argument("--eps", type=float, default=None, help="perturbation size in the dataset's CLI unit (default: "
                   "the dataset's training eps: 0.3 mnist/mnist5k, 0.1 fmnist, 8 cifar10, 4 tiny)")
    p.add_argument("--alpha", type=float, default=None, help="PGD step in the dataset's CLI unit (default: the "
                   "dataset's training alpha: 0.05 mnist/mnist5k, 0.02 fmnist, 2 cifar10, 1 tiny)")
    p.add_argument("--steps", type=int, default=20, help="PGD steps (default 20)")
    p.add_argument("--random-start", action="store_true", help="PGD random start (default: none, as the paper)")
    p.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=True,
                   help="round the adversary's steps to 8-bit levels, as the original (default on)")
    p.add_argument("--noise", default="sign", choices=NOISE_BASELINES,
                   help="random baseline: sign (+-eps) | uniform (U(-eps, eps)) | none (default sign)")
    p.add_argument("--p", nargs="+", default=list(P_NAMES), help="norms: any of 1 2 inf (default all)")
    p.add_argument("--n", type=int, default=500, help="class-stratified test images (default 500)")
    p.add_argument("--batch-size", type=int, default=100, help="test images per batch (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise baseline (default 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto: cuda, else "
                   "mps, else cpu)")
    add_threads(p)
    p.add_argument("--label", nargs="+", default=None, help="one label per run for tables and plots (default: "
                   "the run folder's name)")
    p.add_argument("--plot", default="growth-compare.png",
                   help="combined plot when several runs are given (default ./growth-compare.png; its per-group "
                        "figure next to it, *_groups.png)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress display on stderr (default: one progress line, images done, elapsed, time left)")
    p.set_defaults(handler=run)


def _fmt(v: float) -> str:
    """A ratio, or 'undef' where it is undefined (the reason is printed below the table)."""
    return "undef " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"


def run(args: argparse.Namespace) -> int:
    from sspnet.experiments.compare.plots import groups_plot_path, growth_results_plot
    from sspnet.io.progress import progress_line
    from sspnet.distributed import resolve_device
    from sspnet.data.specs import get_dataset_spec

    if args.n < 1:
        raise ValueError(f"--n must be >= 1 (test images), got {args.n}")
    if args.label is not None and len(args.label) != len(args.runs):
        raise ValueError(f"--label needs one label per run: got {len(args.label)} labels for {len(args.runs)} runs")
    device = resolve_device(args.device)
    results: list[GrowthResult] = []
    for i, run_path in enumerate(args.runs):
        path = Path(run_path)
        if not path.exists():
            raise FileNotFoundError(f"no run folder or checkpoint at {path}; train one with `sspnet train --save DIR`")
        dataset = args.dataset or load_model(path, crit=args.crit).config.get("dataset")
        unit = get_dataset_spec(dataset).eps_unit
        cfg = GrowthConfig(adversary=args.attack, eps=None if args.eps is None else args.eps * unit,
                           alpha=None if args.alpha is None else args.alpha * unit, steps=args.steps,
                           random_start=args.random_start, quantize=args.quantize, noise=args.noise,
                           ps=tuple(args.p), n_images=args.n, batch_size=args.batch_size, seed=args.seed)
        label = args.label[i] if args.label else None
        data_root = args.data_root or recorded_data_root(path)  # default: the folder the run was trained from
        shown = progress_line(f"sspnet growth {label or path.name}" + (f" ({i + 1}/{len(args.runs)})"
                                                                       if len(args.runs) > 1 else ""),
                              getattr(args, "quiet", False))
        try:
            result, json_path = growth_of_run(path, cfg, dataset=dataset, data_root=data_root, device=device,
                                              crit=args.crit, label=label, progress=shown)
        finally:
            if shown is not None:
                shown.close()
        plot_path, groups_path = json_path.with_suffix(".png"), groups_plot_path(json_path.with_suffix(".png"))
        growth_results_plot([result], plot_path, by="block", title=result.label)
        growth_results_plot([result], groups_path, by="group", title=result.label)
        results.append(result)
        _print(result)
        print_checkpoint(result.checkpoint)
        print(f"  wrote {json_path}, {plot_path} and {groups_path}")
    if len(results) > 1:
        out = growth_results_plot(results, args.plot, by="block")
        out_groups = growth_results_plot(results, groups_plot_path(Path(args.plot)), by="group")
        print(f"combined plots: {out} and {out_groups}")
    return 0


def _print(r: GrowthResult) -> None:
    adv = r.adversary.get("name")
    print(f"{r.label}: {r.dataset}, {r.n} images, adversary {adv}, noise {r.noise['kind']} eps {r.noise['eps']:.4g}")
    for name, prof in (("adversarial", r.adversarial), ("noise", r.baseline)):
        if prof is None or not prof.groups:
            continue
        for p in r.ps:
            groups = " ".join(_fmt(v) for v in prof.groups[p])
            blocks = " ".join(_fmt(v) for v in prof.blocks[p])
            print(f"  {name:11s} p={p:3s} groups [{groups}]  blocks [{blocks}]")
        for note in prof.undefined:
            print(f"  ! {note}")
