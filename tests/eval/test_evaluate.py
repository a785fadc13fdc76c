"""Robustness evaluation library and the `sspnet attack` CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from eval_models import stand_in
from torch import nn

import sspnet
from sspnet.cli import main
from sspnet.data.subsets import subset_indices
from sspnet.eval.flags import sanity_flags
from sspnet.eval.results import AttackStats, EpsResult, EvalResult, sweep_table
from sspnet.eval.robustness import EvalConfig, evaluate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mnist5k_test():
    from sspnet.data import load

    return load("mnist5k", split="test")


@pytest.fixture(scope="module")
def trained(mnist5k_test):
    """A small CNN trained on the mnist5k train split with plain SGD (a few seconds on one core)."""
    from sspnet.data import load

    x, y = load("mnist5k", split="train")
    model = stand_in(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        loss = F.cross_entropy(model(x[idx].float() / 255), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_trained_model_robustness_is_consistent(trained, mnist5k_test):
    images, labels = mnist5k_test
    eps = [0.0, 0.05, 0.1, 0.2, 0.3]
    cfg = EvalConfig(attack="all", eps=eps, steps=10, n_images=300, batch_size=128)  # alpha = eps / 4
    r = evaluate(trained, images, labels, cfg)
    assert r.n == 300 and r.clean_acc > 0.8
    accs = [x.worst.acc for x in r.results]
    assert accs[0] == pytest.approx(r.clean_acc)  # eps = 0
    for res in r.results:
        a = res.attacks
        assert res.worst.acc <= r.clean_acc
        assert a["pgd"].acc <= a["fgsm"].acc
        assert res.worst.acc <= min(x.acc for x in a.values())
        assert a["pgd"].linf_max <= res.eps + 1e-6 and a["ball"].linf_max <= res.eps + 1e-6
        assert sum(res.worst_source.values()) == 300
    assert all(b <= a for a, b in zip(accs, accs[1:]))  # non-increasing in eps
    assert accs[-1] < 0.5 * r.clean_acc
    assert not [f for f in r.flags if f["flag"] in ("pgd_weaker_than_fgsm", "acc_not_decreasing")]
    json.loads(json.dumps(r.to_dict()))
    assert r.adversarial["eps4"].shape == (300, 1, 28, 28)
    assert torch.equal(r.adversarial["index"], subset_indices(labels, 300))


def test_eps_zero_equals_clean_and_results_are_per_sample(mnist5k_test):
    images, labels = mnist5k_test
    model = stand_in(1).eval()
    r = evaluate(model, images, labels, EvalConfig(attack="fgsm,pgd", eps=[0.0], steps=2, n_images=50))
    with torch.no_grad():
        x = images[subset_indices(labels, 50)].float() / 255
        out = model(x)
    y = labels[subset_indices(labels, 50)]
    assert r.clean_acc == pytest.approx(float((out.argmax(1) == y).float().mean()))
    assert r.clean_loss == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
    assert r.results[0].attacks["pgd"].acc == r.clean_acc
    assert r.results[0].attacks["pgd"].l2_max == 0
    assert torch.equal(r.per_sample["clean/pred"].long(), out.argmax(1))


def sorted_split(n_per_class=20, classes=10, seed=0):
    """Random images with labels sorted by class (as the mnist5k test split): a prefix holds one class only."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return torch.randint(0, 256, (len(labels), 1, 28, 28), generator=g, dtype=torch.uint8), labels


def test_n_images_is_stratified_nested_and_recorded():
    images, labels = sorted_split()
    model = stand_in(3).eval()
    small = evaluate(model, images, labels, EvalConfig(attack="fgsm", eps=[0.1], n_images=10))
    large = evaluate(model, images, labels, EvalConfig(attack="fgsm", eps=[0.1], n_images=30))
    assert small.subset["per_class"] == [1] * 10 and large.subset["per_class"] == [3] * 10
    assert set(small.indices.tolist()) <= set(large.indices.tolist())
    assert small.subset["indices"] == small.indices.tolist() == sorted(small.indices.tolist())
    assert small.subset["rule"] == "stratified-v1" and small.subset["seed"] == 0 and small.subset["n"] == 10
    assert json.loads(json.dumps(small.to_dict()))["subset"] == small.subset
    assert torch.equal(small.per_sample["label"], labels[small.indices])


def test_explicit_indices():
    images, labels = sorted_split()
    model = stand_in(3).eval()
    r = evaluate(model, images, labels, EvalConfig(attack="fgsm", eps=[0.1]), indices=[150, 3, 77])
    assert r.indices.tolist() == [3, 77, 150] and r.n == 3 and r.subset["rule"] == "given"
    same = evaluate(model, images, labels, EvalConfig(attack="fgsm", eps=[0.1]), indices=subset_indices(labels, 12))
    assert same.subset["rule"] == "stratified-v1"
    for kw, message in (
        ({"indices": [1, 1]}, "repeat"),
        ({"indices": [200]}, "lie in"),
        ({"indices": [0.5]}, "integer"),
    ):
        with pytest.raises(ValueError, match=message):
            evaluate(model, images, labels, EvalConfig(attack="fgsm", eps=[0.1]), **kw)
    with pytest.raises(ValueError, match="not both"):
        evaluate(model, images, labels, EvalConfig(attack="fgsm", eps=[0.1], n_images=5), indices=[1, 2])


def test_correct_matches_reported_accuracy(mnist5k_test):
    images, labels = mnist5k_test
    model = stand_in(4).eval()
    eps = [0.05, 0.2]
    r = evaluate(
        model,
        images,
        labels,
        EvalConfig(attack="fgsm,pgd,ball", eps=eps, steps=3, copies=2, n_images=60, batch_size=25),
    )
    assert r.correct("clean").dtype == torch.bool
    assert r.accuracy("clean") == r.clean_acc == float(r.correct("clean").float().mean())
    for e in eps:
        res = r.at(e)
        for name in ("fgsm", "pgd", "ball"):
            assert float(r.correct(name, e).float().mean()) == res.attacks[name].acc
        assert r.accuracy("worst", e) == res.worst.acc
        worst_ok = r.correct("worst", e)
        assert torch.equal(worst_ok, r.correct("fgsm", e) & r.correct("pgd", e) & r.correct("ball", e))
    sub = subset_indices(labels, 20)  # nested: inside the 60
    assert torch.equal(r.correct("pgd", 0.2, indices=sub), r.correct("pgd", 0.2)[torch.isin(r.indices, sub)])
    with pytest.raises(ValueError, match="not evaluated"):
        r.correct("pgd", 0.1)
    with pytest.raises(ValueError, match="pass eps"):
        r.correct("pgd")
    with pytest.raises(ValueError, match="was not evaluated"):
        r.correct("autoattack", 0.2)


@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_keep_adv_of_a_named_attack_equals_that_attack_alone(mnist5k_test, name):
    from sspnet.attacks import make_attack

    images, labels = mnist5k_test
    model = stand_in(5).eval()
    cfg = EvalConfig(
        attack="fgsm,pgd,ball", eps=[0.1, 0.2], steps=4, copies=2, n_images=40, batch_size=16, keep_attack=name
    )
    r = evaluate(model, images, labels, cfg)
    worst = evaluate(model, images, labels, dataclasses.replace(cfg, keep_attack="worst"))
    assert torch.equal(r.adversarial["index"], r.indices)
    x, y = images[r.indices].float() / 255, labels[r.indices]
    for e in cfg.eps:
        attack = make_attack(name, model, e, alpha=cfg.alpha_for(e), steps=4, quantize=True)
        alone = torch.cat([attack(x[s : s + 16], y[s : s + 16]) for s in range(0, 40, 16)])
        assert torch.equal(r.adversarial_images(e), alone)
        assert torch.equal(r.adversarial_images(e, r.indices[[3, 17, 30]]), alone[[3, 17, 30]])
        with torch.no_grad():
            assert torch.equal(model(alone).argmax(1) == y, r.correct(name, e))
        if name == "fgsm":  # here PGD is the worst case of every image: the kept images must not be those
            assert not torch.equal(worst.adversarial_images(e), alone)
    info = r.attack_info(name, 0.2)
    assert info["name"] == name and info["eps"] == 0.2 and info["quantize"] is True
    first = evaluate(model, images, labels, dataclasses.replace(cfg, keep_adv=5))
    assert first.adversarial["eps0"].shape[0] == 5 and torch.equal(first.adversarial["index"], first.indices[:5])
    with pytest.raises(ValueError, match="not in the kept"):
        first.adversarial_images(0.1, first.indices[5:6])


def test_model_mode_restored_and_float_input_accepted():
    model = stand_in(2).train()
    x = torch.rand(20, 1, 28, 28)
    y = torch.randint(0, 10, (20,))
    r = evaluate(model, x, y, EvalConfig(attack="ball", eps=[0.1], copies=2, batch_size=7))
    assert model.training and r.n == 20
    assert r.results[0].attacks["ball"].linf_max <= 0.1 + 1e-6


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"eps": [-0.1]}, "eps must be a finite number >= 0"),
        ({"eps": [1.5]}, "beyond the pixel range"),
        ({"eps": []}, "at least one value"),
        ({"alpha": 0.0}, "alpha must be a finite number > 0"),
        ({"steps": -1}, "steps must be an integer >= 0"),
        ({"batch_size": 0}, "batch_size"),
        ({"attack": "cw"}, "valid attacks"),
        ({"norm": "l1"}, "valid norms"),
        ({"n_images": 0}, "n_images"),
        ({"keep_attack": "ball"}, "keep_attack must be 'worst' or one of the attacks run"),
        (
            {"eps": [0.03 / 255]},
            r"below one 8-bit level.*smallest eps that moves a pixel is 1/255 = 0.003922.*"
            "quantize=False",
        ),
        ({"eps": [0.1, 0.003]}, "eps=0.003 .* below one 8-bit level"),
        ({"eps": [0.003], "norm": "l2"}, "below one 8-bit level"),
        ({"queries": 0}, "queries must be an integer >= 1"),
        ({"alpha": 0.4 / 255}, "alpha=0.001569 .* below half an 8-bit level"),
    ],
)
def test_config_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(**kw).validated()


def test_sub_quantum_eps_is_refused_only_with_rounding_on():
    for eps in (0.0, 1 / 255, 0.9995 / 255, 8 / 255):  # 0 is the clean evaluation; 1/255 moves a pixel
        EvalConfig(eps=[eps]).validated()
    EvalConfig(eps=[0.03 / 255], quantize=False).validated()
    EvalConfig(eps=[0.003], norm="l2", quantize=False).validated()
    EvalConfig(eps=[0.1], alpha=0.4 / 255, quantize=False).validated()
    EvalConfig(eps=[0.1], alpha=0.6 / 255).validated()  # rounds to one level per step
    with pytest.raises(ValueError, match="below one 8-bit level"):
        evaluate(stand_in(0), torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), EvalConfig(eps=[0.001]))


def test_cli_warns_when_the_checkpoint_was_selected_on_the_test_set(run_dir, capsys):
    assert (
        main(
            [
                "attack",
                str(run_dir),
                "--crit",
                "acc",
                "--attack",
                "fgsm",
                "--eps",
                "0.1",
                "--n-examples",
                "4",
                "--device",
                "cpu",
                "--grid",
                "0",
                "--out",
                str(run_dir / "acc"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "checkpoint: model_acc.pt (best on the TEST set by acc)" in out and "optimistically biased" in out


def test_cli_refuses_sub_quantum_eps_in_cifar_units(tmp_path, capsys):
    """--eps 0.03 on CIFAR-10 (unit 1/255) moved no pixel and reported no flag; now it is an error naming 1."""
    sspnet.save_checkpoint(tmp_path / "model_final.pt", sspnet.create_model("res", dataset="cifar10", blocks=1))
    assert main(["attack", str(tmp_path), "--eps", "0.03", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sspnet attack: error: --eps 0.03 is below one 8-bit level")
    assert "the smallest eps that moves one is 1 (1/255) for cifar10" in err and "--no-quantize" in err


def test_empty_set_and_wrong_labels_raise():
    model = stand_in(0)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), EvalConfig())
    with pytest.raises(ValueError, match="classes"):
        evaluate(model, torch.zeros(2, 1, 28, 28), torch.tensor([3, 12]), EvalConfig(eps=[0.1], steps=1))


def _stats(name, acc):
    return AttackStats(name, acc, 1.0, 0, 0, 0, 0, 0, 0, 0.0)


def _result(rows, clean=0.9, grad=None):
    results = [
        EpsResult(eps, eps, {k: _stats(k, v) for k, v in accs.items()}, _stats("worst", min(accs.values())), {})
        for eps, accs in rows
    ]
    return EvalResult(
        n=100,
        world_size=1,
        clean_acc=clean,
        clean_loss=0.1,
        results=results,
        flags=[],
        grad_stats=grad or {"samples": 100, "zero_grad": 0, "nan_grad": 0},
        timings={},
        config={},
    )


def test_sanity_flags():
    labels = torch.arange(100) % 10
    good = _result([(0.1, {"fgsm": 0.5, "pgd": 0.4, "ball": 0.8}), (0.2, {"fgsm": 0.3, "pgd": 0.1, "ball": 0.7})])
    assert sanity_flags(good, labels, "linf") == []
    bad = _result(
        [
            (0.1, {"fgsm": 0.5, "pgd": 0.6, "ball": 0.3}),
            (0.2, {"fgsm": 0.6, "pgd": 0.7, "ball": 0.5}),
            (0.5, {"fgsm": 0.6, "pgd": 0.7, "ball": 0.5}),
        ],
        grad={"samples": 100, "zero_grad": 30, "nan_grad": 2},
    )
    flags = {f["flag"] for f in sanity_flags(bad, labels, "linf")}
    assert flags == {
        "pgd_weaker_than_fgsm",
        "noise_beats_gradient",
        "high_acc_at_large_eps",
        "acc_not_decreasing",
        "zero_input_gradients",
        "nan_input_gradients",
    }
    # l2: the breaking radius is 0.5 * sqrt(d)
    l2 = _result([(14.0, {"pgd": 0.5})])
    assert {f["flag"] for f in sanity_flags(l2, labels, "l2", input_dim=784)} == {"high_acc_at_large_eps"}
    assert sanity_flags(l2, labels, "l2", input_dim=3072) == []


def test_zero_gradient_model_is_flagged():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        model[1].weight.zero_()
    r = evaluate(model, torch.rand(10, 1, 28, 28), torch.randint(0, 10, (10,)), EvalConfig(eps=[0.1], steps=2))
    assert "zero_input_gradients" in {f["flag"] for f in r.flags}


def test_sweep_table_formats():
    r = _result([(0.2, {"fgsm": 0.3, "pgd": 0.1}), (0.1, {"fgsm": 0.5, "pgd": 0.4})])
    csv = sweep_table(r, "csv").splitlines()
    assert csv[0] == "eps,fgsm,pgd,worst" and csv[1] == "0.1,0.5000,0.4000,0.4000"
    assert sweep_table(r).startswith("| eps | fgsm | pgd | worst |")


# ---- CLI -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    model = sspnet.create_model("res", dataset="mnist5k", blocks=1, seed=0)
    sspnet.save_checkpoint(folder / "model_acc.pt", model)
    sspnet.save_checkpoint(folder / "model_final.pt", model)
    return folder


def test_cli_writes_json_png_and_adversarial_examples(run_dir, capsys, mnist5k_test):
    from safetensors.torch import load_file

    rc = main(
        [
            "attack",
            str(run_dir),
            "--attack",
            "all",
            "--eps",
            "0.1",
            "0.3",
            "--iters",
            "2",
            "--copies",
            "2",
            "--n-examples",
            "12",
            "--device",
            "cpu",
            "--grid",
            "4",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "clean" in out and "sanity flags" in out
    assert "checkpoint: model_final.pt (the last epoch)" in out  # the default: final, not the test-selected file
    for eps in ("0.1", "0.3"):
        data = json.loads((run_dir / f"attack_all_{eps}.json").read_text())
        assert data["n"] == 12 and data["dataset"] == "mnist5k"
        assert data["checkpoint"].endswith("model_final.pt") and data["checkpoint_selection"]["crit"] == "final"
        assert data["results"][0]["eps_cli"] == float(eps)
        assert set(data["results"][0]["attacks"]) == {"fgsm", "pgd", "ball"}
        assert 0 <= data["results"][0]["worst"]["acc"] <= data["clean_acc"]
        assert data["results"][0]["attacks"]["pgd"]["params"]["alpha"] == pytest.approx(float(eps) / 6)
        assert (run_dir / f"attack_all_{eps}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        adv = load_file(run_dir / f"attack_all_{eps}.safetensors")
        assert adv["adversarial"].dtype == torch.uint8 and adv["adversarial"].shape == (12, 1, 28, 28)
        assert adv["index"].tolist() == subset_indices(mnist5k_test[1], 12).tolist() == data["subset"]["indices"]
        assert data["subset"]["rule"] == "stratified-v1" and min(data["subset"]["per_class"]) >= 1
    sweep = json.loads((run_dir / "attack_all_sweep.json").read_text())
    assert [r["eps"] for r in sweep["results"]] == [0.1, 0.3]
    assert (run_dir / "attack_all_sweep.png").is_file()
    assert (run_dir / "attack_all_sweep.csv").read_text().startswith("eps,fgsm,pgd,ball,worst")


def test_cli_checkpoint_file_l2_and_out(run_dir, tmp_path):
    rc = main(
        [
            "attack",
            str(run_dir / "model_final.pt"),
            "--norm",
            "l2",
            "--eps",
            "1.0",
            "--iters",
            "1",
            "--n-examples",
            "4",
            "--no-quantize",
            "--out",
            str(tmp_path),
            "--crit",
            "last",
        ]
    )
    assert rc == 0
    data = json.loads((tmp_path / "attack_pgd-l2_1.json").read_text())
    assert data["config"]["quantize"] is False and data["config"]["norm"] == "l2"
    assert data["results"][0]["attacks"]["pgd"]["l2_max"] <= 1.0 + 1e-5


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eps", "-1"], "--eps must be >= 0"),
        (["--eps", "8"], "beyond the pixel range"),
        (["--alpha", "0"], "--alpha must be > 0"),
        (["--iters", "-1"], "--pgd-steps must be >= 0"),  # --iters: the alias of --pgd-steps
        (["--n-examples", "0"], "evaluation set would be empty"),
        (["--attack", "cw"], "valid attacks"),
        (["--eval", "cifar10"], "cannot load"),
        (["--archi", "vgg"], "unknown --archi"),
        (["--eps", "0.003"], "the smallest eps that moves one is 0.00392157 (1/255) for mnist5k linf"),
    ],
)
def test_cli_bad_input_exit_2(run_dir, capsys, extra, message):
    assert (
        main(
            ["attack", str(run_dir), "--n-examples", "2", *extra]
            if "--n-examples" not in extra
            else ["attack", str(run_dir), *extra]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("sspnet attack: error:") and message in err


def test_cli_wrong_checkpoint_exit_2(tmp_path, capsys):
    assert main(["attack", str(tmp_path / "missing")]) == 2
    assert "no checkpoint or run folder" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["attack", str(bad)]) == 2
    assert "sspnet attack: error:" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "nostate.pt")
    assert main(["attack", str(tmp_path / "nostate.pt")]) == 2
    assert "state_dict" in capsys.readouterr().err
