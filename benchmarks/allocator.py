"""glibc allocator tuning (`sspnet.io.allocator`) on and off, side by side: the same short `sspnet train` in
subprocesses with SSPNET_MALLOC_TUNING=1 and =0, interleaved (ABBA), one thread each as `sspnet compare`.

Prints the wall, user and system seconds and the minor page faults of each, the ratio of the median wall
times, and whether both runs ended with the same weights (they must: only where memory comes from differs).

    python benchmarks/allocator.py --repeats 2             # the default's ssp2 PGD-3 training step, 40 steps
    python benchmarks/allocator.py --model res --parallel 2  # two trainings at once, as compare's two workers
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sspnet.io.runlayout import RunLayout


def _train_args(model: str, steps: int, save: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sspnet",
        "train",
        "--dataset",
        "mnist5k",
        "--model",
        model,
        "--block",
        "2",
        "--adv",
        "pgd",
        "--eps",
        "0.2",
        "--iters",
        "3",
        "--alpha",
        str(2.5 * 0.2 / 3),
        "--opt",
        "adam",
        "--lr",
        "3e-3",
        "--tbsize",
        "64",
        "--epochs",
        "1",
        "--steps-per-epoch",
        str(steps),
        "--threads",
        "1",
        "--test-limit",
        "100",
        "--quiet",
        "--save",
        str(save),
        "--force",
    ]


def _run(tuned: bool, model: str, steps: int, folder: Path, parallel: int) -> dict[str, float]:
    """`parallel` trainings at once; wall seconds, CPU seconds and minor faults summed over them."""
    env = {**os.environ, "SSPNET_MALLOC_TUNING": "1" if tuned else "0", "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(_train_args(model, steps, folder / f"{int(tuned)}-{i}"), env=env) for i in range(parallel)
    ]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a training run failed")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall": wall,
        "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime,
        "minflt": after.ru_minflt - before.ru_minflt,
    }


def _same_weights(a: Path, b: Path) -> bool:
    final = RunLayout.checkpoint_name("final")
    sa = torch.load(a / final, weights_only=True)["state_dict"]
    sb = torch.load(b / final, weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ssp2")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps of each training (default 40)")
    p.add_argument("--repeats", type=int, default=2, help="ABBA rounds (default 2)")
    p.add_argument("--parallel", type=int, default=1, help="trainings at once on each side (default 1)")
    a = p.parse_args()
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for r in range(a.repeats):
            for tuned in (True, False) if r % 2 == 0 else (False, True):
                rows[tuned].append(_run(tuned, a.model, a.steps, folder, a.parallel))
        same = _same_weights(folder / "1-0", folder / "0-0")
    print(
        f"{a.model}, PGD-3 training, {a.steps} steps of batch 64, {a.parallel} at once, one thread each; "
        f"median of {a.repeats}"
    )
    for tuned in (False, True):
        med = {k: statistics.median(x[k] for x in rows[tuned]) for k in rows[tuned][0]}
        print(
            f"  tuning {'on ' if tuned else 'off'}: wall {med['wall']:.2f} s, user {med['user']:.2f} s, "
            f"sys {med['sys']:.2f} s, minor faults {med['minflt']:.0f}"
        )
    ratio = statistics.median(x["wall"] for x in rows[False]) / statistics.median(x["wall"] for x in rows[True])
    print(f"  wall time off / on: {ratio:.2f}x; same final weights: {same}")


if __name__ == "__main__":
    main()
