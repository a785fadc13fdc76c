"""sspnet compare statistics: McNemar and its combination over seeds, Holm, minimum detectable differences,
per-image bits, and the Findings / tables of a report built from constructed records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sspnet.experiments.compare import EvalSettings
from sspnet.experiments.compare.analysis.comparisons import compare_to_baseline
from sspnet.experiments.compare.analysis.significance import holm, mcnemar, mdd_images, mdd_t, signflip_test, t_test
from sspnet.experiments.compare.analysis.stats import METRICS, metrics_of, paired_ci
from sspnet.experiments.compare.report.writer import write_report
from sspnet.experiments.compare.work.perimage import pack, share_images, unpack, unpack_results


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_images():
    # 2 images right only for the model, 10 right only for the baseline, 30 + 8 concordant
    model = np.array([1] * 2 + [0] * 10 + [1] * 30 + [0] * 8, dtype=bool)
    base = np.array([0] * 2 + [1] * 10 + [1] * 30 + [0] * 8, dtype=bool)
    p_exact = 2 * (1 + 12 + 66) / 2**12  # 2 P(Binomial(12, 1/2) <= 2)
    r = mcnemar(model, base)
    assert (r["model_only"], r["base_only"]) == (2, 10)
    assert r["p"] == pytest.approx(p_exact, rel=1e-12) and p_exact == pytest.approx(0.0385742, rel=1e-6)
    assert signflip_test(model.astype(int) - base) == pytest.approx(p_exact, rel=1e-12)  # one seed: McNemar
    assert mcnemar(model, model)["p"] == 1.0 and signflip_test(np.zeros(5, int)) == 1.0
    with pytest.raises(ValueError, match="same images"):
        mcnemar(model, base[:-1])


def test_signflip_matches_brute_force_enumeration():
    d = np.array([2, -1, 3, 1, 1, 0, -2, 2])
    nz = d[d != 0]
    t = abs(d.sum())
    flips = np.array(np.meshgrid(*[[-1, 1]] * nz.size)).reshape(nz.size, -1).T
    brute = np.mean(np.abs(flips @ np.abs(nz)) >= t)
    assert signflip_test(d) == pytest.approx(brute, rel=1e-12)


def test_combined_test_keeps_its_level_when_seeds_share_images_and_pooling_does_not():
    """Every seed uses the same images: an image that favours one network in one seed tends to in the others.
    Under H0 (each image as likely to favour either), the sign-flip test keeps alpha; a binomial test on the
    discordant counts summed over seeds treats 3 seeds' repeats as independent pairs and rejects far too often."""
    rng = np.random.default_rng(0)
    reject_flip = reject_pooled = 0
    trials = 400
    for _ in range(trials):
        d = rng.choice([-3, 0, 3], size=60, p=[0.15, 0.7, 0.15])  # discordant in all 3 seeds, same direction
        reject_flip += signflip_test(d) <= 0.05
        plus, minus = int(d[d > 0].sum()), int(-d[d < 0].sum())
        reject_pooled += stats.binomtest(plus, plus + minus).pvalue <= 0.05 if plus + minus else 0
    assert reject_flip / trials <= 0.05 + 0.03
    assert reject_pooled / trials > 0.15


def test_holm_on_a_known_vector():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adj = holm([0.2, math.nan, 0.01])  # NaN is not a test: m = 2
    assert adj[0] == pytest.approx(0.2) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)
    assert holm([0.4, 0.3]) == pytest.approx([0.6, 0.6]) and holm([0.9, 0.8]) == [1.0, 1.0] and holm([]) == []


def test_mdd_t_has_the_stated_power_and_shrinks_with_more_seeds():
    sd, alpha = 6.0, 0.05 / 10
    mdds = [mdd_t(sd, n, alpha) for n in range(2, 12)]
    assert all(a > b for a, b in zip(mdds, mdds[1:]))
    assert math.isnan(mdd_t(sd, 1, alpha)) and math.isnan(mdd_t(0.0, 3, alpha))
    n = 4
    rng = np.random.default_rng(1)
    x = rng.normal(mdd_t(sd, n, alpha), sd, size=(40000, n))  # true difference = the MDD
    t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
    power = np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, n - 1))
    assert power == pytest.approx(0.8, abs=0.015)


@pytest.mark.parametrize("diffs", [[-14.0, 2.0, 9.0], [0.4, -0.2, 0.1, 0.3], [3.0, -1.0], [1.0, 2.5, -3.0, 0.5, 2.0]])
def test_mdd_exceeds_the_observed_difference_when_the_interval_contains_zero(diffs):
    m, low, high, n = paired_ci(diffs)
    assert low < 0 < high
    sd = float(np.std(diffs, ddof=1))
    for tests in (1, 10, 40):
        assert mdd_t(sd, n, 0.05 / tests) > abs(m)
    assert t_test(diffs) > 0.05


def test_mdd_images_has_the_stated_power_and_shrinks_with_more_images():
    d = np.r_[np.ones(30, int), -np.ones(20, int), np.zeros(450, int)]  # 10% discordant
    mdd = mdd_images(d, d.size)
    psi = 0.1
    q = 0.5 + mdd / (2 * psi)  # each discordant image favours the model with probability q
    rng = np.random.default_rng(2)
    u = rng.random((1500, d.size))
    sims = np.where(u < psi * q, 1, np.where(u < psi, -1, 0))
    power = np.mean([signflip_test(s) <= 0.05 for s in sims])
    assert power == pytest.approx(0.8, abs=0.04)
    assert mdd_images(np.tile(d, 4), 4 * d.size) < mdd
    assert math.isnan(mdd_images(np.zeros(10, int), 10)) and math.isinf(mdd_images(np.array([1, -1, 0]), 3))


def test_bits_round_trip_and_images_are_stored_once():
    ok = np.random.default_rng(3).random(37) < 0.5
    assert np.array_equal(unpack(pack(ok), 37), ok)
    assert len(pack(ok)) <= 4 * math.ceil(37 / 8 / 3) + 4
    with pytest.raises(ValueError, match="bits"):
        unpack(pack(ok), 80)
    recs = [fake_record("res", s, {"clean": ok, "fgsm": ok, "pgd": ok}) for s in range(2)]
    images, slim = share_images(recs)
    assert images["eval"]["indices"] == list(range(0, 74, 2))
    assert all("indices" not in r["images"]["eval"] for r in slim)
    runs = unpack_results({"images": images, "records": slim})
    assert np.array_equal(runs[1]["correct"]["pgd"][0], np.arange(0, 74, 2))
    assert np.array_equal(runs[1]["correct"]["pgd"][1], ok)


# ---- reports from constructed records ----


def fake_record(
    model: str, seed: int, correct: dict[str, np.ndarray], audit: dict | None = None, variant: str = ""
) -> dict:
    """A run record as `executor.execute_run` writes it, with the accuracies of the given per-image bits."""
    n = len(correct["clean"])
    idx = list(range(0, 2 * n, 2))
    acc = {k: 100.0 * float(np.mean(v)) for k, v in correct.items()}
    prof = {"blocks": {"2": [1.1, 1.2]}, "groups": {"2": [1.15]}}
    rec = {
        "model": model,
        "seed": seed,
        "variant": variant,
        "run_dir": f"/x/{model}-s{seed}",
        "status": "train",
        "cost": {"f_calls_per_block": [1], "parameters": 10},
        "train_seconds": 1.0,
        "run_wall_seconds": 2.0,
        "eval": {
            "n_images": n,
            "clean": acc["clean"],
            "fgsm": acc["fgsm"],
            "pgd": acc["pgd"],
            "autoattack": None,
            "sweep": {"0": acc["clean"], "0.1": acc["pgd"]},
            "flags": [],
        },
        "images": {
            "eval": {"rule": "stratified-v1", "seed": 0, "n": n, "per_class": [n], "indices": idx},
            "sweep": {"rule": "stratified-v1", "seed": 0, "n": n, "per_class": [n], "indices": idx},
        },
        "correct": {
            **{k: pack(v) for k, v in correct.items()},
            "sweep 0": pack(correct["clean"]),
            "sweep 0.1": pack(correct["pgd"]),
        },
        "growth": {"adversarial": prof, "baseline": prof},
    }
    if audit is not None:
        rec["audit"] = audit
    return rec


def bits(n: int, acc: float, rng) -> np.ndarray:
    return rng.random(n) < acc


def records_for(
    effects: dict[str, float], seeds: int, n: int = 400, noise: dict[str, float] | None = None, audit=None
) -> list[dict]:
    """Runs whose PGD accuracy is 0.5 + effect (+ per-seed noise of that SD); clean 0.9, FGSM 0.6."""
    rng = np.random.default_rng(0)
    recs = []
    for model, effect in effects.items():
        for s in range(seeds):
            shift = effect + rng.normal(0, (noise or {}).get(model, 0.0))
            correct = {"clean": bits(n, 0.9, rng), "fgsm": bits(n, 0.6, rng), "pgd": bits(n, 0.5 + shift, rng)}
            recs.append(fake_record(model, s, correct, audit=(audit or {}).get((model, s))))
    return recs


def report_of(tmp_path, records, seeds: int) -> str:
    ev = EvalSettings(sweep=(0.1,)).resolve("mnist5k")
    settings = {
        "preset": "default",
        "dataset": "mnist5k",
        "models": sorted({r["model"] for r in records}),
        "seeds": seeds,
        "train": {"epochs": 1},
        "eval": ev,
        "eval_hash": "h",
        "grid": None,
        "out": str(tmp_path),
        "expected": "-",
    }
    write_report(tmp_path, records, settings, 1.0)
    return (tmp_path / "REPORT.md").read_text()


def findings_of(report: str) -> str:
    return report.split("## Findings", 1)[1].split("## Settings", 1)[0]


def test_one_seed_shows_no_spread_and_says_n_1(tmp_path):
    report = report_of(tmp_path, records_for({"res": 0.0, "ssp2": 0.05}, seeds=1), seeds=1)
    results = report.split("## Results", 1)[1].split("PGD-10 accuracy", 1)[0]
    assert "±" not in results and "(n=1)" in results
    assert "| ResNet (res) | 1 |" in results
    found = findings_of(report)
    assert "With 1 seed there is no seed-level test" in found and "these networks only" in found


def test_findings_name_significant_differences_and_bound_the_others(tmp_path):
    # ssp2: +25 points of PGD accuracy in each of 3 seeds (significant); ssp3: seed noise around 0
    recs = records_for({"res": 0.0, "ssp2": 0.25, "ssp3": 0.0}, seeds=3, noise={"ssp3": 0.08})
    report = report_of(tmp_path, recs, seeds=3)
    found = findings_of(report)
    comp = compare_to_baseline(recs)
    pgd = {r["model"]: r for r in comp["rows"] if r["metric"] == "pgd"}
    assert pgd["ssp2"]["significant_seeds"] and not pgd["ssp3"]["significant_seeds"]
    assert "Significant at the seed level after Holm: ssp2 PGD accuracy +2" in found
    assert "With 3 seeds, the seed-level test could not detect differences smaller than" in found
    mdd = pgd["ssp3"]["mdd_seeds"]
    assert pgd["ssp3"]["low"] < 0 < pgd["ssp3"]["high"] and mdd > abs(pgd["ssp3"]["mean"])
    assert f"{mdd:.1f} points of PGD accuracy" in found
    assert comp["tests"] == sum(
        math.isfinite(r.get(k, math.nan)) for r in comp["rows"] for k in ("p_seeds", "p_images")
    )
    assert "Tests against res" in report and "McNemar p per seed" in report


def test_a_masked_model_is_flagged_in_the_findings(tmp_path):
    """Records with audits as `work.audit` stores them (sspnet.eval.audit's flags and accuracies)."""
    flag = {
        "flag": "transfer_beats_pgd",
        "name": "transfer_beats_pgd",
        "eps": 0.1,
        "message": "transfer PGD from the source model fools 9 of 40 images that white-box PGD leaves correct",
    }
    config = {"steps": 10, "long_steps": 40, "queries": 1000}
    acc = {"clean": 0.9, "white_box": 0.8, "square": 0.55, "transfer": 0.575, "large_eps": 0.0}
    audit = {
        ("res", 0): {"images": 40, "source": None, "flags": [], "config": config, "accuracy": acc},
        ("ssp2", 0): {"images": 40, "source": "res seed 0", "flags": [flag], "config": config, "accuracy": acc},
    }
    report = report_of(tmp_path, records_for({"res": 0.0, "ssp2": 0.3}, seeds=1, audit=audit), seeds=1)
    found = findings_of(report)
    assert "raised 1 flag(s) in 1 of 2 runs: transfer_beats_pgd (ssp2 seed 0)" in found
    assert "(40 class-stratified images per run; white-box PGD-10/40, Square (1000 queries)" in found
    assert "the robustness of the flagged runs may be overestimated" in found
    section = report.split("## Gradient-masking audit", 1)[1]
    assert "| ssp2 seed 0 | res seed 0 | 90.0 | 80.0 | 55.0 | 57.5 | - | 0.0 | transfer_beats_pgd |" in section
    assert "| res seed 0 | - | 90.0 |" in section and f"- FLAG ssp2 seed 0: {flag['message']}" in section
    clean = {k: dict(v, flags=[]) for k, v in audit.items()}
    report = report_of(tmp_path, records_for({"res": 0.0, "ssp2": 0.3}, seeds=1, audit=clean), seeds=1)
    assert "raised no flag" in findings_of(report) and "FLAG" not in report


def test_the_findings_name_the_checkpoint_and_warn_when_it_was_selected_on_test(tmp_path):
    recs = records_for({"res": 0.0, "ssp2": 0.0}, seeds=1)
    final = {
        "file": "/x/model_final.pt",
        "crit": "final",
        "epoch": 4,
        "selected_on": "final",
        "criterion": "final",
        "note": None,
        "warning": None,
    }
    for r in recs:
        r["checkpoint"] = final
    found = findings_of(report_of(tmp_path, recs, seeds=1))
    assert "Evaluated at: model_final.pt: the last epoch, epoch 4." in found and "WARNING" not in found
    recs[1]["checkpoint"] = {
        **final,
        "file": "/x/model_acc.pt",
        "selected_on": "test",
        "criterion": "acc",
        "epoch": 3,
        "warning": "model_acc.pt was selected on the test set (best test accuracy)",
    }
    report = report_of(tmp_path, recs, seeds=1)
    assert "model_acc.pt: best on the TEST set by acc, epoch 3" in findings_of(report)
    assert "WARNING: 1 of 2 runs were evaluated at a checkpoint selected on the test set" in findings_of(report)
    assert "checkpoint 'final' (model_final.pt: the last epoch, epoch 4; model_acc.pt" in report


def test_each_block_group_s_growth_is_a_tested_metric_and_has_a_table(tmp_path):
    """Three groups, as the paper's CIFAR-10 network: the last group's PGR differs (17 vs 11.6 as in the
    paper's figure), the first two do not; one-group records keep exactly the metrics of before."""
    rng = np.random.default_rng(1)
    recs = records_for({"res": 0.0, "ssp2": 0.0}, seeds=4)
    assert [k for k, _ in metrics_of(recs)] == [k for k, _ in METRICS]
    for r in recs:
        g3 = (17.0 if r["model"] == "res" else 11.6) + rng.normal(0, 0.3)
        groups_ = [1.5 + rng.normal(0, 0.05), 1.8 + rng.normal(0, 0.05), g3]
        prof = {"blocks": {"2": [1.2, 1.2, 1.3, 1.3, 4.0, 4.2]}, "groups": {"2": groups_}, "blocks_per_group": [2] * 3}
        r["growth"] = {"adversarial": prof, "baseline": prof}
    assert [k for k, _ in metrics_of(recs)][-3:] == ["growth_g1", "growth_g2", "growth_g3"]
    rows = {row["metric"]: row for row in compare_to_baseline(recs)["rows"] if row["model"] == "ssp2"}
    assert rows["growth_g3"]["mean"] == pytest.approx(-5.4, abs=0.5) and rows["growth_g3"]["significant_seeds"]
    assert not rows["growth_g1"]["significant_seeds"]
    report = report_of(tmp_path, recs, seeds=4)
    table = report.split("Growth ratio per block group (L2)", 1)[1].split("\n\n", 2)[1]
    res_line = next(line for line in table.splitlines() if line.startswith("| ResNet"))
    assert res_line.count("±") == 6 and "| 16.9" in res_line  # PGD and noise of 3 groups, mean ± std
    assert "group 3 growth ratio (PGD)" in report
