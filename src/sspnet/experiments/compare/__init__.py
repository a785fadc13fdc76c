"""The comparison experiment, package by stage:

config.py   CompareConfig, EvalSettings, the experiment presets (defaults from `sspnet.attacks.DEFAULTS`)
plan/       context (the typed `CompareContext`), runs (`make_plan`: every variant x model x seed as a
            cached run folder with a status), estimate (the expected time from measured costs)
work/       job (`run_job`, the one unit of work: train or resume, evaluate keeping per-image bits, the
            gradient-masking audits it completes), run, evaluation, audit, perimage
executors/  one interface (submit / wait / close): local processes, submitit, Ray, --emit-jobs' commands
drive.py    submit every run to do as one job, wait, `report_finished`
analysis/   stats over seeds, significance (seed-level t, McNemar, Holm, MDD), comparisons, findings
report/     writer (REPORT.md, results.json), tables, plots
runner.py   `run_compare`: plan -> drive -> report, and the modes (dry run, --only-run, --emit-jobs, ...)

from sspnet.experiments.compare import CompareConfig, run_compare
summary = run_compare(CompareConfig(out="compare"))
"""

from sspnet.experiments.compare.config import PRESETS, CompareConfig, EvalSettings
from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.plan.runs import make_plan
from sspnet.experiments.compare.runner import run_compare
from sspnet.experiments.compare.work.perimage import unpack_results

__all__ = ["PRESETS", "CompareConfig", "CompareContext", "EvalSettings", "make_plan", "run_compare", "unpack_results"]
