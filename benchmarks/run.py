"""sspnet benchmarks: every figure side by side with the seed-style reference (benchmarks/reference.py).

    python benchmarks/run.py [--quick] [--case NAME ...] [--out FILE] [--device cpu|cuda] [--repeats R]

Prints a table and writes a JSON record (cases + machine). Timing: one warm-up call of each contender, then
R rounds with the contenders interleaved (order alternating each round, ABBA), medians reported; the ratio is
median(reference) / median(sspnet), so both sides see the same machine load. sspnet runs its own code paths
(create_model, sspnet.attacks, sspnet.optim, sspnet.data.Batches) with the layout sspnet.train would pick
(`--channels-last auto`: sspnet.models.preferred_memory_format, as sspnet.train; `on`/`off` force it).
Memory (CPU): each variant runs in a fresh subprocess (glibc MALLOC_MMAP_THRESHOLD_=65536, see MALLOC_ENV); the
figure is the peak resident set size of one training step (VmHWM, reset just before the step) minus the resident
set size just before it (model, optimizer and batch already built), i.e. the step's peak extra memory.
CUDA: max_memory_allocated over the step minus allocated before.
Also reported: ratio of the minimum times and ratio of process CPU times. On a shared CPU machine run with
OMP_WAIT_POLICY=PASSIVE (recorded in the JSON): spinning OpenMP threads make contended timings swing up to 10x.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import reference as R  # noqa: E402

import sspnet  # noqa: E402
from sspnet.nn.models import preferred_memory_format  # noqa: E402

CASES = (
    "pgd7_train",
    "std_train",
    "ark_train",
    "pgd20_eval",
    "robust_eval",
    "data_epoch",
    "gflops",
    "memory",
    "layout",
    "pgd7_epoch",
)
DEFAULT_SKIP_CPU = ("pgd7_epoch",)  # about half an hour on a 2-core CPU: run it there with --case pgd7_epoch
TARGETS = {
    "pgd7_train": 1.6,
    "std_train": 1.15,
    "ark_train": 1.4,
    "pgd20_eval": 1.5,
    "robust_eval": 1.5,
    "data_epoch": 10.0,
    "gflops": 0.6,
    "memory": 0.40,
}
EPS, ALPHA = 8 / 255, 2 / 255


class Ctx:
    def __init__(self, args: argparse.Namespace):
        self.quick, self.device = args.quick, torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.repeats = args.repeats or (2 if args.quick else 5)
        self.batch = 8 if args.quick else 128
        self.eval_batch = 8 if args.quick else 100
        self.blocks = 1 if args.quick else 6
        self.n_images = 1024 if args.quick else 50000
        self.layout = args.channels_last
        self.fmt = torch.contiguous_format  # set by `models` from the sspnet model (auto) or the flag
        self.amp = self.cuda and not args.no_amp
        self.compile = args.compile
        self.gen = torch.Generator().manual_seed(0)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def batch_xy(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=self.gen).float().div_(255)
        y = torch.randint(0, 10, (n,), generator=self.gen)
        return x.to(self.device), y.to(self.device)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()


Times = dict[str, list[float]]


def interleaved(ctx: Ctx, fns: dict[str, Callable[[], Any]], repeats: int) -> tuple[Times, Times]:
    """(wall seconds, process CPU seconds) per call of each contender: warm-up, then `repeats` rounds, order
    reversed every other round."""
    for f in fns.values():
        f()
    ctx.sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            ctx.sync()
            c, t = time.process_time(), time.perf_counter()
            fns[k]()
            ctx.sync()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return times, cpu


def timed_result(name: str, times: Times, cpu: Times, unit: str = "s", **extra: Any) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["reference"] / med["sspnet"]
    out = {
        "case": name,
        "unit": unit,
        "sspnet": med["sspnet"],
        "reference": med["reference"],
        "ratio": ratio,
        "target": TARGETS[name],
        "target_on": "ratio",
        "passed": ratio >= TARGETS[name],
        "ratio_of_min": min(times["reference"]) / min(times["sspnet"]),
        "ratio_cpu_time": statistics.median(cpu["reference"]) / statistics.median(cpu["sspnet"]),
        "times": {k: [round(t, 5) for t in v] for k, v in times.items()},
        "cpu_times": {k: [round(t, 5) for t in v] for k, v in cpu.items()},
        **extra,
    }
    return out


# ---- models ------------------------------------------------------------------------------------------------


def models(ctx: Ctx, scheme: str, blocks: int, **kw: Any):
    """(sspnet model, reference model) with the same weights (reference -> sspnet via the original importer)."""
    torch.manual_seed(0)
    ref = R.RefCifarNet(scheme, blocks=blocks)
    own = sspnet.create_model("midrk2-orig" if scheme == "midrk2" else scheme, dataset="cifar10", blocks=blocks, **kw)
    from sspnet.nn.checkpoints import original_to_own_keys

    state = original_to_own_keys(ref.state_dict())
    own_state = own.state_dict()
    state.update({k: own_state[k] for k in ("normalize.mean", "normalize.std")})
    own.load_state_dict({k: state[k].reshape(own_state[k].shape) for k in own_state})
    own = own.to(ctx.device)
    if ctx.layout == "auto":
        ctx.fmt = preferred_memory_format(own, ctx.device)
    else:
        ctx.fmt = torch.channels_last if ctx.layout == "on" else torch.contiguous_format
    return own.to(memory_format=ctx.fmt), ref.to(ctx.device)


def compiled(ctx: Ctx, model):
    return torch.compile(model) if ctx.compile else model


def sspnet_step(ctx: Ctx, model, opt, attack=None):
    """One step of sspnet.train's `_train_step` with its defaults (attack in `keep` mode without the optional
    clean-metrics forward, SGD, loss/accuracy sums kept on the device)."""
    net = compiled(ctx, model)

    def step(x, y):
        x = x.contiguous(memory_format=ctx.fmt)
        if attack is not None:
            with ctx.autocast():
                x = attack(x, y).detach()
        with ctx.autocast():
            logits = net(x).float()
        loss_sum = F.cross_entropy(logits, y, reduction="sum")
        opt.zero_grad(set_to_none=True)
        (loss_sum / y.shape[0]).backward()
        opt.step()
        with torch.no_grad():
            _ = (loss_sum.detach(), (logits.argmax(1) == y).sum())

    return step


def train_case(ctx: Ctx, name: str, scheme: str, iters: int) -> dict[str, Any]:
    from sspnet.attacks import PGD
    from sspnet.train.optim import build_optimizer

    own, ref = models(ctx, scheme, ctx.blocks)
    own.train()
    opt_own = build_optimizer(own.parameters(), "sgd", 0.1, 5e-4, "cifar10")
    opt_ref = R.make_optimizer(ref)
    attack = PGD(own, EPS, ALPHA, iters, random_start=True, mode="keep") if iters else None
    step = sspnet_step(ctx, own, opt_own, attack)
    x, y = ctx.batch_xy(ctx.batch)
    xn = R.normalize(x)
    times, cpu = interleaved(
        ctx,
        {"reference": lambda: R.train_step(ref, opt_ref, xn, y, adv_iters=iters), "sspnet": lambda: step(x, y)},
        ctx.repeats,
    )
    return timed_result(
        name,
        times,
        cpu,
        scheme=scheme,
        blocks=ctx.blocks,
        batch=ctx.batch,
        pgd_iters=iters,
        sspnet_channels_last=ctx.fmt == torch.channels_last,
    )


def case_pgd7_train(ctx: Ctx) -> dict[str, Any]:
    return train_case(ctx, "pgd7_train", "ssp2", 7)


def case_std_train(ctx: Ctx) -> dict[str, Any]:
    return train_case(ctx, "std_train", "ssp2", 0)


def case_ark_train(ctx: Ctx) -> dict[str, Any]:
    return train_case(ctx, "ark_train", "ark", 0)


def _torchattacks_pgd(model, eps=EPS, alpha=ALPHA, steps=20, random_start=False):
    """torchattacks' PGD if importable (it may pull a broken torchvision): (callable, None) or (None, reason)."""
    try:
        import torchattacks  # noqa: F401
    except Exception as exc:  # any import failure (missing, or a broken torchvision) skips the column
        return None, f"torchattacks not usable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    return atk, None


def case_pgd20_eval(ctx: Ctx) -> dict[str, Any]:
    from sspnet.attacks import PGD
    from sspnet.nn.models import inference_copy

    own, ref = models(ctx, "ssp2", ctx.blocks)
    own.eval()
    ref.eval()
    net = compiled(ctx, inference_copy(own))  # what sspnet.evaluate attacks: BatchNorms folded into the convs
    attack = PGD(net, EPS, ALPHA, 20, random_start=False, quantize=True)
    x, y = ctx.batch_xy(ctx.eval_batch)
    xn = R.normalize(x)

    def run_own():
        with ctx.autocast():
            attack(x.contiguous(memory_format=ctx.fmt), y)

    fns = {"reference": lambda: R.pgd(ref, xn, y, EPS, ALPHA, 20, random_start=False), "sspnet": run_own}
    ta, why = _torchattacks_pgd(own)
    if ta is not None:
        fns["torchattacks"] = lambda: ta(x.contiguous(memory_format=ctx.fmt), y)
    times, cpu = interleaved(ctx, fns, ctx.repeats)
    out = timed_result(
        "pgd20_eval",
        times,
        cpu,
        blocks=ctx.blocks,
        batch=ctx.eval_batch,
        sspnet_channels_last=ctx.fmt == torch.channels_last,
    )
    if ta is not None:
        med = statistics.median(times["torchattacks"])
        out["torchattacks"] = med
        out["torchattacks_version"] = getattr(sys.modules.get("torchattacks"), "__version__", None)
        out["ratio_vs_torchattacks"] = med / out["sspnet"]
        out["passed"] = out["passed"] and out["ratio_vs_torchattacks"] >= 1.0
    else:
        out["torchattacks"] = None
        out["torchattacks_skipped"] = why
    return out


def case_robust_eval(ctx: Ctx) -> dict[str, Any]:
    """PGD-20 robust accuracy and time of a trained mnist5k model: sspnet's early-stopping evaluation against
    torchattacks' PGD (sspnet's full PGD without torchattacks), also with restarts (benchmarks/robust_eval.py)."""
    import robust_eval

    return robust_eval.case(ctx, interleaved, _torchattacks_pgd, TARGETS["robust_eval"])


def case_pgd7_epoch(ctx: Ctx) -> dict[str, Any]:
    """No reference: wall time of one PGD-7 adversarial training epoch of CIFAR-10 ssp2 N = 6 on synthetic data of
    the real size (50,000 uint8 images on the device, batch 128, crop + flip), sspnet's step as in `pgd7_train`."""
    from sspnet.attacks import PGD
    from sspnet.data import Batches
    from sspnet.train.optim import build_optimizer

    n = 128 if ctx.quick else ctx.n_images
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g).to(ctx.device)
    labels = torch.randint(0, 10, (n,), generator=g).to(ctx.device)
    batches = Batches(images, labels, ctx.batch, shuffle=True, seed=0, crop_pad=4, flip=True)
    own, _ = models(ctx, "ssp2", ctx.blocks)
    own.train()
    opt = build_optimizer(own.parameters(), "sgd", 0.1, 5e-4, "cifar10")
    step = sspnet_step(ctx, own, opt, PGD(own, EPS, ALPHA, 7, random_start=True, mode="keep"))
    warm = next(iter(batches.iterate(0)))
    step(*warm)  # warm-up (and compilation with --compile) outside the timed epoch
    ctx.sync()
    t = time.perf_counter()
    for x, y in batches.iterate(1):
        step(x, y)
    ctx.sync()
    seconds = time.perf_counter() - t
    return {
        "case": "pgd7_epoch",
        "unit": "s per epoch",
        "sspnet": seconds,
        "reference": None,
        "ratio": None,
        "target": None,
        "target_on": "info",
        "passed": None,
        "images": n,
        "images_per_s": n / seconds,
        "batch": ctx.batch,
        "blocks": ctx.blocks,
        "channels_last": ctx.fmt == torch.channels_last,
        "amp": ctx.amp,
        "compile": ctx.compile,
    }


def case_data_epoch(ctx: Ctx) -> dict[str, Any]:
    from sspnet.data import Batches

    n = ctx.n_images
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    batches = Batches(images.to(ctx.device), labels.to(ctx.device), 128, shuffle=True, seed=0, crop_pad=4, flip=True)
    ds = R.PerImageDataset(images.permute(0, 2, 3, 1).contiguous().numpy(), labels.numpy(), pad=4, flip=True)
    epoch = [0]

    def own():
        epoch[0] += 1
        for _ in batches.iterate(epoch[0]):
            pass
        ctx.sync()

    def ref():
        for _ in R.per_image_loader(ds, 128):
            pass

    times, cpu = interleaved(ctx, {"reference": ref, "sspnet": own}, max(2, ctx.repeats // 2 + 1))
    return timed_result("data_epoch", times, cpu, images=n, batch=128, crop_pad=4, flip=True)


def gemm_peak(ctx: Ctx, repeats: int) -> dict[str, float]:
    """GFLOP/s of fp32 GEMMs: torch.mm (BLAS) and a 1x1 convolution (oneDNN on CPU); median of repeats each."""
    n = 1024 if ctx.quick else 2048
    a = torch.randn(n, n, device=ctx.device)
    b = torch.randn(n, n, device=ctx.device)
    c, hw = (256, 32) if ctx.quick else (1024, 64)
    xi = torch.randn(1, c, hw, hw, device=ctx.device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 1, 1, device=ctx.device).contiguous(memory_format=torch.channels_last)

    def conv():
        with torch.no_grad():
            F.conv2d(xi, w)

    times, _ = interleaved(ctx, {"mm": lambda: a @ b, "conv1x1": conv}, repeats)
    return {
        "mm": 2 * n**3 / statistics.median(times["mm"]) / 1e9,
        "conv1x1": 2 * hw * hw * c * c / statistics.median(times["conv1x1"]) / 1e9,
    }


def case_gflops(ctx: Ctx) -> dict[str, Any]:
    """Achieved GFLOP/s of the standard training step (FlopCounterMode) over the best fp32 GEMM of this run."""
    from torch.utils.flop_counter import FlopCounterMode

    from sspnet.train.optim import build_optimizer

    own, ref = models(ctx, "ssp2", ctx.blocks)
    own.train()
    step = sspnet_step(ctx, own, build_optimizer(own.parameters(), "sgd", 0.1, 5e-4, "cifar10"))
    opt_ref = R.make_optimizer(ref)
    x, y = ctx.batch_xy(ctx.batch)
    xn = R.normalize(x)
    with FlopCounterMode(display=False) as fc:
        step(x, y)
    flops_own = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        R.train_step(ref, opt_ref, xn, y)
    flops_ref = fc.get_total_flops()
    peaks = gemm_peak(ctx, ctx.repeats)
    times, _ = interleaved(
        ctx, {"reference": lambda: R.train_step(ref, opt_ref, xn, y), "sspnet": lambda: step(x, y)}, ctx.repeats
    )
    peaks2 = gemm_peak(ctx, ctx.repeats)
    peak = max(max(peaks.values()), max(peaks2.values()))
    t_own, t_ref = statistics.median(times["sspnet"]), statistics.median(times["reference"])
    g_own, g_ref = flops_own / t_own / 1e9, flops_ref / t_ref / 1e9
    frac = g_own / peak
    return {
        "case": "gflops",
        "unit": "fraction of GEMM peak",
        "sspnet": frac,
        "reference": g_ref / peak,
        "ratio": g_own / g_ref,
        "target": TARGETS["gflops"],
        "target_on": "sspnet",
        "passed": frac >= TARGETS["gflops"],
        "gflop_per_step": flops_own / 1e9,
        "gflops_sspnet": g_own,
        "gflops_reference": g_ref,
        "gemm_peak_gflops": peak,
        "gemm_before": peaks,
        "gemm_after": peaks2,
        "times": {k: [round(t, 5) for t in v] for k, v in times.items()},
    }


def case_layout(ctx: Ctx) -> dict[str, Any]:
    """No target: the evidence behind `preferred_memory_format`. One standard sspnet training step in NCHW
    against channels_last, for a BatchNorm CIFAR-10 model and GroupNorm / BatchNorm MNIST models."""
    from sspnet.train.optim import build_optimizer

    variants = {
        "cifar10-b": ("cifar10", "b", (3, 32, 32)),
        "mnist-g": ("mnist", "g", (1, 28, 28)),
        "mnist-b": ("mnist", "b", (1, 28, 28)),
    }
    rows = {}
    for key, (dataset, norm, shape) in variants.items():
        fns = {}
        for fmt_name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            torch.manual_seed(0)
            model = sspnet.create_model("ssp2", dataset=dataset, norm=norm, blocks=ctx.blocks).to(ctx.device)
            model = model.to(memory_format=fmt).train()
            opt = build_optimizer(model.parameters(), "sgd", 0.1, 5e-4, dataset)
            x = torch.rand(ctx.batch, *shape, generator=ctx.gen).to(ctx.device).contiguous(memory_format=fmt)
            y = torch.randint(0, 10, (ctx.batch,), generator=ctx.gen).to(ctx.device)

            def step(model=model, opt=opt, x=x, y=y):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()

            fns[fmt_name] = step
        times, _ = interleaved(ctx, fns, ctx.repeats)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows[key] = {
            "nchw_s": med["nchw"],
            "channels_last_s": med["channels_last"],
            "speedup": med["nchw"] / med["channels_last"],
            "preferred": str(preferred_memory_format(model, ctx.device)).replace("torch.", ""),
        }
    main = rows["cifar10-b"]
    return {
        "case": "layout",
        "unit": "s (standard step, ssp2)",
        "sspnet": main["channels_last_s"],
        "reference": main["nchw_s"],
        "ratio": main["speedup"],
        "target": None,
        "target_on": "info",
        "passed": None,
        "note": "sspnet = channels_last, reference = NCHW, both sspnet's own model",
        "variants": rows,
        "blocks": ctx.blocks,
        "batch": ctx.batch,
    }


# ---- memory ------------------------------------------------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> None:
    """Reset this process's resident-set high-water mark (Linux >= 4.0); harmless where unsupported."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mib() -> float:
    """VmHWM of this process's own address space. Not ru_maxrss: a child started by vfork/posix_spawn (as
    subprocess does) inherits its parent's peak RSS in ru_maxrss at exec, which swamped these figures."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_child(variant: str, blocks: int, batch: int, device: str) -> dict[str, float]:
    """One ssp3 training step in this (fresh) process; the step's peak memory above what was resident before."""
    from sspnet.train.optim import build_optimizer

    dev = torch.device(device)
    torch.manual_seed(0)
    model = (
        sspnet.create_model(
            "ssp3", dataset="cifar10", blocks=blocks, activation_checkpointing=(variant == "checkpoint")
        )
        .to(dev)
        .train()
    )
    opt = build_optimizer(model.parameters(), "sgd", 0.1, 5e-4, "cifar10")
    x = torch.rand(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_peak_rss()
        base = _rss_mib()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _peak_rss_mib()
    return {"base_mib": base, "peak_mib": peak, "delta_mib": peak - base}


# glibc's dynamic mmap threshold otherwise grows to 32 MiB after the first large free, and freed activations stay
# in its heaps: the resident set then reflects allocator caching (it varied 810-1545 MiB between identical
# checkpointed runs) rather than the memory the step needs. A fixed threshold makes every tensor of >= 64 KiB its
# own mapping, returned on free, so ru_maxrss tracks live tensor memory (identical across runs).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def case_memory(ctx: Ctx) -> dict[str, Any]:
    blocks, batch = (1, 8) if ctx.quick else (10, 128)
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "checkpoint": []}
    env = dict(os.environ, **MALLOC_ENV)
    for _ in range(1 if ctx.quick else 2):
        for variant in runs:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--memory-child",
                variant,
                "--mem-blocks",
                str(blocks),
                "--mem-batch",
                str(batch),
                "--device",
                str(ctx.device),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if out.returncode != 0:
                raise RuntimeError(f"memory child {variant} failed: {out.stderr[-2000:]}")
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    plain = min(r["delta_mib"] for r in runs["plain"])
    ckpt = min(r["delta_mib"] for r in runs["checkpoint"])
    saving = 1 - ckpt / plain
    return {
        "case": "memory",
        "unit": "MiB (step peak above resident)",
        "sspnet": ckpt,
        "reference": plain,
        "ratio": saving,
        "target": TARGETS["memory"],
        "target_on": "saving",
        "passed": saving >= TARGETS["memory"],
        "method": "fresh subprocess per variant; peak RSS (VmHWM, reset before the step) minus RSS before it "
        f"(CPU, glibc with {MALLOC_ENV} so freed tensors leave the resident set at once), cuda "
        "max_memory_allocated minus allocated before (CUDA); min over runs",
        "note": "sspnet = ssp3 with activation checkpointing, reference = the same model without",
        "blocks": blocks,
        "batch": batch,
        "runs": runs,
    }


# ---- driver ------------------------------------------------------------------------------------------------


def machine(ctx: Ctx) -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "sspnet_version": sspnet.__version__,
        "python": platform.python_version(),
        "device": str(ctx.device),
        "platform": f"{platform.system()} {platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_start": os.getloadavg(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "layout": ctx.layout,
        "amp": ctx.amp,
        "compile": ctx.compile,
    }
    if ctx.cuda:
        info["gpu"] = torch.cuda.get_device_name(ctx.device)
    return info


def fmt_row(r: dict[str, Any]) -> str:
    def f(v):
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    on = {"ratio": "ratio", "sspnet": "sspnet", "saving": "saving", "info": "info"}[r["target_on"]]
    extra = ""
    if r["case"] == "layout":
        extra = "  NCHW/channels_last: " + ", ".join(f"{k} {v['speedup']:.2f}x" for k, v in r["variants"].items())
    if r["case"] == "pgd7_epoch":
        extra = f"  {r['images_per_s']:.0f} images/s"
    if r["case"] == "robust_eval":
        m = r["restarts"]
        extra = (
            f"  acc {r['pgd20']['acc_sspnet']:.1%} vs {r['pgd20']['acc_reference']:.1%} "
            f"({r['pgd20']['reference_is']}); {m['restarts']} restarts {m['ratio']:.2f}x, acc "
            f"{m['acc_sspnet']:.1%} vs {m['acc_reference']:.1%}"
        )
    if r.get("torchattacks") is not None:
        extra = f"  vs torchattacks {r['ratio_vs_torchattacks']:.3f}x"
    elif "torchattacks_skipped" in r:
        extra = "  (torchattacks column skipped)"
    return (
        f"{r['case']:<11} {f(r['sspnet']):>10} {f(r['reference']):>10} {f(r['ratio']):>8} "
        f"{f(r.get('ratio_of_min')):>8} {f(r.get('ratio_cpu_time')):>8} "
        f"{(on + ' >= ' + f(r['target'])) if r['target'] is not None else '(no target)':>16} "
        f"{'-' if r['passed'] is None else 'PASS' if r['passed'] else 'FAIL':>5}  {r['unit']}{extra}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 repeats (smoke test)")
    p.add_argument("--case", nargs="+", default=None, help=f"cases to run (default all): {', '.join(CASES)}")
    p.add_argument("--out", default=str(HERE / "results.json"), help="JSON record path")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default 5, quick 2)")
    p.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="sspnet's layout: auto = as sspnet.train (sspnet.models.preferred_memory_format)",
    )
    p.add_argument("--no-amp", action="store_true", help="CUDA: keep sspnet in fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile sspnet's model")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--memory-child", choices=("plain", "checkpoint"), help=argparse.SUPPRESS)
    p.add_argument("--mem-blocks", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--mem-batch", type=int, default=128, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.mem_blocks, args.mem_batch, args.device)))
        return 0
    cases = args.case or [c for c in CASES if not (c in DEFAULT_SKIP_CPU and args.device == "cpu" and not args.quick)]
    bad = [c for c in cases if c not in CASES]
    if bad:
        p.error(f"unknown case(s) {', '.join(bad)}; valid cases: {', '.join(CASES)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False; run on a GPU machine or use --device cpu")
    ctx = Ctx(args)
    record = {
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(ctx),
        "quick": ctx.quick,
        "repeats": ctx.repeats,
        "cases": [],
    }
    print(
        f"{'case':<11} {'sspnet':>10} {'reference':>10} {'ratio':>8} {'min-rat':>8} {'cpu-rat':>8} "
        f"{'target':>16} {'':>5}  unit"
    )
    for name in cases:
        res = globals()[f"case_{name}"](ctx)
        record["cases"].append(res)
        print(fmt_row(res), flush=True)
    record["machine"]["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from sspnet.io.files import atomic_write_json

    atomic_write_json(out, record)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
