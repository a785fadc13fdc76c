"""The comparison experiment: config (presets, settings) -> plan (every variant x model x seed as a cached
run) -> executor (train, then evaluate with `sspnet.eval`, per-image correctness kept by `perimage`) -> audit
(`sspnet.eval.audit` of every run, transfer from res of the same seed) -> report (descriptive `stats`; tests
against res in `comparisons` with `significance`: seed-level t, per-image McNemar, Holm, MDD; the Findings
paragraph in `findings`; `tables`; REPORT.md, results.json, plots).

    from sspnet.experiments.compare import CompareConfig, run_compare
    summary = run_compare(CompareConfig(out="compare"))
"""
from sspnet.experiments.compare.config import PRESETS, CompareConfig, EvalSettings
from sspnet.experiments.compare.perimage import unpack_results
from sspnet.experiments.compare.plan import make_plan
from sspnet.experiments.compare.runner import run_compare

__all__ = ["PRESETS", "CompareConfig", "EvalSettings", "make_plan", "run_compare", "unpack_results"]
