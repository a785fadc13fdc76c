"""The files of the attack experiment (`sspnet.experiments.attack`): attack_<name>_<eps>.json per eps, .png
(natural vs adversarial grid, class-stratified), .safetensors (the kept adversarial images, uint8 x255 when on
the 8-bit grid); for several eps attack_<name>_sweep.json/.png/.md/.csv; and the summary lines."""

from __future__ import annotations

from pathlib import Path


def fmt_eps(v: float) -> str:
    """An eps (CLI units) as file names write it: 0.3, 8, 1e-05 -> 1em05."""
    return f"{v:.6g}".replace("-", "m")


def _pred_at(result, key: str, index):
    from sspnet.eval.selection import positions

    return result.per_sample[key][positions(result.indices, index)].long()


def write_outputs(
    result,
    images,
    labels,
    out_dir: Path,
    name: str,
    ckpt: Path,
    spec,
    grid: int,
    rank: int = 0,
    selection: dict | None = None,
) -> list[Path]:
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
    extra = {
        "checkpoint": str(ckpt),
        "checkpoint_selection": selection,
        "dataset": spec.name,
        "eps_unit": result.config["eps_unit"],
    }
    index = result.adversarial.get("index")
    suffix = f"_rank{rank}" if result.world_size > 1 else ""
    for i, r in enumerate(result.results):
        stem = out_dir / f"attack_{name}_{fmt_eps(r.eps_cli)}"
        if rank == 0:
            one = dict(
                full,
                results=[full["results"][i]],
                flags=[f for f in full["flags"] if f["eps"] is None or f["eps"] == r.eps_cli],
            )
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
            written.append(
                save_image_grid(
                    Path(f"{stem}.png"), nat, adv[show], y[show], pred_clean[show], pred_adv[show], n=grid, title=title
                )
            )
        scaled = adv * 255
        on_grid = bool((scaled - scaled.round()).abs().max() < 1e-3) if adv.numel() else True
        tensors = {
            "adversarial": scaled.round().to(torch.uint8) if on_grid else adv.float().contiguous(),
            "index": index.long().contiguous(),
            "label": y.long().contiguous(),
            "pred_clean": pred_clean.contiguous(),
            "pred_adversarial": pred_adv.contiguous(),
        }
        meta = {
            "eps": repr(r.eps),
            "eps_cli": repr(r.eps_cli),
            "dtype": "uint8 (x255)" if on_grid else "float32",
            "checkpoint": str(ckpt),
        }
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
    steps = (
        f"PGD-{cfg['steps']}" + (f", {cfg['restarts']} restarts" if cfg["restarts"] > 1 else "") + "; "
        if "pgd" in curves
        else ""
    )
    save_sweep_plot(
        stem.with_suffix(".png"),
        [r.eps for r in ordered],
        curves,
        result.clean_acc,
        title=f"{title} ({steps}{result.n} images)",
        eps_unit=cfg["eps_unit"],
        norm="L∞" if cfg["norm"] == "linf" else "L2",
    )
    atomic_write_text(stem.with_suffix(".md"), sweep_table(result, "md"))
    atomic_write_text(stem.with_suffix(".csv"), sweep_table(result, "csv"))
    return [stem.with_suffix(s) for s in (".json", ".png", ".md", ".csv")]


def checkpoint_lines(desc: dict | None) -> list[str]:
    """The checkpoint used and how it was selected (`describe_checkpoint`), with its note and warning."""
    from sspnet.nn.checkpoints import checkpoint_summary

    if not desc:
        return []
    return [
        f"  checkpoint: {checkpoint_summary(desc)}",
        *(f"  ! {line}" for line in (desc.get("note"), desc.get("warning")) if line),
    ]


def summary_lines(result, ckpt: Path, spec, name: str, written: list[Path], selection: dict | None = None) -> list[str]:
    """The evaluation's summary as `sspnet attack` prints it: the model, the checkpoint, one row per eps and
    attack (accuracy, loss, perturbation sizes, time), the sanity flags and the files written."""
    cfg = result.config
    model = result.model or {}
    lines = [
        f"sspnet attack: {ckpt} ({spec.name} {model.get('scheme', '?')}, N={model.get('blocks', '?')})",
        *checkpoint_lines(selection),
        (
            f"  {result.n} test images, {cfg['norm']}, quantize {'on' if cfg['quantize'] else 'off'}, "
            f"steps {cfg['steps']}, restarts {cfg['restarts']}, world size {result.world_size}"
        ),
        f"  clean       acc {result.clean_acc:7.2%}  loss {result.clean_loss:.4f}",
        f"  {'eps':>8} {'attack':<11} {'acc':>7} {'loss':>8} {'Linf':>7} {'L2':>7} {'time s':>7}",
    ]
    for r in sorted(result.results, key=lambda r: r.eps):
        rows = list(r.attacks.values()) + ([r.worst] if len(r.attacks) > 1 else [])
        for j, a in enumerate(rows):
            eps = f"{r.eps_cli:8g}" if j == 0 else " " * 8
            lines.append(
                f"  {eps} {a.attack:<11} {a.acc:7.2%} {a.loss:8.4f} {a.linf_max:7.4f} {a.l2_mean:7.3f} {a.time_s:7.1f}"
            )
    if result.flags:
        lines.append("  sanity flags:")
        lines += [f"    ! {f['flag']}: {f['message']}" for f in result.flags]
    else:
        lines.append("  sanity flags: none")
    shown = [p for p in written if p.suffix in (".json", ".png")]
    lines.append("  wrote " + ", ".join(str(p) for p in shown[:6]) + (" ..." if len(shown) > 6 else ""))
    return lines
