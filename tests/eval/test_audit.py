"""The gradient-masking audit (`sspnet.eval.audit`) and `sspnet attack --audit / --transfer-from`: masked models
are flagged, an ordinary model is not."""

from __future__ import annotations

import json

import pytest
import torch
from eval_models import Rounded, ScaledLogits, trained_stand_in

import sspnet
from sspnet.cli import main
from sspnet.data.subsets import subset_indices
from sspnet.eval import AuditConfig, AuditResult, audit

pytestmark = pytest.mark.usefixtures("one_thread")
MASKING = {
    "zero_input_gradients",
    "square_beats_pgd",
    "transfer_beats_pgd",
    "high_acc_at_large_eps",
    "pgd_steps_no_effect",
}


@pytest.fixture(scope="module")
def mnist():
    from sspnet.data import load

    return load("mnist5k", split="test")


@pytest.fixture(scope="module")
def ordinary():
    return trained_stand_in(0)


@pytest.fixture(scope="module")
def other():
    return trained_stand_in(1)


def names(result: AuditResult) -> set[str]:
    return {f["flag"] for f in result.flags}


def test_an_ordinary_model_raises_no_flag(ordinary, other, mnist):
    images, labels = mnist
    idx = subset_indices(labels, 100)
    r = audit(ordinary, images, labels, AuditConfig(eps=0.1, steps=10, queries=500), indices=idx, source_model=other)
    assert r.flags == [], r.flags
    acc = r.accuracy
    assert acc["clean"] > 0.8 and 0.2 < acc["pgd"] < acc["clean"]  # an eps where PGD has work to do
    assert acc["pgd_long"] <= acc["pgd"] and acc["white_box"] == acc["pgd_long"]
    assert acc["large_eps"] <= 0.1 and acc["autoattack"] <= acc["white_box"] + 1e-9
    assert acc["square"] >= acc["white_box"] - 0.01 and acc["transfer"] >= acc["white_box"] - 0.01
    assert r.details["loss_gain"]["attacked"] > r.details["loss_gain"]["clean"]
    assert r.n == 100 and torch.equal(r.indices, idx) and r.source
    for key, ok in r.correct.items():
        assert ok.dtype == torch.bool and ok.shape == (100,), key
        assert float(ok.float().mean()) == pytest.approx(acc[key])
    record = json.loads(json.dumps(r.to_dict()))
    assert record["correct"]["square"] == r.correct["square"].tolist() and record["indices"] == idx.tolist()


def test_logit_scaling_masks_the_gradient_and_is_flagged(ordinary, mnist):
    images, labels = mnist
    r = audit(
        ScaledLogits(ordinary),
        images,
        labels,
        AuditConfig(eps=0.1, steps=5, queries=300, n_images=60),
        source_model=ordinary,
    )
    assert MASKING | {"autoattack_below_pgd"} <= names(r), r.flags
    assert r.accuracy["pgd"] == r.accuracy["clean"]  # PGD is blind: the cross-entropy gradient is exactly 0
    assert r.accuracy["transfer"] < r.accuracy["pgd"] - 0.2 and r.accuracy["autoattack"] < r.accuracy["pgd"] - 0.2
    assert all(f["name"] == f["flag"] and f["message"] for f in r.flags)


def test_input_rounding_masks_the_gradient_and_is_flagged(ordinary, mnist):
    """Straight rounding in front of an ordinary model: every gradient is 0. AutoAttack's own checks come first."""
    images, labels = mnist
    r = audit(
        Rounded(ordinary),
        images,
        labels,
        AuditConfig(eps=0.15, steps=4, queries=300, n_images=40),
        source_model=ordinary,
    )
    flags = [f["flag"] for f in r.flags]
    assert MASKING | {"autoattack_zero_gradients", "autoattack_below_pgd"} <= set(flags), flags
    assert flags[0].startswith("autoattack_")
    assert r.accuracy["square"] < r.accuracy["white_box"] - 0.3


def test_without_source_or_autoattack_those_parts_are_skipped(ordinary, mnist):
    images, labels = mnist
    r = audit(
        Rounded(ordinary), images, labels, AuditConfig(eps=0.15, steps=2, queries=200, autoattack=False, n_images=30)
    )
    assert "transfer" not in r.correct and "autoattack" not in r.correct and not r.source
    assert {"square_beats_pgd", "pgd_steps_no_effect"} <= names(r)
    assert not names(r) & {"transfer_beats_pgd", "autoattack_below_pgd"}


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"eps": 0.0}, "eps > 0"),
        ({"eps": 0.5 / 255}, "below one 8-bit level"),
        ({"alpha": 0.3 / 255}, "below half an 8-bit level"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"steps": 10, "long_steps": 10}, "long_steps must be an integer >= 11"),
        ({"queries": 0}, "queries"),
        ({"tolerance": 1.0}, "tolerance"),
        ({"large_eps": 0.01}, "large_eps must be >= eps"),
        ({"norm": "l1"}, "valid norms"),
    ],
)
def test_config_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        AuditConfig(**kw).validated()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit-run")
    for name, seed in (("target", 0), ("source", 1)):
        sspnet.save_checkpoint(
            folder / name / "model_final.pt", sspnet.create_model("res", dataset="mnist5k", blocks=1, seed=seed)
        )
    return folder


def test_cli_audit_with_transfer_writes_json(runs, capsys):
    rc = main(
        [
            "attack",
            str(runs / "target"),
            "--eps",
            "0.2",
            "--iters",
            "2",
            "--n-examples",
            "8",
            "--device",
            "cpu",
            "--transfer-from",
            str(runs / "source"),
            "--queries",
            "20",
            "--no-audit-autoattack",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "gradient-masking audit (8 images, eps 0.2)" in out
    data = json.loads((runs / "target" / "attack_audit_0.2.json").read_text())
    assert data["transfer_from"] == str(runs / "source") and data["source"] is True and data["n"] == 8
    main_eval = json.loads((runs / "target" / "attack_pgd_0.2.json").read_text())
    assert data["indices"] == main_eval["subset"]["indices"]  # the same images as the evaluation
    assert set(data["correct"]) == {"clean", "pgd", "pgd_long", "large_eps", "square", "transfer", "white_box"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eps", "0.1", "0.2", "--audit"], "--audit runs at one eps"),
        (["--eps", "0.1", "--transfer-from", "/nonexistent/run"], "no checkpoint or run folder"),
        (["--queries", "0"], "--queries must be >= 1"),
    ],
)
def test_cli_audit_bad_input_exit_2(runs, capsys, extra, message):
    assert main(["attack", str(runs / "target"), "--n-examples", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sspnet attack: error:") and message in err


def test_autoattack_margin_is_counted_in_images_not_float_accuracies():
    """91 vs 89 of 100 images is exactly the 2-point margin: no flag (0.91 - 0.89 > 0.02 in floats); 91 vs 88
    flags."""
    from sspnet.eval.masking import AuditConfig, _audit_flags

    white = torch.zeros(100, dtype=torch.bool)
    white[:91] = True
    for n_aa, flagged in ((89, False), (88, True)):
        aa = torch.zeros(100, dtype=torch.bool)
        aa[:n_aa] = True
        acc = {"white_box": 0.91, "autoattack": n_aa / 100}
        flags = _audit_flags(AuditConfig(eps=0.2), {"white_box": white, "autoattack": aa}, acc, {"loss_gain": None})
        assert ("autoattack_below_pgd" in {f["flag"] for f in flags}) is flagged
