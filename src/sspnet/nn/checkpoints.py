"""Checkpoints: sspnet's own format and import of the original code's files.

Own format: torch.save of {"format": "sspnet", "format_version": 1, "model_config": create_model kwargs,
"state_dict": ..., "provenance": versions, ...extra}; `sspnet train` adds "epoch", "selected_on" (val | test |
final), "criterion" (acc | loss | final) and the epoch's val / test metrics, which `describe_checkpoint`
reports. A run folder (its file names: `sspnet.io.runlayout.RunLayout`) loads model_final.pt unless crit says
otherwise. Everything is loaded with `weights_only=True`; the original files (a dict with "state_dict" and an
argparse.Namespace "args") are admitted by allowing exactly argparse.Namespace, so a file whose pickle would run
code is refused before anything executes.
"""

from __future__ import annotations

import argparse
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sspnet.data.specs import get_dataset_spec
from sspnet.io.files import atomic_torch_save, provenance
from sspnet.io.runlayout import RunLayout
from sspnet.nn.architectures import get_architecture
from sspnet.nn.models import create_model

FORMAT = "sspnet"
_F_INDEX = {"0": "n1", "2": "conv1", "3": "n2", "5": "conv2"}
_ORIG_SCHEMES = {"res": "res", "ssp2": "ssp2", "ssp3": "ssp3", "ark": "ark", "midrk2": "midrk2-orig"}


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write `model` (an sspnet model with `.config`) in the own format, atomically."""
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("save_checkpoint needs an sspnet model (built by create_model, with a .config)")
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    obj = {
        "format": FORMAT,
        "format_version": 1,
        "model_config": dict(config),
        "state_dict": state,
        "provenance": provenance(),
        **extra,
    }
    return atomic_torch_save(obj, path)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


# how the files torch.save writes begin: a zip archive (torch >= 1.6) or a pickle (the legacy format, protocol 2+)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def safe_load(path: str | Path) -> Any:
    """torch.load with weights_only=True (argparse.Namespace admitted for original checkpoints).

    FileNotFoundError when there is no file; ValueError in one line naming the file when it is no torch
    checkpoint (empty, text, truncated or damaged) or when its pickle asks for anything but tensors and plain
    containers (loading it could run code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise ValueError(f"{path} is empty, not a torch checkpoint (an interrupted copy or write?)")
    if not head.startswith(_TORCH_MAGIC):
        kind = "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "of an unknown format"
        raise ValueError(
            f"{path} is not a torch checkpoint (it is {kind}); pass a .pt file written by torch.save "
            "or sspnet train, or a run folder"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on an unusual pickle protocol
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        unsafe = next((ln for ln in lines if "Unsupported global" in ln or "GLOBAL" in ln), None)
        if unsafe is None:  # a damaged pickle, or one using instructions no weights file needs
            detail = next((ln for ln in lines if "Unsupported operand" in ln), lines[-1] if lines else "")
            raise ValueError(
                f"{path} is not a loadable weights file: damaged, or a pickle that holds more than "
                f"tensors ({detail[:160]}); nothing in it was run; use an intact checkpoint"
            ) from None
        raise ValueError(
            f"refused to load {path}: it is not a plain weights file and loading it could run code ({unsafe[:200]})"
        ) from None
    except Exception as exc:  # truncated zip (RuntimeError), cut pickle (EOFError), damaged records ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(
            f"{path} is a truncated or damaged torch checkpoint ({type(exc).__name__}: "
            f"{first[:160]}); use an intact copy"
        ) from None


def resolve_checkpoint(path: str | Path, crit: str = "final") -> Path:
    """A checkpoint file from a file path or a run folder (crit: final | acc | loss | last = final).

    A run folder without model_acc.pt / model_loss.pt (trained with --select-on none) gives model_final.pt;
    one without model_final.pt is never silently replaced by a test-selected file: FileNotFoundError naming
    the files it holds."""
    path = Path(path)
    if path.is_dir():
        run = RunLayout(path)
        wanted = run.checkpoint_name(crit)  # ValueError for an unknown crit
        for name in dict.fromkeys((wanted, run.checkpoint_name("final"))):
            if (path / name).is_file():
                return path / name
        held = [k for k in ("acc", "loss") if run.checkpoint(k).is_file()]
        if held:
            hint = (
                f"it holds {', '.join(run.checkpoint_name(k) for k in held)}: pass crit / --crit {held[0]} to load it"
            )
        elif run.state_file.is_file():
            hint = f"it holds only {run.STATE}: the run has not finished an epoch yet"
        else:
            hint = "train one with `sspnet train --out DIR`"
        raise FileNotFoundError(f"run folder {path} has no {wanted}; {hint}")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint or run folder at {path}")
    return path


def load_model(
    path: str | Path, crit: str = "final", device: str | torch.device = "cpu", **overrides: Any
) -> nn.Module:
    """Load a model in eval mode from a run folder, an own checkpoint or an original-code checkpoint.

    crit picks the file of a run folder: final (model_final.pt, the default) | acc | loss (model_acc.pt /
    model_loss.pt: best on the run's selection split; `describe_checkpoint` says which split).
    overrides: create_model options (dataset=, model=/scheme=, blocks=, norm=, ...). For original files they
    fill what its `args` lack; the architecture is inferred from tensor shapes when no dataset is given.
    """
    file = resolve_checkpoint(path, crit)
    obj = safe_load(file)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise ValueError(f"{file} is not an sspnet or original SSP-network checkpoint (no 'state_dict' entry)")
    if "model" in overrides:
        overrides["scheme"] = overrides.pop("model")
    if "block" in overrides:
        overrides["blocks"] = overrides.pop("block")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    model: nn.Module
    if obj.get("format") == FORMAT:
        config = {**obj["model_config"], **overrides}
        old, new = get_dataset_spec(obj["model_config"]["dataset"]), get_dataset_spec(config["dataset"])
        old_arch = get_architecture(obj["model_config"].get("arch", old.arch)).name
        new_arch = get_architecture(config.get("arch", new.arch)).name
        if old_arch != new_arch:
            raise ValueError(
                f"{file} was trained on {old.name} ({old_arch} architecture); it cannot be loaded "
                f"as a {new.name} model ({new_arch} architecture)"
            )
        model = create_model(**config)
        state = obj["state_dict"]
    else:
        model, state = _from_original(obj, overrides, file)
    _load_state(model, state, file)
    return model.to(device).eval()


def describe_checkpoint(path: str | Path, crit: str = "final") -> dict[str, Any]:
    """Which file `load_model(path, crit)` loads and how it was chosen, for reports.

    Returns {"file": its path, "crit": crit, "epoch": the epoch it was saved after (None: unknown),
    "selected_on": "val" | "test" | "final" | "unknown", "criterion": "acc" | "loss" | "final" | None,
    "val_acc", "val_loss", "test_acc", "test_loss": that epoch's metrics (%, mean cross-entropy; None when not
    stored), "note": e.g. that a run folder had no file for crit (None otherwise), "warning": set when it was
    selected on the test set (a robustness measured on that test set is then optimistic), else None}.
    Files without "selected_on" (sspnet before it, the original code) named model_acc.pt / model_loss.pt count
    as selected on the test set, as both chose them; model_final.pt as final; others as unknown.
    """
    file = resolve_checkpoint(path, crit)
    obj = safe_load(file)
    obj = obj if isinstance(obj, dict) else {}
    names = RunLayout.CHECKPOINTS
    inferred = {names["acc"]: ("test", "acc"), names["loss"]: ("test", "loss"), names["final"]: ("final", "final")}.get(
        file.name, ("unknown", None)
    )
    recorded = obj.get("format") == FORMAT and obj.get("selected_on") is not None
    selected_on, criterion = (obj["selected_on"], obj.get("criterion")) if recorded else inferred
    epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
    out = {
        "file": str(file),
        "crit": crit,
        "epoch": epoch,
        "selected_on": selected_on,
        "criterion": criterion,
        **{
            k: obj.get(k) if obj.get("format") == FORMAT else None
            for k in ("val_acc", "val_loss", "test_acc", "test_loss")
        },
        "note": None,
        "warning": None,
    }
    if Path(path).is_dir() and file.name != RunLayout.checkpoint_name(crit):
        out["note"] = f"{path} has no {RunLayout.checkpoint_name(crit)}; {file.name} was used"
    if selected_on == "test":
        what = {"acc": "best test accuracy", "loss": "best test loss"}.get(str(criterion), "the test set")
        out["warning"] = (
            f"{file.name} was selected on the test set ({what}{f' at epoch {epoch}' if epoch else ''}"
            f"{'' if recorded else ', inferred: written before sspnet recorded the selection'}): "
            "accuracy and robustness measured on that test set are optimistically biased; use "
            "model_final.pt (crit final) or a run trained with --select-on val"
        )
    return out


SELECTION_WORDS = {
    "final": "the last epoch",
    "val": "best on the validation split",
    "test": "best on the TEST set",
    "unknown": "selection unknown",
}


def checkpoint_summary(desc: dict[str, Any]) -> str:
    """One line for reports from a `describe_checkpoint` dict: 'model_final.pt (the last epoch, epoch 8)'."""
    crit = f" by {desc['criterion']}" if desc.get("criterion") not in (None, "final") else ""
    epoch = f", epoch {desc['epoch']}" if desc.get("epoch") is not None else ""
    how = SELECTION_WORDS.get(desc["selected_on"], desc["selected_on"])
    return f"{Path(desc['file']).name} ({how}{crit}{epoch})"


def _load_state(model: nn.Module, state: dict[str, Tensor], file: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape_bad = [k for k in own if k in state and own[k].numel() != state[k].numel()]
    if missing or unexpected or shape_bad:
        cfg = getattr(model, "config", {})
        hint = _guess(state)
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
        if shape_bad:
            parts.append(f"shape mismatch at {shape_bad[:3]}")
        raise ValueError(
            f"{file} does not fit a {cfg.get('dataset')} {cfg.get('scheme')} model with "
            f"{cfg.get('blocks')} blocks and norm {cfg.get('norm')}: {'; '.join(parts)}. {hint}"
        )
    model.load_state_dict({k: state[k].reshape(own[k].shape) for k in own}, strict=True)


def _guess(state: dict[str, Tensor]) -> str:
    keys = list(state)
    blocks = {int(m.group(2)) for k in keys if (m := re.match(r"(groups\.\d+|block\d+|blocks)\.(\d+)\.", k))}
    arch = _infer_arch(state) if any(k.startswith(("conv.", "downsample.", "stem.")) for k in keys) else None
    hints = []
    if blocks:
        hints.append(f"--blocks {max(blocks) + 1}")
    if any(k.endswith(".b10") for k in keys):
        hints.append("--model ark")
    if arch:
        hints.append(f"--dataset {get_architecture(arch).dataset}")
    return f"The checkpoint looks like: {' '.join(hints)}." if hints else ""


def _infer_arch(state: dict[str, Tensor]) -> str:
    keys = state.keys()
    if (
        any(k.startswith(("downsample.", "blocks.")) for k in keys)
        or any(k.startswith("groups.0") for k in keys)
        and not any(k.startswith("transitions.") for k in keys)
    ):
        return "mnist"
    if any(k.startswith(("block4.", "sub3.", "transitions.2.")) for k in keys):
        return "tinyimagenet"
    return "cifar10"


def _args_dict(args: Any) -> dict[str, Any]:
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, dict) else {}


def _map_block_key(rest: str) -> str | None:
    """Original in-block key -> own key under the block (f.<layer>.<param>, a21, b10)."""
    while rest.startswith("block."):
        rest = rest[len("block.") :]
    if rest in ("a21", "b10"):
        return rest
    m = re.fullmatch(r"(n1|conv1|n2|conv2)\.(\w+)", rest)
    if m:
        return f"f.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"(?:residual|f)\.(\d)\.(\w+)", rest)
    if m and m.group(1) in _F_INDEX:
        return f"f.{_F_INDEX[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"downsample\.(\d)\.(\w+)", rest)
    if m:
        return f"down.{m.group(1)}.{m.group(2)}"
    return None


def original_to_own_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an original state_dict to sspnet names, folding the duplicated alias entries into one."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        new = None
        if m := re.fullmatch(r"conv\.(\w+)", key):
            new = f"stem.0.{m.group(1)}"
        elif m := re.fullmatch(r"fc\.(\w+)", key):
            new = f"head.2.{m.group(1)}"
        elif m := re.fullmatch(r"downsample\.(\d+)\.(\w+)", key):
            new = f"stem.{m.group(1)}.{m.group(2)}"
        elif m := re.fullmatch(r"linear\.(\d+)\.(\w+)", key):
            new = f"head.{m.group(1)}.{m.group(2)}"
        elif m := re.fullmatch(r"block(\d+)\.(\d+)\.(.+)", key):
            sub = _map_block_key(m.group(3))
            new = f"groups.{int(m.group(1)) - 1}.{m.group(2)}.{sub}" if sub else None
        elif m := re.fullmatch(r"blocks\.(\d+)\.(.+)", key):
            sub = _map_block_key(m.group(2))
            new = f"groups.0.{m.group(1)}.{sub}" if sub else None
        elif m := re.fullmatch(r"sub(\d+)\.(.+)", key):
            sub = _map_block_key(m.group(2))
            new = f"transitions.{int(m.group(1)) - 1}.{sub}" if sub else None
        name = new or f"<unmapped>{key}"
        if name in out and new is not None:
            if not torch.equal(out[name], value):
                raise ValueError(f"original checkpoint: alias entries for {name} disagree ({key})")
            continue
        out[name] = value
    return out


def _from_original(obj: dict[str, Any], overrides: dict[str, Any], file: Path) -> tuple[nn.Module, dict]:
    args = _args_dict(obj.get("args"))
    state = original_to_own_keys(obj["state_dict"])
    unknown = [k[len("<unmapped>") :] for k in state if k.startswith("<unmapped>")]
    if unknown:
        raise ValueError(f"{file}: unrecognised keys for an original SSP-network checkpoint: {unknown[:4]}")
    dataset = overrides.pop("dataset", None) or args.get("eval") or args.get("dataset")
    inferred = _infer_arch(state)
    if dataset in (None, "tiny_imagenet"):
        dataset = get_architecture(inferred).dataset if dataset is None else "tiny"
    spec = get_dataset_spec(dataset)
    if spec.arch != inferred:
        raise ValueError(
            f"{file} holds a {inferred}-architecture network but dataset {spec.name!r} needs the "
            f"{spec.arch} architecture; use --dataset {get_architecture(inferred).dataset} (or a "
            "matching dataset)"
        )
    scheme = overrides.pop("scheme", None) or args.get("model")
    if scheme is None:
        raise ValueError(f"{file}: the checkpoint's args name no model; pass --model ({', '.join(_ORIG_SCHEMES)})")
    scheme = _ORIG_SCHEMES.get(scheme, scheme)
    blocks = overrides.pop("blocks", None) or args.get("block")
    if blocks is None:
        idx = {int(m.group(1)) for k in state if (m := re.match(r"groups\.\d+\.(\d+)\.", k))}
        blocks = max(idx) + 1 if idx else get_architecture(spec.arch).blocks
    has_bn = any(k.endswith("running_mean") for k in state)
    norm = overrides.pop("norm", None) or args.get("norm") or ("b" if has_bn else "g")
    model = create_model(scheme, dataset=spec.name, blocks=int(blocks), norm=norm, **overrides)
    own = model.state_dict()
    for k in ("normalize.mean", "normalize.std"):
        state.setdefault(k, own[k])
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    for k in own:
        if (
            k.endswith("num_batches_tracked")
            and k not in state
            and k.replace("num_batches_tracked", "running_mean") in state
        ):
            state[k] = own[k]
    return model, state
