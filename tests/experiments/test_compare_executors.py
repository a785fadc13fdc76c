"""sspnet compare --executor submitit | ray, --emit-jobs, --only-run and --report-only: the same numbers as the
local executor, only unfinished runs submitted again, partial reports, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from tiny_compare import TINY_TRAIN
from tiny_compare import tiny_config as _tiny_config

import sspnet.train
from sspnet.experiments.compare import CompareConfig, make_plan, run_compare
from sspnet.experiments.compare.config import ClusterSettings

AUDIT = {"audit_images": 6, "audit_queries": 20}  # the jobs audit too
# the same plan on the command line
TINY_ARGS = [
    "--models",
    "res,ssp2",
    "--seeds",
    "1",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--tbsize",
    "32",
    "--blocks",
    "1",
    "--n-images",
    "12",
    "--sweep-images",
    "6",
    "--growth-images",
    "6",
    "--pgd-steps",
    "1",
    "--audit-images",
    "6",
    "--audit-queries",
    "20",
    "--device",
    "cpu",
    "--quiet",
]
LOCAL = ClusterSettings(submitit_cluster="local")

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(out, **kw) -> CompareConfig:
    return _tiny_config(out, AUDIT, **kw)


def numbers(summary: dict) -> str:
    """Every number of results.json that does not measure time, as JSON (NaN equal to NaN): per run the
    evaluation, per-image bits, growth and audit accuracies; the comparisons."""
    out = []
    for r in summary["records"]:
        ev = {k: v for k, v in r["eval"].items() if k != "seconds"}
        audit = (r.get("audit") or {}).get("accuracy")
        out.append([r["model"], r["seed"], ev, r["correct"], r["growth"]["adversarial"], audit, r["epochs"]])
    return json.dumps({"runs": out, "comparisons": summary["comparisons"]["rows"]}, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def local_numbers(tmp_path_factory):
    """The tiny plan with the local executor (in this process), once for the module."""
    import torch

    n = torch.get_num_threads()
    try:
        return numbers(run_compare(tiny_config(tmp_path_factory.mktemp("local") / "cmp")))
    finally:
        torch.set_num_threads(n)


def test_submitit_local_jobs_give_the_local_numbers(tmp_path, local_numbers, capsys):
    pytest.importorskip("submitit")
    out = tmp_path / "cmp"
    summary = run_compare(tiny_config(out, executor="submitit", cluster=LOCAL, quiet=False))
    assert numbers(summary) == local_numbers
    assert summary["missing"] == [] and summary["failed"] == [] and len(summary["submitted"]) == 2
    text = capsys.readouterr().out
    assert "submitted 2 run(s) as local job(s)" in text and "[2/2] " in text
    assert all(r.get("audit") for r in summary["records"])  # each job audited what it completed
    assert list((out / "jobs").glob("*_0_log.out"))  # submitit's logs
    assert not list(out.glob("runs/*/.compare-job"))  # the job locks are gone


def test_ray_tasks_give_the_local_numbers(tmp_path, local_numbers, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray
    summary = run_compare(tiny_config(tmp_path / "cmp", executor="ray"))
    assert numbers(summary) == local_numbers
    assert summary["missing"] == [] and len(summary["submitted"]) == 2


def test_emit_jobs_then_report_only_reproduce_a_normal_run(tmp_path, local_numbers, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, file = tmp_path / "cmp", tmp_path / "jobs.txt"
    emitted = run_compare(tiny_config(out, emit_jobs=str(file)))
    lines = file.read_text().splitlines()
    assert len(lines) == 2 and lines == emitted["commands"] and not (out / "runs").exists()
    plan, _ = make_plan(tiny_config(out))
    for line, run in zip(lines, plan):
        assert line.endswith(f"--only-run {run.run_dir.name}") and str(out) in line and sys.executable in line
    for line in reversed(lines):  # any order: the second finisher audits
        subprocess.run(line, shell=True, check=True, cwd="/", capture_output=True)
    assert numbers(run_compare(tiny_config(out, report_only=True))) == local_numbers
    assert run_compare(tiny_config(out, emit_jobs=str(file)))["commands"] == [] and file.read_text() == ""


def _interrupted_plan(out):
    """res finished (with its audit), ssp2 trained 1 of its 2 epochs: a job that died mid-run."""
    from sspnet.experiments.compare.work.job import run_job

    cfg = tiny_config(out, train={**TINY_TRAIN, "epochs": 2})
    plan, ctx = make_plan(cfg)
    run_job(ctx, plan[0].run_dir.name)
    first = plan[1].train_config
    first.epochs, first.force = 1, True
    sspnet.train.train(first)
    plan, _ = make_plan(cfg)
    assert [r.status for r in plan] == ["cached", "resume"]
    return cfg, plan


def test_rerun_submits_only_the_unfinished_run_and_not_one_in_progress(tmp_path):
    pytest.importorskip("submitit")
    from sspnet.io.lock import FolderLock

    cfg, plan = _interrupted_plan(tmp_path / "cmp")
    cfg.executor, cfg.cluster = "submitit", LOCAL
    # another job works on ssp2 (its lock): not submitted; the driver waits for it, then reports res alone
    lock = FolderLock(plan[1].run_dir / ".compare-job", "test").acquire()
    threading.Timer(1.0, lock.release).start()
    partial = run_compare(cfg)
    assert partial["submitted"] == [] and [m["status"] for m in partial["missing"]] == ["resume"]
    assert [r["model"] for r in partial["records"]] == ["res"]
    report = (tmp_path / "cmp" / "REPORT.md").read_text()
    assert "## Missing runs" in report and "Incomplete: 1 of 2 planned runs" in report
    assert f"`{plan[1].run_dir.name}`" in report and "| res |" in report
    # the re-run submits ssp2 alone, which resumes from last.pt
    summary = run_compare(cfg)
    assert summary["submitted"] == [plan[1].run_dir.name] and summary["missing"] == []
    lines = (plan[1].run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]
    assert all(r.get("audit") for r in summary["records"])  # ssp2's audit (source res) done by its job
    assert "Missing runs" not in (tmp_path / "cmp" / "REPORT.md").read_text()


def test_a_second_job_on_a_run_does_nothing(tmp_path, monkeypatch):
    from sspnet.experiments.compare.work.job import busy, run_job
    from sspnet.io.lock import FolderLock

    def no_training(cfg):
        raise AssertionError(f"training was called for {cfg.save}")

    monkeypatch.setattr(sspnet.train, "train", no_training)
    cfg = tiny_config(tmp_path / "cmp")
    (run, *_), ctx = make_plan(cfg)
    assert busy(run.run_dir) is None
    with FolderLock(run.run_dir / ".compare-job", "sspnet compare job X"):
        assert "sspnet compare job X (PID" in busy(run.run_dir)
        assert run_job(ctx, run.run_dir.name)["state"] == "busy"
    assert busy(run.run_dir) is None
    with pytest.raises(ValueError, match="no such run in the plan"):
        run_job(ctx, "res-s0-00000000")


@pytest.mark.parametrize("executor, extra", [("submitit", "slurm"), ("ray", "ray")])
def test_a_missing_extra_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, executor, extra):
    from sspnet.cli import main

    monkeypatch.setitem(sys.modules, executor, None)  # import fails
    assert main(["compare", *TINY_ARGS, "--executor", executor, "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sspnet compare: error: --executor {executor} needs {executor}: pip install 'sspnet[{extra}]'"
    assert not (tmp_path / "cmp").exists()


def test_report_only_without_finished_runs_is_one_line_and_exit_2(tmp_path, capsys):
    from sspnet.cli import main

    assert main(["compare", *TINY_ARGS, "--report-only", "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no finished run" in err and "nothing to report" in err
    assert main(["compare", *TINY_ARGS, "--report-only", "--dry-run", "--out", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_cluster_options_reach_submitit(tmp_path):
    submitit = pytest.importorskip("submitit")
    from sspnet.cli import build_parser
    from sspnet.cli.compare import build_config
    from sspnet.experiments.compare.executors.submitit import slurm_parameters

    args = build_parser().parse_args(
        [
            "compare",
            "--executor",
            "submitit",
            "--gpus-per-run",
            "1",
            "--partition",
            "gpu",
            "--timeout-min",
            "30",
            "--slurm-option",
            "account=proj",
            "--slurm-option",
            "mem=16G",
            "--slurm-option",
            "licenses=scratch",
            "--array-parallelism",
            "4",
            "--cpus-per-run",
            "8",
        ]
    )
    cfg = build_config(args)
    assert cfg.executor == "submitit" and cfg.cluster.slurm_options == {
        "account": "proj",
        "mem": "16G",
        "licenses": "scratch",
    }
    params = slurm_parameters(cfg.cluster, 8)
    assert params == {
        "name": "sspnet-compare",
        "timeout_min": 30,
        "gpus_per_node": 1,
        "cpus_per_task": 8,
        "slurm_partition": "gpu",
        "slurm_array_parallelism": 4,
        "slurm_account": "proj",
        "slurm_mem": "16G",
        "slurm_additional_parameters": {"licenses": "scratch"},
    }
    submitit.AutoExecutor(folder=tmp_path, cluster="local").update_parameters(**params)  # names submitit knows
    with pytest.raises(ValueError, match="KEY=VALUE"):
        build_config(build_parser().parse_args(["compare", "--slurm-option", "mem"]))


def test_the_context_is_typed_picklable_and_keeps_the_settings_block(tmp_path):
    import pickle

    from sspnet.experiments.compare.plan.context import SUMMARY_FIELDS, CompareContext

    plan, ctx = make_plan(tiny_config(tmp_path / "cmp"))
    assert pickle.loads(pickle.dumps(ctx)) == ctx and pickle.loads(pickle.dumps(plan))[1].run_dir == plan[1].run_dir
    summary = ctx.summary()
    assert (
        tuple(summary) == SUMMARY_FIELDS and summary["eval"] == ctx.eval.key() and summary["models"] == ["res", "ssp2"]
    )
    assert CompareContext.from_settings(dict(summary, eval=ctx.eval)) == ctx.replace(
        device="auto", data_root=None, threads=None, quiet=False
    )
    # torch threads of a run: --threads, else 1 on a CPU or in a worker process, else torch's own
    assert [
        ctx.replace(device=d, threads=t).run_threads(p)
        for d, t, p in [("cpu", None, False), ("cuda:0", None, False), ("cuda:0", None, True), ("cuda:0", 3, False)]
    ] == [1, None, 1, 3]
    with pytest.raises(ValueError, match=r"^--threads must be an integer >= 1, got 0$"):
        make_plan(tiny_config(tmp_path / "cmp", threads=0))


def test_the_driver_reports_failed_and_busy_jobs_of_any_executor(tmp_path, capsys):
    """drive.execute over a stand-in executor: a failed job is listed, a busy one is waited for (its lock), and
    a run another process works on (live lock) is not submitted."""
    from sspnet.experiments.compare.drive import JobLines, execute
    from sspnet.experiments.compare.executors.base import Executor, Finished
    from sspnet.io.lock import FolderLock

    class Stub(Executor):
        poll = 0.05

        def submit(self, ctx, run):
            self.pending[run.index] = run

        def wait(self, timeout=None):
            out = [
                Finished(r, None, "boom") if r.model == "res" else Finished(r, {"state": "busy"})
                for r in self.pending.values()
            ]
            self.pending.clear()
            return out

    plan, ctx = make_plan(tiny_config(tmp_path / "cmp"))
    stub = Stub()
    failed, submitted = execute(ctx, plan, stub, JobLines(2, print), print)
    text = capsys.readouterr().out
    assert failed == [plan[0].run_dir.name] and submitted == [r.run_dir.name for r in plan]
    assert f"{plan[0].run_dir.name}: failed: boom" in text and "another job works on it; waiting" in text
    assert f"[1/2] {plan[1].run_dir.name}: not finished" in text
    plan[1].run_dir.mkdir(parents=True)
    lock = FolderLock(plan[1].run_dir / ".compare-job", "sspnet compare job X").acquire()
    threading.Timer(0.5, lock.release).start()  # the other process finishes (without a record)
    failed, submitted = execute(ctx, plan, Stub(), JobLines(2, print), print)
    text = capsys.readouterr().out
    assert submitted == [plan[0].run_dir.name] and failed == submitted  # the busy run was not submitted
    assert f"{plan[1].run_dir.name}: in progress in sspnet compare job X (PID" in text
    assert f"{plan[1].run_dir.name}: not finished" in text
