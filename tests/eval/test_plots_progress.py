"""Progress of long calls (library callbacks, the CLI's display, --quiet) and what the figures and REPORT.md show
(integer ticks, group boundaries, percent axes, eps in k/255, scheme names, F calls, chance accuracy)."""

from __future__ import annotations

import io
import logging

import pytest
import torch

import sspnet
from sspnet.io.progress import ProgressLine, fmt_seconds, scaled

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def recorder():
    calls: list[tuple[int, int, str]] = []
    return calls, (lambda done, total, note="": calls.append((done, total, note)))


def check_counts(calls, total):
    assert calls and calls[0][0] == 0 and calls[-1][0] == total
    assert all(c[1] == total for c in calls)
    counts = [c[0] for c in calls]
    assert counts == sorted(counts) and len(set(counts)) > 2  # non-decreasing, and it moves


def tiny(scheme="res", blocks=1):
    return sspnet.create_model(scheme, dataset="mnist5k", blocks=blocks, seed=0).eval()


def data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10


# ---- the display -------------------------------------------------------------------------------------------------


def test_progress_line_plain_lines_are_throttled_with_elapsed_and_eta():
    out, clock = io.StringIO(), Clock()
    line = ProgressLine("sspnet attack", stream=out, tty=False, interval=5, clock=clock)
    line(0, 100, "pgd eps 0.3: 0/100 images")  # the first call always prints
    clock.t = 2
    line(10, 100, "pgd eps 0.3: 10/100 images")  # within 5 s: not shown
    clock.t = 10
    line(50, 100, "pgd eps 0.3: 50/100 images")
    clock.t = 11
    line(100, 100, "pgd eps 0.3: 100/100 images")  # the last always prints
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[1] == "sspnet attack: pgd eps 0.3: 50/100 images |  50% | elapsed 0:10, left ~0:10"
    assert lines[2].endswith("100% | elapsed 0:11, done")
    assert fmt_seconds(3725) == "1:02:05" and fmt_seconds(59.6) == "1:00"


def test_progress_line_on_a_terminal_redraws_one_line():
    out, clock = io.StringIO(), Clock()
    line = ProgressLine("sspnet growth", stream=out, tty=True, interval=0.5, clock=clock)
    for k in range(5):
        clock.t = k
        line(k, 4)
    text = out.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1 and text.endswith("\n")
    assert text.split("\r")[-1].rstrip() == "sspnet growth: 4/4 | 100% | elapsed 0:04, done"
    line.close()  # nothing left open
    assert out.getvalue() == text


def test_scaled_maps_a_part_into_the_whole():
    calls, cb = recorder()
    part = scaled(cb, 10, 30, "audit 2/3 square: ")
    part(5, 10, "x")
    assert calls == [(15, 30, "audit 2/3 square: x")] and scaled(None, 0, 1) is None


# ---- library callbacks: called with increasing counts, silent by default -----------------------------------------


def test_evaluate_reports_progress_and_is_silent_by_default(capsys):
    from sspnet.eval.robustness import EvalConfig, evaluate

    x, y = data(12)
    cfg = EvalConfig(attack="fgsm,pgd", eps=[0.1], steps=1, batch_size=5, quantize=False)
    calls, cb = recorder()
    r = evaluate(tiny(), x, y, cfg, progress=cb)
    check_counts(calls, 12 * 2)  # images x attacks
    assert calls[-1][2] == "pgd eps 0.1: 12/12 images"
    quiet = evaluate(tiny(), x, y, cfg)
    assert quiet.clean_acc == r.clean_acc
    assert capsys.readouterr() == ("", "")


def test_measure_growth_and_audit_report_progress(capsys):
    from sspnet.eval.growth import GrowthConfig, measure_growth
    from sspnet.eval.masking import AuditConfig, audit

    x, y = data(6)
    calls, cb = recorder()
    measure_growth(tiny(), x, y, GrowthConfig(eps=0.1, alpha=0.05, steps=1, n_images=6, batch_size=2), progress=cb)
    check_counts(calls, 6)
    assert calls[-1][2] == "growth (pgd + sign noise): 6/6 images"
    calls, cb = recorder()
    audit(
        tiny(),
        x,
        y,
        AuditConfig(eps=0.1, steps=1, long_steps=2, queries=5, autoattack=False, batch_size=3),
        progress=cb,
    )
    check_counts(calls, 4 * 6)  # pgd, pgd_long, large_eps, square on 6 images
    assert any(note.startswith("audit 4/4 square: ") for _, _, note in calls)
    assert capsys.readouterr() == ("", "")


def test_autoattack_stages_become_progress_notes():
    from sspnet.attacks.autoattack import _stages

    notes: list[str] = []
    logger = logging.getLogger("auto-attack")
    level = logger.level
    with _stages(notes.append, ["apgd-ce", "apgd-t"], 7):
        logger.debug("running apgd-ce")  # what pyautoattack logs before each attack, verbose or not
        logger.debug("apgd-ce - 1/1 - 3 out of 7 successfully perturbed")
        logger.debug("running apgd-t")
    assert notes == [
        "AutoAttack apgd-ce, apgd-t on 7 images",
        "AutoAttack apgd-ce (1/2)",
        "AutoAttack apgd-t (2/2)",
        "AutoAttack done on 7 images",
    ]
    assert logger.level == level and not any(type(h).__name__ == "_Stages" for h in logger.handlers)
    with _stages(None, ["apgd-ce"], 7):  # no callback: nothing installed
        assert not any(type(h).__name__ == "_Stages" for h in logger.handlers)


# ---- the CLI: progress lines on stderr, --quiet prints none ------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path):
    from sspnet.nn.checkpoints import save_checkpoint

    d = tmp_path / "run"
    d.mkdir()
    save_checkpoint(d / "model_final.pt", tiny())
    return d


def test_attack_cli_prints_progress_on_stderr_and_quiet_silences_it(run_dir, capsys):
    from sspnet.cli import main

    args = [
        "attack",
        str(run_dir),
        "--attack",
        "fgsm,pgd",
        "--eps",
        "0.1",
        "--iters",
        "1",
        "--n-examples",
        "6",
        "--bsize",
        "3",
        "--grid",
        "0",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "sspnet attack: " in err and "pgd eps 0.1: 6/6 images | 100% | elapsed" in err and "done" in err
    assert "elapsed" not in out and "clean       acc" in out  # the summary stays on stdout
    assert main(args + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_growth_cli_prints_progress_writes_a_group_figure_and_quiet(run_dir, capsys):
    from sspnet.cli import main

    args = ["growth", str(run_dir), "--n", "4", "--steps", "1", "--batch-size", "2", "--device", "cpu"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "sspnet growth run: growth (pgd + sign noise): 4/4 images | 100%" in err
    assert (run_dir / "growth_groups.png").read_bytes()[:4] == b"\x89PNG"
    assert main(args + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""


# ---- figures --------------------------------------------------------------------------------------------------------


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_growth_figure_of_one_block_has_an_integer_tick_and_both_markers():
    from sspnet.eval.growth_plots import growth_figure

    fig = growth_figure({"res": {"2": [3.0]}}, baselines={"res": {"2": [1.5]}})
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1"]
    adv, noise = [ln for ln in ax.lines if ln.get_label().startswith("res")]
    assert adv.get_marker() == "o" and noise.get_marker() == "s" and noise.get_linestyle() == "--"
    _close(fig)


def test_depth_plot_marks_group_boundaries():
    from sspnet.eval.growth_plots import group_boundaries, growth_figure

    assert group_boundaries([3, 3, 3]) == ([3.5, 6.5], [(2.0, "group 1"), (5.0, "group 2"), (8.0, "group 3")])
    assert group_boundaries([2]) == ([], []) and group_boundaries(None) == ([], [])
    prof = {"1": [1.0] * 9, "2": [2.0] * 9}
    fig = growth_figure({"ark": prof}, blocks_per_group=[3, 3, 3])
    for ax in fig.axes[:2]:
        assert sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_gid() == "group-boundary") == [3.5, 6.5]
    fig.canvas.draw()
    for ax in fig.axes[:2]:  # the group names above each panel, centred on their blocks
        (top,) = ax.child_axes
        assert [t.get_text() for t in top.get_xticklabels()] == ["group 1", "group 2", "group 3"]
        assert list(top.get_xticks()) == [2.0, 5.0, 8.0]
    _close(fig)
    fig = growth_figure({"ark": {"2": [1.0, 2.0, 3.0]}}, by="group", blocks_per_group=[3, 3, 3])
    assert not [ln for ln in fig.axes[0].lines if ln.get_gid() == "group-boundary"]
    assert list(fig.axes[0].get_xticks()) == [1, 2, 3]
    _close(fig)


def test_sweep_plot_is_in_percent_with_the_worst_case_under_pgd_and_cifar_eps_in_k_255():
    from sspnet.eval.plots import eps_text, sweep_figure

    eps = [2 / 255, 8 / 255]
    fig = sweep_figure(eps, {"pgd": [0.5, 0.2], "fgsm": [0.6, 0.4], "worst case": [0.5, 0.2]}, 0.9, eps_unit=1 / 255)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "accuracy (%)" and ax.get_ylim()[1] > 100
    first, *others = [ln for ln in ax.lines if not ln.get_label().startswith("clean")]
    assert first.get_label() == "worst case (per image)" and first.get_linestyle() == "--"
    pgd = next(ln for ln in others if ln.get_label() == "pgd")
    assert list(pgd.get_ydata()) == [50.0, 20.0] and pgd.get_zorder() > first.get_zorder()
    fgsm = next(ln for ln in others if ln.get_label() == "fgsm")
    assert pgd.get_marker() not in ("", "None") and pgd.get_marker() != fgsm.get_marker()
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2/255", "8/255"] and "k/255" in ax.get_xlabel()
    _close(fig)
    assert eps_text(8 / 255, 1 / 255) == "8/255" and eps_text(0.3) == "0.3" and eps_text(0.0, 1 / 255) == "0"


def test_compare_accuracy_plot_reads_percent_and_k_255():
    from sspnet.experiments.compare.report.plots import accuracy_figure

    fig = accuracy_figure({"res": ([0.0, 4 / 255, 8 / 255], [80.0, 50.0, 30.0], [1.0, 2.0, 3.0])}, eps_unit=1 / 255)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_ylabel() == "PGD accuracy (%)" and ax.get_ylim() == (0, 100)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "4/255", "8/255"]
    _close(fig)


def test_growth_caption_names_attack_and_eps_in_the_datasets_unit():
    from sspnet.eval.growth_plots import growth_caption
    from sspnet.eval.growth_results import GrowthProfile, GrowthResult

    def result(dataset, eps):
        return GrowthResult(
            label="m",
            dataset=dataset,
            n=500,
            ps=["2"],
            adversary={"name": "pgd", "eps": eps, "steps": 20},
            noise={"kind": "sign", "eps": eps},
            adversarial=GrowthProfile(groups={"2": [2.0]}, blocks={"2": [2.0]}),
            baseline=None,
        )

    assert (
        growth_caption([result("cifar10", 8 / 255)])
        == "PGD-20 at eps 8/255 (L∞) vs sign noise of the same eps, 500 images"
    )
    assert growth_caption([result("mnist", 0.3)]).startswith("PGD-20 at eps 0.3 (L∞)")


# ---- REPORT.md -----------------------------------------------------------------------------------------------------


def test_report_names_a_scheme_file_by_its_stem(tmp_path):
    from sspnet.experiments.compare.analysis.findings import short_name
    from sspnet.experiments.compare.report.tables import model_label

    path = tmp_path / "deep" / "ralston.yaml"
    path.parent.mkdir()
    path.write_text('name: ralston\nA: [[0, 0], ["2/3", 0]]\nb: ["1/4", "3/4"]\norder: 2\n')
    assert model_label(str(path)) == "ralston" and short_name(str(path)) == "ralston"
    assert model_label("ark") == "SSP-adap (ark)" and short_name("ssp2") == "ssp2"


def test_f_calls_are_written_unambiguously():
    from sspnet.experiments.compare.report.tables import f_calls_text

    assert f_calls_text([2, 2, 1, 1, 2, 2], [2, 2, 2]) == "2, 1, 2 per group"  # SSP-adap on CIFAR-10
    assert f_calls_text([2, 2]) == "2" and f_calls_text([]) == "-"
    assert f_calls_text([1, 2, 1], [3]) == "1 and 2 by block"
    model = sspnet.create_model("ark", dataset="cifar10", blocks=1)
    assert f_calls_text(model.f_calls_per_block, [len(g) for g in model.groups]) == "2, 1, 2 per group"


def test_report_warns_about_a_model_at_chance():
    from sspnet.experiments.compare.analysis.findings import at_chance, findings

    def rec(model, seed, clean):
        return {"model": model, "seed": seed, "variant": "", "eval": {"clean": clean}, "growth": {"dataset": "mnist5k"}}

    records = [rec("res", 0, 97.0), rec("ssp2", 0, 11.0), rec("ssp2", 1, 13.0)]
    found = at_chance(records)
    assert [(d["model"], d["clean"], d["chance"]) for d in found] == [("ssp2", 12.0, 10.0)]
    text = "\n".join(findings({"rows": []}, records, 2, 100))
    assert "WARNING: a model is at chance accuracy (ssp2: clean 12.0% (mean of 2 run(s)), chance 10.0%)" in text
    assert not at_chance([rec("res", 0, 16.0)])


def test_report_sweep_table_reads_cifar_eps_in_k_255():
    from types import SimpleNamespace

    from sspnet.experiments.compare.report.tables import sweep_table

    rows = {"res": {"n": 2, "sweep": {"0.0": (80.0, 1.0), str(8 / 255): (30.0, 2.0)}}}
    ev = SimpleNamespace(steps=10, sweep_images=300)
    assert "| model | eps 0 | eps 8/255 |" in sweep_table(rows, ev, 1 / 255)
    assert "| model | eps 0 | eps 0.03137 |" in sweep_table(rows, ev)
