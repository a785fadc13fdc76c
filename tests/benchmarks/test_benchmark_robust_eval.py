"""The robust_eval benchmark case runs end to end (--quick) and records both accuracies and the ratio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_robust_eval_quick_records_accuracies_and_ratio(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # no spinning threads on a shared machine
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--case",
            "robust_eval",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    case = json.loads(out.read_text())["cases"][0]
    assert case["case"] == "robust_eval" and case["images"] == 16 and case["steps"] == 20
    for run in (case["pgd20"], case["restarts"]):
        assert run["sspnet"] > 0 and run["ratio"] == pytest.approx(run["reference"] / run["sspnet"])
        assert 0 <= run["acc_sspnet"] <= 1 and 0 <= run["acc_reference"] <= 1
        assert run["reference_is"].startswith(("torchattacks", "sspnet full PGD"))
    assert case["pgd20"]["acc_sspnet"] <= case["pgd20"]["acc_reference"]  # same start: early stop is never weaker
    assert case["restarts"]["restarts"] == 3 and isinstance(case["passed"], bool)
    assert "robust_eval" in proc.stdout and "restarts" in proc.stdout
