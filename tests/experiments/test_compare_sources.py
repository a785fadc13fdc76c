"""sspnet compare records where each option came from (a flag, the preset, the defaults) in results.json and
REPORT.md; a flag replaces its own option of the preset only; no source enters a hash."""

from __future__ import annotations

import json

import pytest
from tiny_compare import TINY_TRAIN, tiny_config

from sspnet.cli import build_parser
from sspnet.cli.compare import build_config
from sspnet.experiments.compare import CompareConfig, CompareContext, make_plan, run_compare
from sspnet.experiments.compare.presets import PRESETS
from sspnet.experiments.compare.sources import sources_line

pytestmark = pytest.mark.usefixtures("one_thread")


def plan_of(*words: str):
    return make_plan(build_config(build_parser().parse_args(["compare", "--out", "/nonexistent/cmp", *words])))


def test_preset_options_and_flags_have_their_sources_and_the_same_hashes():
    plan, ctx = plan_of()
    s = ctx.sources
    assert set(s["train"]) >= set(PRESETS["default"]["train"])
    assert all(s["train"][k] == "preset" for k in PRESETS["default"]["train"])
    assert (s["train"]["decay"], s["train"]["milestones"], s["train"]["norm"]) == (
        "original recipe",
        "original recipe",
        "dataset spec",
    )
    assert (s["eval"]["eps"], s["eval"]["steps"], s["eval"]["restarts"]) == ("preset", "default", "default")
    assert (s["dataset"], s["models"], s["seeds"]) == ("preset",) * 3
    names = [r.run_dir.name for r in plan]

    # the preset's own values given as flags: other sources, the same runs and evaluation hash
    epochs, eps = PRESETS["default"]["train"]["epochs"], PRESETS["default"]["eval"]["eps"]
    again, ctx2 = plan_of("--epochs", str(epochs), "--eps", str(eps), "--seeds", "3")
    assert (ctx2.sources["train"]["epochs"], ctx2.sources["eval"]["eps"], ctx2.sources["seeds"]) == ("flag",) * 3
    assert [r.run_dir.name for r in again] == names and ctx2.eval_hash == ctx.eval_hash
    assert [r.train_hash for r in again] == [r.train_hash for r in plan]
    assert json.dumps(ctx2.summary()["sources"]) != json.dumps(ctx.summary()["sources"])


def test_a_compare_flag_replaces_its_own_option_only():
    _, base = plan_of()
    _, ctx = plan_of("--pgd-steps", "5", "--batch-size", "32")
    assert ctx.train == {**base.train, "batch_size": 32}
    assert ctx.eval.steps == 5 and ctx.eval.restarts == base.eval.restarts and ctx.eval.eps == base.eval.eps
    assert (ctx.sources["train"]["batch_size"], ctx.sources["eval"]["steps"]) == ("flag", "flag")
    assert ctx.sources["train"]["lr"] == "preset"

    # another budget: the preset's warm-up keeps its share of the epochs, and says so
    _, ctx = plan_of("--epochs", "4")
    assert ctx.train == {**base.train, "epochs": 4, "eps_warmup": 1.0}
    assert ctx.sources["train"]["eps_warmup"] == "preset, scaled to --epochs"


def test_an_other_optimizer_leaves_the_lr_to_its_rule():
    """The preset's lr 3e-3 is Adam's: --opt sgd without --lr takes SGD's lr, batch and schedule stay."""
    plan, ctx = plan_of("--opt", "sgd")
    r = plan[0].train_config.resolved()
    preset = PRESETS["default"]["train"]
    assert (r.opt, r.lr, r.batch_size, r.schedule) == ("sgd", 0.1, preset["batch_size"], preset["schedule"])
    assert (ctx.sources["train"]["opt"], ctx.sources["train"]["lr"]) == ("flag", "original recipe")
    plan, ctx = plan_of("--opt", "sgd", "--lr", "0.05")
    assert plan[0].train_config.resolved().lr == 0.05 and ctx.sources["train"]["lr"] == "flag"
    plan, _ = plan_of("--opt", "adam")  # the preset's optimizer: its lr, the same runs
    assert [r.run_dir.name for r in plan] == [r.run_dir.name for r in plan_of()[0]]


def test_every_preset_has_sources_and_old_settings_have_none():
    for preset in PRESETS:
        _, ctx = make_plan(CompareConfig(preset=preset, out="/nonexistent/cmp"))
        assert {"dataset", "models", "seeds", "grid", "train", "eval"} <= set(ctx.sources)
        assert all(v == "preset" for k, v in ctx.sources["train"].items() if k in PRESETS[preset]["train"])
        if PRESETS[preset]["grid"]:
            assert ctx.sources["train"]["blocks"] == ctx.sources["train"]["steps"] == "preset"
    old = {k: v for k, v in ctx.summary().items() if k != "sources"}
    assert CompareContext.from_settings(old).sources == {} and sources_line({}) == []


def test_results_json_and_report_name_the_sources(tmp_path):
    out = tmp_path / "cmp"
    config = tiny_config(out, models=["res"], eval_options={"audit": "off"}, train={**TINY_TRAIN, "opt": "adam"})
    summary = run_compare(config)
    sources = json.loads((out / "results.json").read_text())["settings"]["sources"]
    assert sources == summary["settings"]["sources"]
    assert (sources["train"]["epochs"], sources["train"]["opt"], sources["train"]["adv"]) == ("flag", "flag", "preset")
    assert (sources["eval"]["audit"], sources["eval"]["eps"], sources["eval"]["crit"]) == ("flag", "preset", "default")
    report = (out / "REPORT.md").read_text()
    line = next(x for x in report.splitlines() if x.startswith("- option sources"))
    assert "dataset preset, models flag" in line and "flag: batch_size, blocks, epochs" in line
    assert "preset: adv, alpha, eps, lr, schedule, steps" in line and "scaled to --epochs: eps_warmup" in line
