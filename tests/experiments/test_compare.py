"""sspnet compare: t-interval, plan and dry run, a tiny real run, caching and resume, per-image results."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tiny_compare import TINY_EVAL, TINY_TRAIN, tiny_config

import sspnet.train
from sspnet.experiments.compare import CompareConfig, make_plan, run_compare
from sspnet.experiments.compare.analysis.significance import mcnemar, signflip_test
from sspnet.experiments.compare.analysis.stats import mean_std, paired_ci
from sspnet.experiments.compare.work.perimage import sweep_key, unpack_results

pytestmark = pytest.mark.usefixtures("one_thread")


def no_training(cfg):
    raise AssertionError(f"training was called for {cfg.save}")


def test_paired_ci_by_hand():
    d = [1.0, 2.0, 3.0]
    m, lo, hi, n = paired_ci(d)
    half = 4.3026527 * 1.0 / math.sqrt(3)  # sd = 1, t table: t(0.975, df 2) = 4.3026527
    assert (m, n) == (2.0, 3) and lo == pytest.approx(2 - half, rel=1e-6) and hi == pytest.approx(2 + half, rel=1e-6)
    m, lo, hi, n = paired_ci([0.5])
    assert m == 0.5 and n == 1 and math.isnan(lo) and math.isnan(hi)
    assert mean_std([1.0, None, 3.0])[:2] == (2.0, math.sqrt(2))


def test_dry_run_lists_every_run_and_trains_nothing(tmp_path, monkeypatch, capsys):
    from sspnet.cli import main

    monkeypatch.setattr(sspnet.train, "train", no_training)
    out = tmp_path / "cmp"
    assert main(["compare", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for model in ("res", "ssp2"):
        for seed in range(3):
            assert sum(f"{model:10s} {seed:>4}" in ln for ln in text.splitlines()) == 1
    assert "6 runs (2 models x 3 seeds)" in text and "6 train" in text and "expected time" in text
    assert "adv=pgd, eps=0.2, steps=3" in text and "PGD-10 x 2 restarts at eps 0.2" in text
    assert not out.exists()
    assert main(["compare", "--dry-run", "--preset", "paper-cifar10", "--seeds", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "20 runs" in text and all(v in text for v in ("N6-K7", "N6-K12", "N10-K7", "N10-K12"))
    plan, _ = make_plan(CompareConfig(preset="paper-cifar10", seeds=1, out=str(out)))
    assert {(r.train_config.blocks, r.train_config.steps, r.train_config.adv) for r in plan} == {
        (6, 7, "pgd"),
        (6, 12, "pgd"),
        (10, 7, "pgd"),
        (10, 12, "pgd"),
    }
    assert not out.exists()


def test_bad_options_give_one_line_errors(tmp_path, capsys):
    from sspnet.cli import main

    assert main(["compare", "--dry-run", "--grid", "6x7", "--out", str(tmp_path)]) == 2
    assert "N:K pairs" in capsys.readouterr().err
    assert main(["compare", "--dry-run", "--models", "res,foo", "--out", str(tmp_path)]) == 2
    assert "unknown model 'foo'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="valid presets"):
        make_plan(CompareConfig(preset="huge"))


def test_tiny_compare_writes_report_and_a_rerun_is_cached(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    summary = run_compare(tiny_config(out))
    report = (out / "REPORT.md").read_text()
    for text in (
        "| model | n | clean % | FGSM % | PGD % |",
        "| res |",
        "| ssp2 |",
        "Paired difference to res",
        "F calls / block",
        "parameters",
        "![growth_depth.png](growth_depth.png)",
        "![accuracy_vs_eps.png](accuracy_vs_eps.png)",
    ):
        assert text in report, text
    for png in ("growth_depth.png", "accuracy_vs_eps.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recs = {r["model"]: r for r in summary["records"]}
    assert recs["ssp2"]["cost"]["f_calls_per_block"] == [2] and recs["res"]["cost"]["f_calls_per_block"] == [1]
    for r in recs.values():
        assert r["eval"]["n_images"] == 12 and 0 <= r["eval"]["pgd"] <= r["eval"]["clean"] <= 100
        assert set(r["growth"]["adversarial"]["blocks"]) == {"1", "2", "inf"}
        assert r["train_seconds"] > 0
    results = json.loads((out / "results.json").read_text())
    pgd = [r for r in results["comparisons"]["rows"] if r["metric"] == "pgd"]
    assert [(r["model"], r["baseline"], r["n"]) for r in pgd] == [("ssp2", "res", 1)]

    files = sorted(p for p in (out / "runs").rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    monkeypatch.setattr(sspnet.train, "train", no_training)
    plan, _ = make_plan(tiny_config(out))
    assert [r.status for r in plan] == ["cached", "cached"]
    again = run_compare(tiny_config(out))
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert [r["eval"] for r in again["records"]] == [r["eval"] for r in summary["records"]]

    # other evaluation settings: re-evaluated, not retrained
    plan, _ = make_plan(tiny_config(out, eval={**TINY_EVAL, "growth_images": 4}))
    assert [r.status for r in plan] == ["evaluate", "evaluate"]
    run_compare(tiny_config(out, eval={**TINY_EVAL, "growth_images": 4}))
    assert all((p.stat().st_mtime_ns == before[p]) for p in files if p.name.endswith(".pt"))


def test_unfinished_run_is_resumed(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    cfg = tiny_config(out, models=["res"], train={**TINY_TRAIN, "epochs": 2})
    plan, _ = make_plan(cfg)
    first = plan[0].train_config
    first.epochs, first.force = 1, True  # an interrupted run: 1 of 2 epochs done
    real_train = sspnet.train.train
    real_train(first)
    plan, _ = make_plan(cfg)
    assert plan[0].status == "resume"
    calls = []

    def spy(c):
        calls.append((c.save, c.resume, c.force))
        return real_train(c)

    monkeypatch.setattr(sspnet.train, "train", spy)
    summary = run_compare(cfg)
    assert calls == [(str(plan[0].run_dir), True, False)]
    assert summary["records"][0]["epochs"] == 2
    lines = (plan[0].run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]


def test_parallel_jobs_give_the_same_numbers(tmp_path):
    """Two worker processes (one thread each) train and evaluate exactly as the in-process path does."""
    serial = run_compare(tiny_config(tmp_path / "a"))
    parallel = run_compare(tiny_config(tmp_path / "b", jobs=2))
    for a, b in zip(serial["records"], parallel["records"]):
        assert (a["model"], a["seed"]) == (b["model"], b["seed"])
        assert a["eval"]["clean"] == b["eval"]["clean"] and a["eval"]["pgd"] == b["eval"]["pgd"]
        assert a["growth"]["adversarial"]["blocks"]["2"] == pytest.approx(
            b["growth"]["adversarial"]["blocks"]["2"], rel=1e-5
        )
    assert "2 parallel job(s)" in (tmp_path / "b" / "REPORT.md").read_text()


def test_every_subset_covers_every_class_of_a_label_sorted_split():
    """The embedded mnist5k test split is sorted by label: the first k of n evenly spaced images (the old rule)
    saw digits 0-3 only in the sweep and growth and 0-1 in AutoAttack; every table now sees every class."""
    import torch

    from sspnet.experiments.compare import EvalSettings
    from sspnet.experiments.compare.work.evaluation import choose_images, describe_images

    labels = torch.arange(10).repeat_interleave(100)  # 1000 images, sorted by label
    ev = EvalSettings(autoattack="on", n_images=500, sweep_images=200, growth_images=200).resolve("mnist5k")
    chosen = choose_images(labels, ev, autoattack=True)
    sizes = {"eval": 500, "sweep": 200, "growth": 200, "autoattack": 100}
    assert {k: int(v.numel()) for k, v in chosen.items()} == sizes
    for table, idx in chosen.items():
        counts = torch.bincount(labels[idx], minlength=10)
        assert int(counts.min()) == int(counts.max()) == sizes[table] // 10, table
        assert bool(torch.isin(idx, chosen["eval"]).all()), table  # nested in the main set
    described = describe_images(labels, chosen)
    assert described["sweep"]["per_class"] == [20] * 10 and described["sweep"]["rule"] == "stratified-v1"
    old_eval = torch.arange(500) * 1000 // 500  # the old rule: evenly spaced, then the first k
    assert sorted(set(labels[old_eval[:200]].tolist())) == [0, 1, 2, 3]
    assert sorted(set(labels[old_eval[:100]].tolist())) == [0, 1]


def test_records_say_which_images_each_table_used(tmp_path):
    summary = run_compare(tiny_config(tmp_path / "cmp", models=["res"]))
    rec = summary["records"][0]
    assert set(rec["images"]) == set(summary["images"]) == {"eval", "sweep", "growth"}  # AutoAttack off
    for table, n in (("eval", 12), ("sweep", 6), ("growth", 6)):
        d = summary["images"][table]  # the indices, stored once for all runs
        assert d["n"] == n and sum(d["per_class"]) == n and len(d["indices"]) == n and rec["images"][table]["n"] == n
        assert sum(c > 0 for c in d["per_class"]) == min(n, 10), table  # stratified on the label-sorted split
        assert max(d["per_class"]) - min(d["per_class"]) <= 1, table
    assert set(summary["images"]["sweep"]["indices"]) <= set(summary["images"]["eval"]["indices"])
    assert rec["eval"]["sweep_images"] == 6 and rec["growth"]["n"] == 6
    report = (tmp_path / "cmp" / "REPORT.md").read_text()
    assert "class-stratified nested subsets" in report and "sweep 6 (6 classes, 1 per class)" in report
    ckpt = rec["checkpoint"]  # sspnet.nn.checkpoints.describe_checkpoint of the evaluated file
    assert ckpt["file"].endswith("model_final.pt") and ckpt["selected_on"] == "final" and ckpt["epoch"] == 1
    assert "checkpoint 'final' (model_final.pt: the last epoch, epoch 1)" in report
    assert "selected on the test set" not in report
    # two training steps: usually at chance (10 classes), which the report must say
    assert ("WARNING: a model is at chance accuracy (res: clean" in report) == (rec["eval"]["clean"] <= 15.0)
    flags = rec["eval"]["flags"]  # the engine's sanity flags, listed in the report
    assert all(f["message"] in report for f in flags) and (("## Sanity flags" in report) == bool(flags))


def test_eval_options_have_one_name_and_pixel_units(tmp_path):
    from sspnet.cli import build_parser
    from sspnet.cli.compare import build_config
    from sspnet.experiments.compare import EvalSettings

    with pytest.raises(ValueError, match="'sweep_n' is now called 'sweep_images'"):
        make_plan(tiny_config(tmp_path, eval={"sweep_n": 5}))
    with pytest.raises(ValueError, match="unknown evaluation option 'foo'"):
        EvalSettings.from_dict({"foo": 1})
    args = build_parser().parse_args(
        [
            "compare",
            "--preset",
            "paper-cifar10",
            "--train-eps",
            "8",
            "--train-alpha",
            "2",
            "--eps",
            "4",
            "--n-eval",
            "30",
            "--sweep-images",
            "20",
        ]
    )
    cfg = build_config(args)
    assert cfg.train["eps"] == pytest.approx(8 / 255) and cfg.train["alpha"] == pytest.approx(2 / 255)
    assert cfg.eval["eps"] == pytest.approx(4 / 255)
    assert (cfg.eval["n_images"], cfg.eval["sweep_images"]) == (30, 20)
    plan, ctx = make_plan(CompareConfig(preset="paper-cifar10", seeds=1, models=["res"], out=str(tmp_path)))
    assert ctx.eval.eps == pytest.approx(8 / 255) and ctx.eval.steps == 20


def test_models_come_from_the_registry(tmp_path):
    """ark is a registered composite model (ark, res, ssp2 on cifar10), a scheme file is hashed by its
    coefficients: no special case in compare."""
    import json as _json

    out = str(tmp_path / "cmp")
    plan, _ = make_plan(CompareConfig(preset="paper-cifar10", seeds=1, models=["res", "ark"], grid=[(6, 7)], out=out))
    cost = {r.model: r.cost_units for r in plan}
    assert cost == {"res": 1 + 2 + 6 * 3, "ark": 1 + 2 + 6 * (2 + 1 + 2)}
    scheme = tmp_path / "myssp.json"
    scheme.write_text(_json.dumps({"name": "myssp", "alpha": [[1], [0.5, 0.5]], "beta": [[1], [0, 0.5]], "order": 2}))
    first, _ = make_plan(tiny_config(out, models=[str(scheme)]))
    scheme.write_text(
        _json.dumps(
            {"name": "myssp", "alpha": [[1], [1, 0]], "beta": [[0.5], [0, 1]], "order": 2, "ssp_coefficient": 0}
        )
    )  # edited: the midpoint rule
    second, _ = make_plan(tiny_config(out, models=[str(scheme)]))
    assert first[0].train_hash != second[0].train_hash and first[0].run_dir.name.startswith("myssp-s0-")


def test_run_hashes_survive_the_train_option_rename(tmp_path, monkeypatch):
    """Runs trained before TrainConfig's iters -> steps / test_limit -> eval_n_images rename, and before the
    validation split / 8-bit training options, keep their folder when those options have the values the runs
    had (the hash of the default budget's res seed 0 with 1 epoch, as written by that version); the new
    defaults train differently, so they get new folders."""
    from sspnet.experiments.compare.config import PRESETS

    old_default = {
        "blocks": 3,
        "epochs": 4,
        "batch_size": 64,
        "opt": "adam",
        "lr": 3e-3,
        "schedule": "cyclic",
        "adv": "none",
    }  # the default budget's training then (standard training)
    monkeypatch.setitem(PRESETS["default"], "train", old_default)
    legacy = {"epochs": 1, "val_split": 0.0, "select_on": "test", "train_quantize": False}
    plan, _ = make_plan(CompareConfig(models=["res", "ssp2"], seeds=1, train=legacy, out=str(tmp_path)))
    assert [r.run_dir.name for r in plan] == ["res-s0-40aff4a1", "ssp2-s0-6f4f1724"]
    plan, _ = make_plan(CompareConfig(models=["res"], seeds=1, train={"epochs": 1}, out=str(tmp_path)))
    assert plan[0].run_dir.name != "res-s0-40aff4a1"
    limited, _ = make_plan(
        CompareConfig(models=["res"], seeds=1, train={**legacy, "eval_n_images": 50}, out=str(tmp_path))
    )
    assert limited[0].run_dir.name != "res-s0-40aff4a1"  # a set option still changes the hash


def test_every_accuracy_can_be_recomputed_from_results_json(tmp_path):
    """results.json alone (per-image bits, the image indices stored once) gives every accuracy of the records,
    the aggregate, the report's tables and the image-level tests."""
    out = tmp_path / "cmp"
    run_compare(
        tiny_config(
            out,
            seeds=2,
            train={**TINY_TRAIN, "steps_per_epoch": 12},
            eval={
                **TINY_EVAL,
                "n_images": 30,
                "sweep_images": 10,
                "autoattack": "on",
                "autoattack_images": 8,
                "audit_images": 3,
            },
        )
    )
    results = json.loads((out / "results.json").read_text())
    report = (out / "REPORT.md").read_text()
    runs = unpack_results(results)
    assert all("indices" not in d for r in results["records"] for d in r["images"].values())
    for run, rec in zip(runs, results["records"]):
        c = run["correct"]
        # AutoAttack ran once, inside the audit, on its 3 images (autoattack_images applies with the audit off)
        assert [len(c[k][0]) for k in ("clean", "pgd", "autoattack", sweep_key(0))] == [30, 30, 3, 10]
        assert rec["audit"]["accuracy"]["autoattack"] * 100 == pytest.approx(rec["eval"]["autoattack"], abs=1e-5)
        for key in ("clean", "fgsm", "pgd", "autoattack"):
            assert 100 * c[key][1].mean() == pytest.approx(rec["eval"][key], abs=1e-9), key
        for eps, acc in rec["eval"]["sweep"].items():
            assert 100 * c[sweep_key(eps)][1].mean() == pytest.approx(acc, abs=1e-9), eps
    for model in ("res", "ssp2"):
        mine = [r["correct"] for r in runs if r["model"] == model]
        for key in ("clean", "fgsm", "pgd", "autoattack"):
            accs = [100 * c[key][1].mean() for c in mine]
            assert np.mean(accs) == pytest.approx(results["aggregate"][""][model][key]["mean"], abs=1e-9)
        row = f"{np.mean([100 * c['pgd'][1].mean() for c in mine]):.1f} ± "
        assert any(
            line.startswith(f"| {'ResNet (res)' if model == 'res' else 'SSP-2 (ssp2)'} | 2 |") and row in line
            for line in report.splitlines()
        )
    res = {r["seed"]: r["correct"] for r in runs if r["model"] == "res"}
    ssp2 = {r["seed"]: r["correct"] for r in runs if r["model"] == "ssp2"}
    test = next(r for r in results["comparisons"]["rows"] if r["model"] == "ssp2" and r["metric"] == "pgd")
    d = sum(ssp2[s]["pgd"][1].astype(int) - res[s]["pgd"][1] for s in (0, 1))
    assert signflip_test(d) == pytest.approx(test["p_images"] if test["p_images"] is not None else math.nan)
    for s, per_seed in zip((0, 1), test["per_seed"]):
        assert mcnemar(ssp2[s]["pgd"][1], res[s]["pgd"][1]) == pytest.approx(
            {k: per_seed[k] for k in ("model_only", "base_only", "p")}
        )


def test_audit_source_is_the_baseline_run_of_the_same_seed(tmp_path):
    from sspnet.experiments.compare.work.audit import plan_audits

    def sources(models, seeds, grid=None):
        plan, ctx = make_plan(CompareConfig(models=models, seeds=seeds, grid=grid, out=str(tmp_path)))
        jobs = plan_audits(plan, ctx.eval_hash, ctx.eval)
        return {
            (j.run.variant, j.run.model, j.run.seed): j.source and (j.source.variant, j.source.model, j.source.seed)
            for j in jobs
        }

    assert sources(["ssp2", "res"], 2) == {
        ("", "ssp2", 0): ("", "res", 0),
        ("", "ssp2", 1): ("", "res", 1),
        ("", "res", 0): ("", "res", 1),
        ("", "res", 1): ("", "res", 0),
    }
    assert sources(["res", "ssp2"], 1) == {("", "res", 0): None, ("", "ssp2", 0): ("", "res", 0)}
    assert sources(["ssp2", "ssp3"], 1)[("", "ssp3", 0)] == ("", "ssp2", 0)  # no res: the first model
    grid = sources(["res", "ssp2"], 1, grid=[(6, 7), (10, 7)])
    assert grid[("N10-K7", "ssp2", 0)] == ("N10-K7", "res", 0)


def test_audit_flags_reach_the_report_and_audits_are_cached(tmp_path, monkeypatch):
    """compare's side of the audit (sspnet.eval's audit replaced by a stand-in): every run audited on the
    stated images with the right source, flags in the record, the report and its Findings; a re-run reads
    audit.json back."""
    from sspnet.experiments.compare.work import audit as audit_mod

    calls = []

    def fake(model, source, images, labels, idx, ev):
        calls.append((source is not None, int(idx.numel())))
        flagged = source is not None and model.config["scheme"] == "ssp2"
        return {
            "flags": [{"name": "transfer_stronger", "message": "transfer beats white-box PGD"}] if flagged else [],
            "result": {"checks": 3},
        }

    monkeypatch.setattr(audit_mod, "audit_function", lambda: fake)
    monkeypatch.setattr(audit_mod, "call_audit", fake)
    out = tmp_path / "cmp"
    summary = run_compare(tiny_config(out, eval={**TINY_EVAL, "audit_images": 5}))
    assert sorted(calls) == [(False, 5), (True, 5)]  # one seed: res has no transfer source
    recs = {r["model"]: r for r in summary["records"]}
    assert recs["ssp2"]["audit"]["source"] == "res seed 0" and recs["res"]["audit"]["source"] is None
    report = (out / "REPORT.md").read_text()
    findings = report.split("## Settings")[0]
    assert "audit (5 class-stratified images per run; " in findings and "raised 1 flag(s)" in findings
    assert "in 1 of 2 runs: transfer_stronger (ssp2 seed 0)" in findings and "## Gradient-masking audit" in report
    assert "- FLAG ssp2 seed 0: transfer beats white-box PGD" in report
    calls.clear()
    run_compare(tiny_config(out, eval={**TINY_EVAL, "audit_images": 5}))
    assert calls == []
    run_compare(tiny_config(out, eval={**TINY_EVAL, "audit": "off"}))
    assert calls == [] and "did not run (switched off" in (out / "REPORT.md").read_text()


def test_the_real_audit_runs_on_every_run(tmp_path):
    """sspnet.eval.audit through compare: the stated images, the transfer source, per-image bits."""
    from sspnet.experiments.compare.work.perimage import unpack

    out = tmp_path / "cmp"
    summary = run_compare(tiny_config(out, eval={**TINY_EVAL, "audit_images": 6, "audit_queries": 20}))
    recs = {r["model"]: r["audit"] for r in summary["records"]}
    assert recs["ssp2"]["source"] == "res seed 0" and "transfer" in recs["ssp2"]["accuracy"]
    assert recs["res"]["source"] is None and "transfer" not in recs["res"]["accuracy"]
    for a in recs.values():
        assert a["images"] == a["subset"]["n"] == 6 and a["config"]["queries"] == 20
        assert set(a["subset"]["indices"]) <= set(summary["images"]["eval"]["indices"])
        for key, bits in a["correct"].items():
            assert 100 * unpack(bits, 6).mean() == pytest.approx(100 * a["accuracy"][key], abs=1e-4), key
    report = (out / "REPORT.md").read_text()
    assert "runs audited (`sspnet.eval.audit`) on a class-stratified subset of 6 test images" in report
    assert summary["audit"]["ran"] and (("raised no flag" in report) == (not summary["audit"]["flags"]))


def test_early_stop_reaches_the_sweep_and_audit_but_not_the_growth_examples():
    """The sweep, AutoAttack and the audit stop early (no images kept); the main PGD, whose examples feed the
    growth ratios, always runs every step; --no-early-stop is part of the evaluation hash."""
    import dataclasses

    from sspnet.experiments.compare.config import EvalSettings
    from sspnet.experiments.compare.work.evaluation import _config

    ev = EvalSettings(eps=0.2, restarts=2).resolve("mnist5k")
    sweep = _config(ev, "pgd", [0.1], keep_adv=0)
    assert sweep.early_stop is True and sweep.restarts == 2 and sweep.random_start is True
    assert _config(ev, "fgsm,pgd", [0.2], keep_attack="pgd").early_stop is False
    off = dataclasses.replace(ev, early_stop=False)
    assert _config(off, "pgd", [0.1], keep_adv=0).early_stop is False
    assert off.key() != ev.key()
