"""`sspnet attack RUN_DIR_OR_CHECKPOINT`: robustness of a trained model (FGSM, PGD, noise ball, AutoAttack, Square),
optionally with the gradient-masking audit (`--audit`, `--transfer-from RUN`).

eps/alpha are in the original's units for linf (CIFAR-10/TinyImageNet in 1/255, MNIST/Fashion-MNIST in [0, 1]);
l2 radii are always in [0, 1] pixel units. Writes next to the checkpoint (or into --out):
attack_<name>_<eps>.json, .png (natural vs adversarial grid), .safetensors (adversarial images); for several
eps also attack_<name>_sweep.json/.png/.md/.csv; with --audit attack_audit_<eps>.json.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

L2_DEFAULT_EPS = {"mnist": 2.0, "mnist5k": 2.0, "fmnist": 1.5, "cifar10": 0.5, "tiny": 0.5}
ARCHI_DATASET = {"mnist": "mnist", "fmnist": "fmnist", "cifar10": "cifar10", "cifar": "cifar10",
                 "imagenet": "tiny", "tinyimagenet": "tiny", "tiny": "tiny"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attack", help="adversarial robustness of a trained model (fgsm, pgd, noise ball, autoattack)",
        description="Clean and adversarial accuracy/loss, per-sample worst case across attacks, perturbation sizes, "
                    "sanity flags. linf eps/alpha in the dataset's CLI unit (1/255 for cifar10/tiny, [0, 1] for "
                    "mnist/fmnist; default: the training eps/alpha); l2 eps/alpha in [0, 1] pixel units.")
    p.add_argument("path", nargs="?", metavar="RUN_DIR_OR_CHECKPOINT", help="run folder or checkpoint file")
    p.add_argument("--load", default=None, help="same as the positional path (the original's flag)")
    p.add_argument("--attack", default="pgd", help="fgsm | pgd | ball | autoattack | square | all, or a comma "
                   "list (all = fgsm,pgd,ball; default pgd)")
    p.add_argument("--norm", default="linf", choices=("linf", "l2"), help="threat model (default linf)")
    p.add_argument("--eps", type=float, nargs="+", default=None,
                   help="one value, or several for a sweep (default: linf the dataset's training eps, 0.3 "
                        "mnist/mnist5k, 0.1 fmnist, 8 cifar10, 4 tiny; l2 2 mnist/mnist5k, 1.5 fmnist, 0.5 "
                        "cifar10/tiny)")
    p.add_argument("--alpha", type=float, default=None,
                   help="PGD step (default: the training alpha scaled with eps, i.e. alpha/eps of training)")
    p.add_argument("--iters", type=int, default=20, help="PGD iterations (default 20)")
    p.add_argument("--restarts", type=int, default=1, help="PGD restarts, worst case kept (default 1)")
    p.add_argument("--copies", type=int, default=10, help="noise-ball copies (default 10)")
    p.add_argument("--random-start", action="store_true",
                   help="PGD from a random point of the ball (default: from the image itself)")
    p.add_argument("--early-stop", action=argparse.BooleanOptionalAction, default=True,
                   help="stop attacking an image once it is misclassified and never attack images misclassified "
                        "clean; an image counts as broken if any PGD iterate fooled the model, as AutoAttack "
                        "counts (default on; --no-early-stop: every attack in full on every image)")
    p.add_argument("--queries", type=int, default=5000, help="Square: model calls per image (default 5000)")
    p.add_argument("--audit", action="store_true",
                   help="gradient-masking audit on the same images at the one --eps: PGD with --iters and 4x as "
                        "many steps, Square, AutoAttack, PGD at a large eps, input gradients (and --transfer-from)")
    p.add_argument("--transfer-from", default=None, metavar="RUN",
                   help="audit with transfer attacks: PGD crafted on this run's model (implies --audit; default: "
                        "none)")
    p.add_argument("--audit-autoattack", action=argparse.BooleanOptionalAction, default=True,
                   help="run AutoAttack standard in the audit (default on)")
    p.add_argument("--bsize", type=int, default=100, help="batch size (default 100)")
    p.add_argument("--crit", default="final", choices=("acc", "loss", "last", "final"),
                   help="checkpoint of a run folder: model_final.pt (end of training) | model_acc.pt | "
                        "model_loss.pt (best on the run's selection split) (default final)")
    p.add_argument("--n-examples", type=int, default=None,
                   help="evaluate n class-stratified test images (sspnet.data.subsets; default all)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto: cuda, else "
                   "mps, else cpu)")
    from sspnet.cli._options import add_threads

    add_threads(p)
    p.add_argument("--model", default=None, help="scheme of an original checkpoint: res, ssp2, ssp3, ark, midrk2 "
                   "(default: the checkpoint's)")
    p.add_argument("--block", type=int, default=None, help="blocks per group of an original checkpoint (default: "
                   "the checkpoint's, else inferred from its tensors)")
    p.add_argument("--eval", default=None, help="dataset: mnist5k | mnist | fmnist | cifar10 | tiny "
                   "(default: the model's)")
    p.add_argument("--archi", default=None, help="original architecture name: mnist | cifar10 | imagenet "
                   "(default: inferred from the checkpoint's tensors)")
    p.add_argument("--model-norm", default=None, help="norm layers of an original checkpoint: b | g | l | i "
                   "(default: the checkpoint's, else b with BatchNorm statistics, g without)")
    p.add_argument("--data-root", default=None, help="folder with the dataset files (default: the run's recorded "
                   "--data-root, else $SSPNET_DATA or ./data; mnist5k needs none)")
    p.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=True,
                   help="round to 8-bit levels after each step, as the original (default on)")
    p.add_argument("--seed", type=int, default=0, help="seed of random starts and noise (default 0)")
    p.add_argument("--grid", type=int, default=8, help="images in the PNG grid (default 8)")
    p.add_argument("--out", default=None, help="output folder (default: the run folder / the checkpoint's folder)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress display on stderr (default: one progress line, images done, elapsed, time left)")
    p.set_defaults(handler=run)


def _fmt_eps(v: float) -> str:
    return f"{v:.6g}".replace("-", "m")


def _check_cli(args: argparse.Namespace) -> None:
    from sspnet.distributed import env_world_size

    if args.eps is not None and any(not math.isfinite(e) or e < 0 for e in args.eps):
        raise ValueError(f"--eps must be >= 0, got {args.eps}")
    if args.alpha is not None and not (math.isfinite(args.alpha) and args.alpha > 0):
        raise ValueError(f"--alpha must be > 0, got {args.alpha}")
    for flag, value, low in (("--iters", args.iters, 0), ("--restarts", args.restarts, 1),
                             ("--copies", args.copies, 1), ("--bsize", args.bsize, 1), ("--grid", args.grid, 0),
                             ("--queries", args.queries, 1)):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    if (args.audit or args.transfer_from) and env_world_size() > 1:
        raise ValueError("--audit runs in one process: run it without torchrun")
    if args.n_examples is not None and args.n_examples < 1:
        raise ValueError(f"--n-examples must be >= 1 (images to evaluate), got {args.n_examples}; the evaluation "
                         "set would be empty")


def _eps_in_cli_units(args: argparse.Namespace, spec) -> tuple[float, list[float]]:
    """(pixel units per CLI unit, eps in CLI units): --eps or the dataset's default, checked against the range
    and against rounding (an eps below one 8-bit level would move no pixel)."""
    from sspnet.attacks.base import sub_quantum

    unit = spec.eps_unit if args.norm == "linf" else 1.0
    if args.eps is None:
        eps_cli = [spec.train_eps / unit] if args.norm == "linf" else [L2_DEFAULT_EPS[spec.name]]
    else:
        eps_cli = list(args.eps)
    pixel_max = 1.0 if args.norm == "linf" else math.sqrt(spec.channels * spec.size ** 2)
    for e in eps_cli:
        if e * unit > pixel_max * (1 + 1e-9):
            hint = "in 1/255 units, e.g. --eps 8" if unit != 1 else "in [0, 1], e.g. --eps 0.3"
            raise ValueError(f"--eps {e:g} is beyond the pixel range ({e * unit:.4g} > {pixel_max:.4g} in pixel "
                             f"units); {spec.name} {args.norm} eps is given {hint}")
        if sub_quantum(e * unit, args.quantize):
            one = "1 (1/255)" if unit != 1 else f"{1 / 255:.6g} (1/255)"
            raise ValueError(f"--eps {e:g} is below one 8-bit level, so with rounding on it cannot move a pixel: the "
                             f"smallest eps that moves one is {one} for {spec.name} {args.norm}; or pass --no-quantize")
    return unit, eps_cli


def run(args: argparse.Namespace) -> int:
    from sspnet.distributed import init_distributed
    from sspnet.eval.config import EvalConfig
    from sspnet.data.specs import get_dataset_spec

    _check_cli(args)
    if (args.path is None) == (args.load is None):
        raise ValueError("give the run folder or checkpoint once: `sspnet attack RUN_DIR` (or --load FILE)")
    path = Path(args.path or args.load)
    crit = "final" if args.crit == "last" else args.crit
    info = init_distributed(args.device)
    dataset = args.eval
    if args.archi is not None:
        arch_ds = ARCHI_DATASET.get(args.archi.lower())
        if arch_ds is None:
            raise ValueError(f"unknown --archi {args.archi!r}; valid: mnist, cifar10, imagenet")
        dataset = dataset or arch_ds
    overrides = {"dataset": dataset, "model": args.model, "block": args.block, "norm": args.model_norm}
    ckpt, model = _load(path, crit, info.device, overrides)
    spec = get_dataset_spec(dataset or model.config["dataset"])
    unit, eps_cli = _eps_in_cli_units(args, spec)
    source = _audit_source(args, crit, info.device, spec.name)
    cfg = EvalConfig(attack=args.attack, norm=args.norm, eps=tuple(e * unit for e in eps_cli),
                     alpha=None if args.alpha is None else args.alpha * unit,
                     alpha_rel=spec.train_alpha / spec.train_eps, steps=args.iters, restarts=args.restarts,
                     copies=args.copies, random_start=args.random_start, batch_size=args.bsize,
                     n_images=args.n_examples, device=info.device, quantize=args.quantize, seed=args.seed,
                     eps_unit=unit, early_stop=args.early_stop, queries=args.queries)
    cfg.validated()
    if "autoattack" in cfg.attack_names():
        from sspnet.attacks import load_autoattack_class

        load_autoattack_class()
    from sspnet.data import load

    from sspnet.cli._options import recorded_data_root

    root = args.data_root or recorded_data_root(path)  # default: the folder the run was trained from
    images, labels = load(spec.name, root=root, split="test", device=info.device)
    out_dir = Path(args.out) if args.out else (path if path.is_dir() else ckpt.parent)
    from sspnet.eval.robustness import evaluate

    from sspnet.io.progress import progress_line

    shown = progress_line("sspnet attack", getattr(args, "quiet", False) or not info.is_main)
    try:
        result = evaluate(model, images, labels, cfg, progress=shown)
    finally:
        if shown is not None:
            shown.close()
    name = args.attack.lower().replace(",", "+").replace(" ", "") + ("-l2" if args.norm == "l2" else "")
    from sspnet.nn.checkpoints import describe_checkpoint

    selection = describe_checkpoint(path, crit)
    written = write_outputs(result, images, labels, out_dir, name, ckpt, spec, args.grid, info.rank, selection)
    if info.is_main:
        print_summary(result, ckpt, spec, name, written, selection)
        if source is not False:
            _run_audit(args, model, source, images, labels, result, cfg, out_dir)
    return 0


def _load(path: Path, crit: str, device, overrides: dict):
    """(checkpoint file, model) of a run folder or checkpoint; ValueError naming the overrides that failed."""
    from sspnet.nn.checkpoints import load_model, resolve_checkpoint

    ckpt = resolve_checkpoint(path, crit)
    try:
        return ckpt, load_model(ckpt, crit=crit, device=device, **overrides)
    except ValueError as exc:
        given = ", ".join(f"--{k} {v}" for k, v in (("eval", overrides["dataset"]), ("model", overrides["model"]),
                                                     ("block", overrides["block"])) if v is not None)
        raise ValueError(f"cannot load {ckpt}{' with ' + given if given else ''}: {exc}") from None


def _audit_source(args: argparse.Namespace, crit: str, device, dataset: str):
    """False: no audit; None: audit without transfer; else the --transfer-from model (checked: same dataset)."""
    if args.transfer_from is None:
        if args.audit and args.eps is not None and len(args.eps) > 1:
            raise ValueError("--audit runs at one eps: give a single --eps value")
        return None if args.audit else False
    if args.eps is not None and len(args.eps) > 1:
        raise ValueError("--transfer-from (the audit) runs at one eps: give a single --eps value")
    _, source = _load(Path(args.transfer_from), crit, device, {"dataset": dataset, "model": None, "block": None,
                                                               "norm": None})
    return source


def _run_audit(args: argparse.Namespace, model, source, images, labels, result, cfg, out_dir: Path) -> None:
    """The gradient-masking audit on the evaluation's images at its eps: attack_audit_<eps>.json and a summary."""
    from sspnet.eval.masking import AuditConfig, audit
    from sspnet.io.files import atomic_write_json

    eps = cfg.eps[0]
    acfg = AuditConfig(eps=eps, alpha=cfg.alpha_for(eps), steps=max(args.iters, 1), norm=args.norm,
                       quantize=args.quantize, queries=args.queries, autoattack=args.audit_autoattack,
                       batch_size=args.bsize, seed=args.seed, device=cfg.device)
    from sspnet.io.progress import progress_line

    shown = progress_line("sspnet attack --audit", getattr(args, "quiet", False))
    try:
        found = audit(model, images, labels, acfg, indices=result.indices, source_model=source, progress=shown)
    finally:
        if shown is not None:
            shown.close()
    out = out_dir / f"attack_audit_{_fmt_eps(eps / cfg.eps_unit)}.json"
    atomic_write_json(out, {"transfer_from": args.transfer_from, **found.to_dict()})
    for line in found.summary_lines():
        print("  " + line)
    print(f"  wrote {out}")


def _pred_at(result, key: str, index):
    from sspnet.eval.selection import positions

    return result.per_sample[key][positions(result.indices, index)].long()


def write_outputs(result, images, labels, out_dir: Path, name: str, ckpt: Path, spec, grid: int,
                  rank: int = 0, selection: dict | None = None) -> list[Path]:
    """JSON per eps (+ sweep JSON/PNG/MD/CSV), PNG grids (rank 0) and the kept adversarial images (every rank).
    selection: how the checkpoint was chosen (`describe_checkpoint`; None: described from the file)."""
    import safetensors.torch
    import torch

    from sspnet.data.subsets import subset_indices
    from sspnet.eval.plots import eps_text, save_image_grid
    from sspnet.io.files import atomic_write_bytes, atomic_write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    full = result.to_dict()
    from sspnet.nn.checkpoints import describe_checkpoint

    selection = selection or describe_checkpoint(ckpt)
    extra = {"checkpoint": str(ckpt), "checkpoint_selection": selection, "dataset": spec.name,
             "eps_unit": result.config["eps_unit"]}
    index = result.adversarial.get("index")
    suffix = f"_rank{rank}" if result.world_size > 1 else ""
    for i, r in enumerate(result.results):
        stem = out_dir / f"attack_{name}_{_fmt_eps(r.eps_cli)}"
        if rank == 0:
            one = dict(full, results=[full["results"][i]],
                       flags=[f for f in full["flags"] if f["eps"] is None or f["eps"] == r.eps_cli])
            result_path = Path(f"{stem}.json")
            atomic_write_json(result_path, {**extra, **one})
            written.append(result_path)
        adv = result.adversarial.get(f"eps{i}")
        if adv is None or index is None or len(index) == 0:
            continue
        pred_adv = _pred_at(result, f"{i}/{result.config['keep_attack']}/pred", index)  # the kept images' attack
        pred_clean = _pred_at(result, "clean/pred", index)
        y = labels[index.to(labels.device)].cpu()
        if rank == 0 and grid > 0:
            show = subset_indices(y, grid)  # class-stratified among the kept images
            nat = images[index[show].to(images.device)].cpu()
            title = f"{name} eps {eps_text(r.eps, result.config['eps_unit'])}: true / predicted (red: wrong)"
            written.append(save_image_grid(Path(f"{stem}.png"), nat, adv[show], y[show], pred_clean[show],
                                           pred_adv[show], n=grid, title=title))
        scaled = adv * 255
        on_grid = bool((scaled - scaled.round()).abs().max() < 1e-3) if adv.numel() else True
        tensors = {"adversarial": scaled.round().to(torch.uint8) if on_grid else adv.float().contiguous(),
                   "index": index.long().contiguous(), "label": y.long().contiguous(),
                   "pred_clean": pred_clean.contiguous(), "pred_adversarial": pred_adv.contiguous()}
        meta = {"eps": repr(r.eps), "eps_cli": repr(r.eps_cli), "dtype": "uint8 (x255)" if on_grid else "float32",
                "checkpoint": str(ckpt)}
        st_path = Path(f"{stem}{suffix}.safetensors")
        atomic_write_bytes(st_path, safetensors.torch.save(tensors, metadata=meta))
        written.append(st_path)
    if rank == 0 and len(result.results) > 1:
        written += _write_sweep(result, out_dir / f"attack_{name}_sweep", {**extra, **full}, f"{spec.name}: {name}")
    return written


def _write_sweep(result, stem: Path, record: dict, title: str) -> list[Path]:
    """The sweep's JSON (record), accuracy-vs-eps PNG and markdown/CSV tables."""
    from sspnet.eval.plots import save_sweep_plot
    from sspnet.eval.results import sweep_table
    from sspnet.io.files import atomic_write_json, atomic_write_text

    atomic_write_json(stem.with_suffix(".json"), record)
    ordered = sorted(result.results, key=lambda r: r.eps)
    curves = {k: [r.attacks[k].acc for r in ordered] for k in ordered[0].attacks}
    if len(curves) > 1:
        curves["worst case"] = [r.worst.acc for r in ordered]
    cfg = result.config
    steps = f"PGD-{cfg['steps']}" + (f", {cfg['restarts']} restarts" if cfg["restarts"] > 1 else "") + "; " \
        if "pgd" in curves else ""
    save_sweep_plot(stem.with_suffix(".png"), [r.eps for r in ordered], curves, result.clean_acc,
                    title=f"{title} ({steps}{result.n} images)", eps_unit=cfg["eps_unit"],
                    norm="L∞" if cfg["norm"] == "linf" else "L2")
    atomic_write_text(stem.with_suffix(".md"), sweep_table(result, "md"))
    atomic_write_text(stem.with_suffix(".csv"), sweep_table(result, "csv"))
    return [stem.with_suffix(s) for s in (".json", ".png", ".md", ".csv")]


def print_summary(result, ckpt: Path, spec, name: str, written: list[Path], selection: dict | None = None) -> None:
    from sspnet.cli._options import print_checkpoint

    cfg = result.config
    model = result.model or {}
    print(f"sspnet attack: {ckpt} ({spec.name} {model.get('scheme', '?')}, N={model.get('blocks', '?')})")
    print_checkpoint(selection)
    print(f"  {result.n} test images, {cfg['norm']}, quantize {'on' if cfg['quantize'] else 'off'}, "
          f"steps {cfg['steps']}, restarts {cfg['restarts']}, world size {result.world_size}")
    print(f"  clean       acc {result.clean_acc:7.2%}  loss {result.clean_loss:.4f}")
    print(f"  {'eps':>8} {'attack':<11} {'acc':>7} {'loss':>8} {'Linf':>7} {'L2':>7} {'time s':>7}")
    for r in sorted(result.results, key=lambda r: r.eps):
        rows = list(r.attacks.values()) + ([r.worst] if len(r.attacks) > 1 else [])
        for j, a in enumerate(rows):
            eps = f"{r.eps_cli:8g}" if j == 0 else " " * 8
            print(f"  {eps} {a.attack:<11} {a.acc:7.2%} {a.loss:8.4f} {a.linf_max:7.4f} {a.l2_mean:7.3f} "
                  f"{a.time_s:7.1f}")
    if result.flags:
        print("  sanity flags:")
        for f in result.flags:
            print(f"    ! {f['flag']}: {f['message']}")
    else:
        print("  sanity flags: none")
    shown = [p for p in written if p.suffix in (".json", ".png")]
    print("  wrote " + ", ".join(str(p) for p in shown[:6]) + (" ..." if len(shown) > 6 else ""))
