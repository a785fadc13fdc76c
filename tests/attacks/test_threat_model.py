"""The threat model: one ThreatModel in every config (flat keys still taken), one default step rule, one table
of defaults, the attack registry, the training adversary's threat model, and the passes the estimate counts
coming from the code that runs them. Compare's hashes are pinned to the values before the refactor."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from sspnet.attacks import (
    ATTACKS,
    DEFAULTS,
    FGSM,
    PGD,
    Attack,
    AttackEntry,
    FastFGSM,
    NoiseBall,
    ThreatModel,
    attack_names,
    dataset_threat,
    default_step,
    get_attack,
    help_default,
    make_attack,
    register_attack,
)
from sspnet.attacks.registry import REGISTRY, AttackOptions
from sspnet.eval import AuditConfig, EvalConfig, GrowthConfig
from sspnet.experiments.compare import CompareConfig, EvalSettings, make_plan
from sspnet.experiments.compare.config import PRESETS, preset_help, preset_value

CONFIGS = (EvalConfig, AuditConfig, GrowthConfig, EvalSettings)

# Compatibility fixture: `make_plan(CompareConfig(preset=P, out=DIR))` and `plan_audits(...)` run once on the
# code at commit e2dce45 (before the threat model was one field), printing the run folder names, the evaluation
# hash and the first audit keys. The same presets must plan the same runs, so cached runs stay cached. The
# evaluation hash and the audit keys were taken again when compare's record version became 3 (the Lipschitz
# bounds beside the growth): a trained run is then evaluated and audited again, never trained again.
HEAD_PLANS = {
    "default": {
        "eval_hash": "7a2e8b59b307864d",
        "runs": [
            "res-s0-ed352bd3",
            "res-s1-952378fc",
            "res-s2-559b6b7f",
            "ssp2-s0-7f5b05e0",
            "ssp2-s1-0dae08c9",
            "ssp2-s2-68612cd9",
        ],
        "audit_keys": ["782eed0c9c771745", "6fa93251b3a9cd45", "14896533c1b31d68"],
    },
    "paper-mnist": {
        "eval_hash": "e1535eecb690635e",
        "runs": ["res-s0-13febf14", "res-s1-389b0fde"],
        "audit_keys": ["52abd77a9337b4b1", "5dfef3dab5ecc4cf", "edfe3aa8ac262566"],
    },
    "paper-cifar10": {
        "eval_hash": "ad9b569441d75d20",
        "runs": ["N6-K7-res-s0-d1032173", "N6-K7-res-s1-f84c098b"],
        "audit_keys": ["0a6f2b86b430290a", "c20a4e3b1e922501", "ad6a23c950619892"],
    },
    "cpu-hour": {
        "eval_hash": "83da6a27085a8e76",
        "runs": ["res-s0-ed352bd3", "res-s3-dd12a7e1"],
        "audit_keys": ["807a3f7caf3286c0", "d2900e1c65337eb2", "4a03ed30efbebb83"],
    },
}


@pytest.mark.parametrize("preset", list(HEAD_PLANS))
def test_presets_plan_the_runs_and_hashes_of_before(tmp_path, preset):
    from sspnet.experiments.compare.work.audit import plan_audits

    plan, ctx = make_plan(CompareConfig(preset=preset, out=str(tmp_path)))
    want = HEAD_PLANS[preset]
    names = [r.run_dir.name for r in plan]
    assert ctx.eval_hash == want["eval_hash"]
    assert set(want["runs"]) <= set(names) and (preset != "default" or names == want["runs"])
    keys = [j.key for j in plan_audits(plan, ctx.eval_hash, ctx.eval)]
    assert keys[:3] == want["audit_keys"]
    assert "threat" not in ctx.eval.key() and "norm" not in ctx.eval.key()


def linear_model() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1, 1, -1], [-1.0, 1, -1, 1]]))
    return model


def test_make_attack_default_step_is_the_threat_models_with_the_8bit_floor():
    """make_attack's own eps / 4 ignored the quantised-linf floor: at eps 2/255 its step of half a level rounds
    back and PGD never reaches the optimum eps * sign(w_1 - w_0) of a linear model; the one rule does."""
    model, eps = linear_model(), 2 / 255
    x, y = torch.full((1, 1, 2, 2), 128 / 255), torch.tensor([0])
    attack = make_attack("pgd", model, eps, steps=10, quantize=True)
    assert attack.alpha == ThreatModel(eps=eps).step() == default_step(eps, quantize=True) == 1 / 255
    optimum = x + eps * torch.tensor([-1.0, 1, -1, 1]).view(1, 1, 2, 2)
    assert torch.allclose(attack(x, y), optimum, atol=1e-6)
    old = PGD(model, eps, eps / 4, 10, quantize=True)(x, y)  # the old default
    assert not torch.allclose(old, optimum, atol=1e-6)
    assert make_attack("pgd", model, 0.2).alpha == pytest.approx(0.05)  # unrounded: eps / 4 as before
    assert make_attack("fastfgsm", model, 0.2).alpha == pytest.approx(1.25 * 0.2)  # FastFGSM's own rule


def test_compare_alpha_is_the_one_step_rule_and_l2_is_refused():
    """compare's copy raised alpha to 1/255 whenever quantize was on, even for l2; the rule raises it for
    quantised linf only. compare (linf only) computes the same alphas as before."""
    for eps in (0.2, 0.3, 2 / 255, 8 / 255, 0.5 / 255 * 4):
        ev = EvalSettings(eps=eps).resolve("mnist5k")
        assert ev.alpha == ThreatModel(eps=eps, steps=10).step() == max(eps * 0.25, 1 / 255)
    assert EvalSettings(eps=0.01, quantize=False).resolve("mnist5k").alpha == 0.01 * 0.25
    assert ThreatModel(norm="l2", eps=0.002).step() == pytest.approx(0.0005)  # the old compare copy: 1/255
    with pytest.raises(ValueError, match="compare evaluates linf threat models only"):
        EvalSettings(eps=0.5, norm="l2").resolve("mnist5k")
    with pytest.raises(ValueError, match="random points exactly when it restarts"):
        EvalSettings.from_dict({"random_start": True})
    ev = EvalSettings(restarts=1).resolve("mnist5k")
    assert ev.random_start is False and EvalSettings().resolve("mnist5k").random_start is True


@pytest.mark.parametrize("cls", CONFIGS)
def test_configs_take_the_threat_models_fields_flat_and_round_trip(cls):
    default = cls().threat
    flat = cls(steps=7, alpha=0.02, quantize=False)
    assert flat.threat == dataclasses.replace(default, steps=7, alpha=0.02, quantize=False)
    assert flat == cls(threat=dataclasses.replace(default, steps=7, alpha=0.02, quantize=False))
    assert (flat.steps, flat.alpha, flat.quantize) == (7, 0.02, False)
    flat.steps = 9  # assigning a flat field replaces the threat model
    assert flat.threat.steps == 9 and dataclasses.replace(flat, restarts=3).threat.restarts == 3
    d = flat.to_dict()
    assert "threat" not in d and d["steps"] == 9 and d["alpha"] == 0.02
    assert cls.from_dict(d).to_dict() == d and cls.from_dict(d).threat == flat.threat  # (JSON: tuples as lists)
    assert cls.from_dict({"threat": {"steps": 4}}).steps == 4
    with pytest.raises(ValueError, match=r"unknown .*'stpes'; valid .*steps"):
        cls.from_dict({"stpes": 3})


def test_old_flat_config_dicts_load():
    """JSON written before the threat model was one field (EvalResult.config, an audit's config)."""
    old_eval = {
        "attack": "fgsm,pgd",
        "norm": "linf",
        "eps": [0.1, 0.2],
        "alpha": None,
        "alpha_rel": 0.25,
        "steps": 10,
        "restarts": 1,
        "copies": 10,
        "random_start": False,
        "batch_size": 100,
        "n_images": None,
        "subset_seed": 0,
        "device": None,
        "quantize": True,
        "seed": 0,
        "keep_adv": None,
        "keep_attack": "worst",
        "eps_unit": 1.0,
        "early_stop": None,
        "queries": 5000,
    }
    cfg = EvalConfig.from_dict(old_eval)
    assert cfg.to_dict() == {**old_eval, "eps": [0.1, 0.2]} and cfg.validated().threat.eps == 0.1
    assert [cfg.alpha_for(e) for e in (0.1, 0.2)] == [0.025, 0.05]
    audit = AuditConfig.from_dict(
        {"eps": 0.1, "alpha": 0.02, "steps": 10, "long_steps": None, "norm": "linf", "quantize": True, "queries": 1000}
    )
    assert audit.validated().long_steps == 40 and audit.threat.alpha == 0.02


def test_defaults_come_from_one_table_and_sweep_images_has_one():
    for cls, use in (
        (EvalConfig, "evaluate"),
        (AuditConfig, "audit"),
        (GrowthConfig, "growth"),
        (EvalSettings, "compare"),
    ):
        d, cfg = DEFAULTS[use], cls()
        assert (cfg.threat, cfg.batch_size, cfg.n_images) == (d.threat, d.batch_size, d.n_images), use
    assert EvalSettings.from_dict(PRESETS["default"]["eval"]) == EvalSettings(eps=0.2)  # the rest: defaults
    assert EvalSettings().sweep_images == preset_value("default", "sweep_images") == 300
    assert help_default(EvalSettings, "sweep_images") == "default 300"
    assert preset_help("sweep_images") == "default 300; paper-mnist, paper-cifar10 1000; cpu-hour 500; three-groups 200"
    assert preset_help("steps") == "default 10; paper-mnist, paper-cifar10 20"
    assert preset_help("eps") == "default 0.2; paper-mnist 0.3; paper-cifar10 8; three-groups 0.1"  # CLI units
    assert help_default(EvalConfig, "steps") == "default 20" and help_default("growth", "n_images") == "default 500"
    assert (
        help_default(AuditConfig, "quantize") == "default on" and help_default(EvalConfig(), "copies") == "default 10"
    )
    assert help_default({"eps": 8 / 255}, "eps", unit=1 / 255) == "default 8"
    with pytest.raises(ValueError, match="EvalConfig has no option 'stepz'; options: .*steps"):
        help_default(EvalConfig, "stepz")


def test_registry_builds_every_attack_by_its_one_name():
    model = linear_model()
    for name in attack_names():
        entry = get_attack(name)
        if name in ("autoattack", "square"):
            pytest.importorskip("pyautoattack")
        attack = entry.build(model, 0.1, AttackOptions())
        assert isinstance(attack, Attack) and attack.name == name == entry.name
    assert ATTACKS == attack_names(evaluates=True) == ("fgsm", "pgd", "ball", "autoattack", "square")
    assert get_attack("fast") is get_attack("FastFGSM") is get_attack("fastfgsm")
    assert type(make_attack("fast", model, 0.1)) is FastFGSM
    with pytest.raises(
        ValueError, match="unknown attack 'cw'; valid attacks: fgsm, pgd, ball, autoattack, square, fastfgsm"
    ):
        make_attack("cw", model, 0.1)
    with pytest.raises(ValueError, match="valid attacks: fgsm, pgd, ball, autoattack, square, all"):
        EvalConfig(attack="fastfgsm").attack_names()  # a training adversary, not an evaluation attack


def test_a_registered_attack_reaches_make_attack_and_evaluate(monkeypatch):
    monkeypatch.setitem(REGISTRY, "noise2", AttackEntry("noise2", lambda m, e, o: NoiseBall(m, e, 2, norm=o.norm)))
    assert isinstance(make_attack("noise2", linear_model(), 0.1), NoiseBall)
    assert EvalConfig(attack="pgd,noise2").attack_names() == ["pgd", "noise2"]
    with pytest.raises(ValueError, match="already registered"):
        register_attack(AttackEntry("pgd", lambda m, e, o: FGSM(m, e)))


def test_training_adversary_threat_model_and_its_attack():
    from sspnet.train import TrainConfig
    from sspnet.train.step import Adversary

    pgd = TrainConfig(dataset="cifar10", adv="pgd").threat()
    assert pgd == dataset_threat("cifar10") == ThreatModel(eps=8 / 255, alpha=2 / 255, steps=7, random_start=True)
    assert TrainConfig(adv="none").threat() is None
    fast = TrainConfig(dataset="mnist5k", adv="fast", eps=0.2, alpha=0.05, train_quantize=False).threat()
    assert fast.step() == 1.25 * 0.2 and fast.steps == 1 and fast.quantize is False  # alpha is pgd's only
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 10))
    for adv, cls in (("pgd", PGD), ("fgsm", FGSM), ("fast", FastFGSM)):
        threat = TrainConfig(dataset="mnist5k", adv=adv, eps=0.2, alpha=0.05, steps=3).threat()
        attack = Adversary(adv, model, threat).attack
        assert type(attack) is cls and attack.mode == "keep" and attack.eps == 0.2 and attack.quantize is True
        assert (attack.alpha, attack.steps, attack.random_start) == {
            "pgd": (0.05, 3, True),
            "fgsm": (0.2, 1, False),
            "fast": (0.25, 1, True),
        }[adv]


def test_growth_takes_the_datasets_training_threat_model():
    assert GrowthConfig().resolved("cifar10") == dataclasses.replace(
        dataset_threat("cifar10"), random_start=False, steps=20
    )
    t = GrowthConfig(eps=0.1).resolved("mnist")
    assert (t.eps, t.alpha) == (0.1, 0.05)  # a given eps keeps the training step
    with pytest.raises(ValueError, match="growth perturbs in linf"):
        GrowthConfig(norm="l2").validate()


def test_the_estimate_counts_the_audit_runs_the_audit_runs(monkeypatch):
    """estimate's audit passes come from AuditConfig.runs: the long PGD's steps follow AuditConfig's rule
    (LONG_STEPS_FACTOR), not a copy of it."""
    import sspnet.eval.masking as masking
    from sspnet.experiments.compare.plan.estimate import audit_passes

    ev = EvalSettings(eps=0.2, steps=2, audit_images=10, audit_queries=30, n_images=100).resolve("mnist5k")
    p, _ = audit_passes(ev, 1000, False, False)
    assert p.attack == 10 * (2 + 8 + 2)  # PGD-2, PGD-8 (4 x 2), large-eps PGD-2
    monkeypatch.setattr(masking, "LONG_STEPS_FACTOR", 3)
    assert audit_passes(ev, 1000, False, False)[0].attack == 10 * (2 + 6 + 2)
    cfg = ev.audit_config().validated()
    assert list(cfg.runs(0.5, transfer=True)) == ["pgd", "pgd_long", "large_eps", "square", "transfer"]
    assert (cfg.steps, cfg.long_steps, cfg.restarts, cfg.random_start) == (2, 6, 1, False)


def test_the_audit_runs_what_its_config_lists():
    from sspnet.eval import audit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    images, labels = torch.rand(6, 1, 4, 4), torch.arange(6)
    cfg = AuditConfig(eps=0.1, steps=1, queries=5, autoattack=False, batch_size=3)
    r = audit(model, images, labels, cfg, source_model=model)
    assert list(r.timings) == list(cfg.validated().runs(0.5, transfer=True))
    assert r.config["long_steps"] == 4 and r.config["steps"] == 1 and "threat" not in r.config
