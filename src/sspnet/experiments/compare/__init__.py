"""The comparison experiment: config (presets, settings) -> plan (`make_plan`: the typed `CompareContext` and
every variant x model x seed as a cached run) -> drive (each run to do is one job, `jobs.run_job`: train,
evaluate with `sspnet.eval` keeping per-image correctness (`perimage`), and the `audit`s it completes, with the
transfer source the res run of the same seed; the jobs run on an executor of `executors`: local processes,
submitit, Ray, or --emit-jobs' commands) -> report (`drive.report_finished`: descriptive `stats`; tests against
res in `comparisons` with `significance`: seed-level t, per-image McNemar, Holm, MDD; the Findings paragraph in
`findings`; `tables`; REPORT.md, results.json, plots).

    from sspnet.experiments.compare import CompareConfig, run_compare
    summary = run_compare(CompareConfig(out="compare"))
"""
from sspnet.experiments.compare.config import PRESETS, CompareConfig, EvalSettings
from sspnet.experiments.compare.context import CompareContext
from sspnet.experiments.compare.perimage import unpack_results
from sspnet.experiments.compare.plan import make_plan
from sspnet.experiments.compare.runner import run_compare

__all__ = ["PRESETS", "CompareConfig", "CompareContext", "EvalSettings", "make_plan", "run_compare", "unpack_results"]
