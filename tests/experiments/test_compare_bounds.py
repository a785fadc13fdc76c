"""compare on the 3-group network with a small-step ResNet: per-group metrics and the bounds section."""

from __future__ import annotations

import copy
import json

from tiny_compare import TINY_TRAIN, tiny_config

from sspnet.experiments.compare import run_compare
from sspnet.experiments.compare.report.bounds import violations


def test_a_three_group_compare_reports_bounds_beside_growth_per_group_and_block(tmp_path, one_thread):
    out = tmp_path / "cmp"
    cfg = tiny_config(out, {"audit": "off"}, models=["res", "res@0.5"], train={**TINY_TRAIN, "arch": "cifar10"})
    run_compare(cfg)
    report = (out / "REPORT.md").read_text()
    section = report.split("## Bounds beside the measured growth", 1)[1].split("\n## ", 1)[0]
    assert "| model | group 1 bound / measured | group 2 bound / measured | group 3 bound / measured |" in section
    small = [line for line in section.splitlines() if line.startswith("| ResNet h=0.5 (res@0.5) |")]
    assert len(small) == 1 + 3 and all("| 0.5 |" in line for line in small[1:])  # group row, then 3 blocks
    assert "measured mean ratio <= bound, as it must be" in section and "(a bug)" not in section
    assert "group 3 growth ratio (PGD)" in report or "PGR L2 group 3" in report
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["model"] for r in records} == {"res", "res@0.5"}
    rec = next(r for r in records if r["model"] == "res@0.5")
    assert [b["step_size"] for b in rec["growth"]["lipschitz"]["profile"]["blocks"]] == [0.5] * 3
    assert not violations(records)
    planted = copy.deepcopy(rec)
    bound = planted["growth"]["lipschitz"]["profile"]["blocks"][2]["block"]
    planted["growth"]["adversarial"]["blocks"]["2"][2] = 2 * bound
    assert violations([planted]) == [f"res@0.5 seed 0 block 3: measured {2 * bound:.4g} > bound {bound:.4g}"]
