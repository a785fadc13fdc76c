"""sspnet compare's time estimate: the pass counts by hand (measured costs replaced), cached / evaluate /
resume runs, parallel workers, and the dry run's measured line (paper-cifar10 without its data)."""

from __future__ import annotations

import json

import pytest
import torch

from sspnet.experiments.compare import CompareConfig, make_plan
from sspnet.experiments.compare.plan.estimate import Costs, estimate_plan
from sspnet.experiments.compare.work.audit import plan_audits

# every option the counts depend on, so a change of the default preset does not change them
TRAIN = {
    "epochs": 2,
    "batch_size": 64,
    "steps_per_epoch": 10,
    "adv": "pgd",
    "steps": 3,
    "eps": 0.2,
    "alpha": 0.05,
    "blocks": 1,
    "val_split": 0.1,
    "eval_n_images": 50,
    "clean_metrics": False,
}
EVAL = {
    "eps": 0.2,
    "alpha": 0.05,
    "steps": 2,
    "restarts": 1,
    "n_images": 100,
    "sweep": (0.2, 0.4),
    "sweep_images": 50,
    "growth_images": 20,
    "growth_noise": "sign",
    "autoattack": "off",
    "audit": "on",
    "audit_images": 10,
    "audit_queries": 30,
    "batch_size": 50,
}
COSTS = {"res": Costs(train=1.0, attack=2.0, forward=0.5), "ssp2": Costs(train=10.0, attack=20.0, forward=5.0)}

# by hand, mnist5k (4,000 training images, 1,000 test images), ms with the res costs (ssp2: 10 x):
# training: 400 held out for validation, 3,600 trained on in min(ceil(3600 / 64), 10) = 10 steps of 64 = 640
# images per epoch, each PGD-3 + the update = 4 fwd+bwd; per epoch forwards over 400 validation + 50 test images
RES_TRAIN = 2 * 640 * 4 * 1.0 + 2 * (400 + 50) * 0.5
# evaluation on 100 images: fwd+bwd FGSM 100 + PGD-2 200 + the sweep's other eps (0.4) PGD-2 on 50 = 400;
# forwards: clean, FGSM's and PGD's results 3 x 100, the sweep's clean and PGD results 2 x 50, growth 20 x 4
RES_EVAL = 400 * 2.0 + (300 + 100 + 80) * 0.5
# audit on 10 images: PGD-2, PGD-8, large-eps PGD-2 = 120 fwd+bwd; forwards: 4 clean, 3 PGD results, 30 Square
# queries per image = 370; transfer (ssp2 from res): 2 forwards per image on the audited model, and PGD-2
# (no early stop) on the source: 20 fwd+bwd + 10 forwards
RES_AUDIT = 120 * 2.0 + 370 * 0.5
SSP2_AUDIT = 10 * (120 * 2.0 + 390 * 0.5) + (20 * 2.0 + 10 * 0.5)


def plan_of(tmp_path, models=("res", "ssp2"), seeds=1, **eval_opts):
    cfg = CompareConfig(
        dataset="mnist5k",
        models=list(models),
        seeds=seeds,
        out=str(tmp_path),
        train=dict(TRAIN),
        eval={**EVAL, **eval_opts},
        device="cpu",
    )
    return make_plan(cfg)


def fake_measure(calls):
    def measure(configs, ev, device, threads, budget_s):
        calls.append((sorted(configs, key=str), threads))
        return {key: COSTS[key[0]] for key in configs}

    return measure


def test_pass_counting_by_hand(tmp_path):
    plan, ctx = plan_of(tmp_path)
    calls = []
    est = estimate_plan(plan, ctx, "cpu", 1, measure=fake_measure(calls))
    assert calls == [([("res", 1), ("ssp2", 1)], torch.get_num_threads())]
    train, evals = RES_TRAIN * 11 / 1000, RES_EVAL * 11 / 1000
    assert est.train_s == pytest.approx(train)
    assert est.eval_s == pytest.approx(evals + (RES_AUDIT + SSP2_AUDIT) / 1000)
    assert est.total_s == pytest.approx(est.train_s + est.eval_s) and est.runs == 2 and est.autoattack_s == 0
    # two workers: the ssp2 run and then its audit are the longest of their phases
    two = estimate_plan(plan, ctx, "cpu", 2, measure=fake_measure(calls))
    assert two.total_s == pytest.approx((10 * (RES_TRAIN + RES_EVAL) + SSP2_AUDIT) / 1000) and calls[-1][1] == 1
    text = est.describe()
    assert text.startswith("expected time: about 78 s on this machine")
    assert "res-N1 1/2/0.5" in text and "ssp2-N1 10/20/5" in text


def test_autoattack_and_ball_counts(tmp_path):
    per_image = (1000 * 2.0 + 5003 * 0.5) / 1000  # APGD-CE + APGD-T fwd+bwd, Square + 3 forwards per image
    plan, ctx = plan_of(tmp_path, models=("res",), audit="off", autoattack="on", autoattack_images=7)
    est = estimate_plan(plan, ctx, "cpu", 1, measure=fake_measure([]))
    assert est.autoattack_s == pytest.approx(7 * per_image)  # in the evaluation, on its 7 images
    assert est.eval_s == pytest.approx(RES_EVAL / 1000 + 7 * per_image)
    plan, ctx = plan_of(tmp_path, models=("res",), autoattack="on", autoattack_images=7)
    est = estimate_plan(plan, ctx, "cpu", 1, measure=fake_measure([]))
    assert est.autoattack_s == pytest.approx(10 * per_image)  # once per run: in the audit, on its 10 images
    assert est.eval_s == pytest.approx((RES_EVAL + RES_AUDIT) / 1000 + 10 * per_image)
    for r in plan:
        r.train_config.adv, r.train_config.ball_copies = "ball", 5
    est = estimate_plan(plan, ctx, "cpu", 1, measure=fake_measure([]))
    assert est.train_s == pytest.approx((2 * 640 * 5 * 1.0 + 2 * 450 * 0.5) / 1000)  # the 5 noisy copies only


def test_cached_evaluate_and_resume_runs(tmp_path):
    plan, ctx = plan_of(tmp_path)
    res, ssp2 = plan
    res.status = "cached"
    jobs = {j.run.model: j for j in plan_audits(plan, ctx.eval_hash, ctx.eval)}
    res.run_dir.mkdir(parents=True)
    (res.run_dir / "audit.json").write_text(json.dumps({"key": jobs["res"].key}))
    calls = []
    est = estimate_plan(plan, ctx, "cpu", 1, measure=fake_measure(calls))
    assert est.runs == 1 and calls[-1][0] == [("res", 1), ("ssp2", 1)]  # res: the transfer source
    assert est.total_s == pytest.approx(10 * (RES_TRAIN + RES_EVAL) / 1000 + SSP2_AUDIT / 1000)
    ssp2.status = "evaluate"
    est = estimate_plan(plan, ctx, "cpu", 1, measure=fake_measure(calls))
    assert est.train_s == 0 and est.total_s == pytest.approx(10 * RES_EVAL / 1000 + SSP2_AUDIT / 1000)
    ssp2.status = "resume"
    ssp2.run_dir.mkdir(parents=True)
    (ssp2.run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
    est = estimate_plan(plan, ctx, "cpu", 1, measure=fake_measure(calls))
    assert est.train_s == pytest.approx(10 * RES_TRAIN / 2 / 1000)  # one epoch of two left
    ssp2.status = "cached"
    (ssp2.run_dir / "audit.json").write_text(json.dumps({"key": jobs["ssp2"].key}))
    n = len(calls)
    est = estimate_plan(plan, ctx, "cpu", 2, measure=fake_measure(calls))
    assert est.total_s == 0 and len(calls) == n and est.describe().startswith("expected time: none")


def test_more_jobs_divide_the_wall_time(tmp_path):
    plan, ctx = plan_of(tmp_path, models=("res",), seeds=4)
    one, two, four = (estimate_plan(plan, ctx, "cpu", j, measure=fake_measure([])) for j in (1, 2, 4))
    # every res seed is audited with another res seed as the transfer source: 2 x 10 forwards more, and the
    # source's PGD-2: 20 fwd+bwd and 10 forwards
    one_run = RES_TRAIN + RES_EVAL + RES_AUDIT + 20 * 0.5 + (20 * 2.0 + 10 * 0.5)
    assert one.total_s == pytest.approx(4 * one_run / 1000)
    assert two.total_s == pytest.approx(one.total_s / 2) and four.total_s == pytest.approx(one.total_s / 4)
    assert two.jobs == 2 and two.threads == 1


def test_dry_run_prints_the_measured_estimate(tmp_path, monkeypatch, capsys):
    import sspnet.data
    from sspnet.cli import main

    def no_data(*args, **kwargs):
        raise AssertionError("the estimate loaded data")

    monkeypatch.setattr(sspnet.data, "load", no_data)
    threads = torch.get_num_threads()
    assert main(["compare", "--dry-run", "--out", str(tmp_path / "cmp")]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("expected time:"))
    assert "about" in line and "on this machine" in line and "training" in line and "evaluation" in line
    assert "measured per-step costs" in text and "res-N" in text and torch.get_num_threads() == threads
    # paper-cifar10 with no CIFAR-10 files: synthetic inputs of its shape, one model to keep it short
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert (
        main(
            [
                "compare",
                "--dry-run",
                "--preset",
                "paper-cifar10",
                "--models",
                "res",
                "--seeds",
                "1",
                "--data-root",
                str(empty),
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "expected time: about" in text and "res-N6" in text and "res-N10" in text
    assert not (tmp_path / "cmp").exists()
