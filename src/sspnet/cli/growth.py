"""`sspnet growth RUN_DIR [RUN_DIR ...]`: perturbation growth ratios per group and per block, and beside them the
L2 Lipschitz bounds (`sspnet.eval.lipschitz`; --no-bound skips them).

Writes RUN_DIR/growth.json, RUN_DIR/growth.png (ratio per block, group boundaries marked) and
RUN_DIR/growth_groups.png (ratio per block group, the paper's PGR figures) for every run, and with several runs
combined plots (one line per run) at --plot and its *_groups.png. Progress on stderr (--quiet: none).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from sspnet.cli._options import (
    add_flag,
    add_option,
    add_threads,
    field_default,
    per_dataset,
    print_checkpoint,
)
from sspnet.eval.growth import (
    ADVERSARIES,
    NOISE_BASELINES,
    P_NAMES,
    GrowthConfig,
    GrowthResult,
    growth_of_run,
)
from sspnet.nn.checkpoints import load_model
from sspnet.train.folder import recorded_data_root

# concept -> (GrowthConfig field or None, the default in words (None: the field's), extra settings)
_SHARED: dict[str, tuple[str | None, str | None, dict[str, Any]]] = {
    "dataset": (None, "the model's", {}),
    "data_root": (None, "each run's recorded --data-root, else $SSPNET_DATA or ./data", {}),
    "crit": (None, None, {"default": "final"}),
    "norm": ("norm", None, {"note": "growth perturbs in linf"}),
    "eps": (None, per_dataset(lambda spec: spec.train_eps / spec.eps_unit) + " (its training eps)", {}),
    "alpha": (None, per_dataset(lambda spec: spec.train_alpha / spec.eps_unit) + " (its training alpha)", {}),
    "pgd_steps": ("steps", None, {}),
    "random_start": ("random_start", None, {}),
    "quantize": ("quantize", None, {}),
    "n_images": ("n_images", None, {}),
    "eval_batch_size": ("batch_size", None, {}),
    "seed": ("seed", None, {"note": "of the noise baseline"}),
    "device": (None, None, {"default": "auto"}),
    "quiet": (None, None, {"default": False}),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "growth",
        help="perturbation growth ratio per block group and per block (depth profile)",
        description="Perturbation growth ratio ||G(h(x')) - G(h(x))||_p / ||h(x') - h(x)||_p (mean over test "
        "images) of every block group and every single block, for an adversarial x' and a "
        "random-noise baseline at the same eps. eps/alpha are in the dataset's CLI unit (1/255 for "
        "cifar10/tiny, pixel units for mnist/fmnist); default: the dataset's training eps/alpha.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or checkpoint files)")
    add_option(p, "--attack", "adversary", default=field_default(GrowthConfig, "adversary"), choices=ADVERSARIES)
    add_option(
        p,
        "--noise",
        "random baseline: sign (+-eps) | uniform (U(-eps, eps)) | none",
        default=field_default(GrowthConfig, "noise"),
        choices=NOISE_BASELINES,
    )
    add_option(p, "--p", "norms: any of 1 2 inf", nargs="+", default=list(P_NAMES), shown="all")
    for concept, (field, shown, settings) in _SHARED.items():
        extra = dict(settings)
        default = extra.pop("default", None if field is None else field_default(GrowthConfig, field))
        add_flag(p, "growth", concept, default=default, shown=shown, **extra)
    add_option(
        p,
        "--bound",
        "L2 Lipschitz bounds per block and group beside the measured p=2 ratios, the certified accuracy at eps "
        "and the per-block forward-Euler / SSP certificates of the pairs",
        default=True,
        action=argparse.BooleanOptionalAction,
    )
    add_threads(p, "growth")
    add_option(p, "--label", "one label per run for tables and plots", nargs="+", shown="the run folder's name")
    add_option(
        p,
        "--plot",
        "combined plot when several runs are given (its per-group figure next to it, *_groups.png)",
        default="growth-compare.png",
    )
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace, unit: float) -> GrowthConfig:
    """The GrowthConfig of parsed flags; unit: pixel units per CLI unit of the run's dataset."""
    threat = dataclasses.replace(
        field_default(GrowthConfig, "threat"),
        norm=args.norm,
        eps=None if args.eps is None else args.eps * unit,
        alpha=None if args.alpha is None else args.alpha * unit,
        steps=args.pgd_steps,
        random_start=args.random_start,
        quantize=args.quantize,
    )
    return GrowthConfig(
        adversary=args.attack,
        threat=threat,
        noise=args.noise,
        ps=tuple(args.p),
        n_images=args.n_images,
        batch_size=args.eval_batch_size,
        seed=args.seed,
    )


def _fmt(v: float) -> str:
    """A ratio, or 'undef' where it is undefined (the reason is printed below the table)."""
    return "undef " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"


def run(args: argparse.Namespace) -> int:
    from sspnet.data.specs import get_dataset_spec
    from sspnet.distributed import resolve_device
    from sspnet.eval.growth_plots import groups_plot_path, growth_results_plot
    from sspnet.io.progress import progress_line

    if args.n_images < 1:
        raise ValueError(f"--n-images must be >= 1 (test images), got {args.n_images}")
    if args.label is not None and len(args.label) != len(args.runs):
        raise ValueError(f"--label needs one label per run: got {len(args.label)} labels for {len(args.runs)} runs")
    device = resolve_device(args.device)
    results: list[GrowthResult] = []
    for i, run_path in enumerate(args.runs):
        path = Path(run_path)
        if not path.exists():
            raise FileNotFoundError(f"no run folder or checkpoint at {path}; train one with `sspnet train --out DIR`")
        dataset = args.dataset or load_model(path, crit=args.crit).config.get("dataset")
        unit = get_dataset_spec(dataset).eps_unit
        cfg = config_from_args(args, unit)
        label = args.label[i] if args.label else None
        data_root = args.data_root or recorded_data_root(path)  # default: the folder the run was trained from
        shown = progress_line(
            f"sspnet growth {label or path.name}" + (f" ({i + 1}/{len(args.runs)})" if len(args.runs) > 1 else ""),
            getattr(args, "quiet", False),
        )
        try:
            result, json_path = growth_of_run(
                path,
                cfg,
                dataset=dataset,
                data_root=data_root,
                device=device,
                crit=args.crit,
                label=label,
                progress=shown,
                bound=args.bound,
            )
        finally:
            if shown is not None:
                shown.close()
        plot_path, groups_path = json_path.with_suffix(".png"), groups_plot_path(json_path.with_suffix(".png"))
        growth_results_plot([result], plot_path, by="block", title=result.label)
        growth_results_plot([result], groups_path, by="group", title=result.label)
        results.append(result)
        _print(result)
        print_bounds(result)
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


def _num(v: Any, width: int = 8, spec: str = ".3g") -> str:
    """A bound, ratio or fraction in a table cell ('-' where there is none: None, NaN, inf)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return f"{'-':>{width}s}"
    return f"{v:{width}{spec}}"


def print_bounds(r: GrowthResult) -> None:
    """The L2 bounds of `r.lipschitz` next to the measured p=2 ratios, per block and per group, then the
    network bound, the certified accuracy and why a bound is vacuous."""
    lip = r.lipschitz
    if not lip:
        return
    prof, certs = lip["profile"], lip.get("certificates", {})
    adv = r.adversarial.blocks.get("2") if r.adversarial.blocks else None
    noise = r.baseline.blocks.get("2") if r.baseline is not None and r.baseline.blocks else None
    ca, cn = certs.get("adversarial", {}), certs.get("noise", {})
    print("  L2 bound vs measured p=2 ratio; fe: fraction of pairs on which the forward-Euler step of size h is")
    print("  contractive at the block input, ssp: fraction the SSP argument certifies (pairs seen only)")
    print("     block group    bound      adv    noise   fe adv  ssp adv fe noise ssp noise")
    for k, b in enumerate(prof["blocks"]):
        cells = [_num(b["block"])] + [_num(m[k] if m else None, spec=".3f") for m in (adv, noise)]
        for c in (ca, cn):
            cells += [_num(c[key][k] if key in c else None, spec=".2f") for key in ("fe_contractive", "ssp_certified")]
        print(f"  {k + 1:8d} {b['group'] + 1:5d} " + " ".join(cells))
    g_adv = r.adversarial.groups.get("2") if r.adversarial.groups else None
    g_noise = r.baseline.groups.get("2") if r.baseline is not None and r.baseline.groups else None
    for j, g in enumerate(prof["groups"]):
        ms = " ".join(f"{w} {_num(m[j] if m else None, 0, '.3f')}" for w, m in (("adv", g_adv), ("noise", g_noise)))
        print(f"  group {j + 1}: L2 bound {_num(g, 0)}  measured p=2 {ms}")
    parts = f"stem {_num(prof['stem']['bound'], 0)}, head {_num(prof['head']['bound'], 0)}"
    if prof["transitions"]:
        parts += ", transitions " + " ".join(_num(t["bound"], 0) for t in prof["transitions"])
    print(f"  network L2 bound (pixels -> logits) {_num(prof['network'], 0)} ({parts}; {prof['seconds']:.2f} s)")
    c = lip.get("certified")
    if c:
        print(
            f"  certified accuracy at linf eps {c['eps']:.4g} (L2 radius {c['radius']:.4g}): {c['certified']:.3f} "
            f"of {c['n']} images (clean {c['accuracy']:.3f}; median certified L2 radius {_num(c['median_radius'], 0)})"
        )
    for why in prof.get("reasons", []):
        print(f"  ! bound vacuous or missing: {why}")
    for k, why in enumerate(lip.get("ssp_reasons", [])):
        if why:
            print(f"  ! block {k + 1}: no SSP certificate ({why})")
