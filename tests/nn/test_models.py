"""The model zoo: parameter counts, shapes, gradients, ARK, groups, normalisation, bad input."""

import copy

import pytest
import torch

import sspnet
from sspnet.data.specs import CIFAR10_MEAN, CIFAR10_STD
from sspnet.nn.blocks import ARKBlock, RKBlock

PARAMS = {
    ("cifar10", "res"): 658090,
    ("cifar10", "ssp2"): 658090,
    ("cifar10", "ssp3"): 658090,
    ("cifar10", "midrk2"): 658090,
    ("cifar10", "ark"): 658102,
    ("mnist5k", "res"): 503434,
    ("mnist5k", "ssp2"): 503434,
    ("mnist5k", "ssp3"): 503434,
    ("mnist5k", "ark"): 503444,
}


@pytest.mark.parametrize("dataset,scheme", list(PARAMS))
def test_parameter_counts_match_the_original(dataset, scheme):
    model = sspnet.create_model(scheme, dataset=dataset)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[(dataset, scheme)]


SHAPES = {"mnist5k": (1, 28, 10), "cifar10": (3, 32, 10), "tiny": (3, 64, 200)}


@pytest.mark.parametrize("dataset", list(SHAPES))
@pytest.mark.parametrize("scheme", sspnet.list_models())
def test_every_model_forward_and_gradients(scheme, dataset):
    c, s, k = SHAPES[dataset]
    model = sspnet.create_model(scheme, dataset=dataset, blocks=1, seed=0)
    x = torch.rand(2, c, s, s)
    out = model(x)
    assert out.shape == (2, k) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_ark_block_two_f_calls_and_closed_form():
    block = ARKBlock(8, "g", a21=0.3, b10=0.7)
    calls = []
    block.f.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 8, 5, 5)
    y = block(x)
    assert len(calls) == 2 == block.f_calls
    a, b = torch.sigmoid(torch.tensor(0.3)), torch.sigmoid(torch.tensor(0.7))
    F = block.f
    u1 = x + b * F(x)
    original = (1 - a) * x + (1 - 1 / (2 * b) - a * b) * F(x) + a * u1 + 1 / (2 * b) * F(u1)
    torch.testing.assert_close(y, original, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("freeze_a,freeze_b", [(True, False), (True, True), (False, False)])
def test_ark_freeze_flags_really_freeze(freeze_a, freeze_b):
    model = sspnet.create_model("ark", dataset="mnist5k", blocks=2, freeze_a=freeze_a, freeze_b=freeze_b, seed=0)
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.rand(4, 1, 28, 28)).logsumexp(1).sum().backward()
        opt.step()
    after = model.state_dict()
    for k in before:
        if k.endswith("a21"):  # a cancels from the update (see ARKBlock): it never moves
            assert torch.equal(before[k], after[k])
        if k.endswith("b10"):
            assert torch.equal(before[k], after[k]) == freeze_b
    block = model.groups[0][0]
    assert (block.a21.requires_grad, block.b10.requires_grad) == (not freeze_a, not freeze_b)
    assert before["groups.0.0.a21"].item() == -1.0 and before["groups.0.0.b10"].item() == 0.5


def test_ark_composition_and_group_override():
    ark = sspnet.create_model("ark", dataset="cifar10", blocks=2)
    kinds = [type(g[0]).__name__ + ("" if isinstance(g[0], ARKBlock) else ":" + g[0].scheme.name) for g in ark.groups]
    assert kinds == ["ARKBlock", "RKBlock:res", "RKBlock:ssp2"]
    same = sspnet.create_model("res", dataset="cifar10", blocks=2, groups=("ark", "res", "ssp2"))
    assert same.config["groups"] == ark.config["groups"]
    assert sspnet.create_model("ark", dataset="tiny", blocks=1).config["groups"] == ["ark", "res", "ssp2", "ssp2"]
    assert ark.f_calls_per_block == [2, 2, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="groups must name 3 block kind"):
        sspnet.create_model("res", dataset="cifar10", groups=("res", "ssp2"))


def test_normalisation_inside_the_model():
    model = sspnet.create_model("res", dataset="cifar10", blocks=1, seed=0).eval()
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    x = torch.rand(2, 3, 32, 32)
    h = model.stem((x - mean) / std)
    for j, g in enumerate(model.groups):
        h = g(model.transitions[j - 1](h) if j else h)
    torch.testing.assert_close(model(x), model.head(h))
    assert model.normalize.mean.flatten().tolist() == pytest.approx([0.4914, 0.4822, 0.2265])


def test_config_rebuilds_the_model_including_custom_schemes():
    custom = {"name": "ralston", "A": [[0, 0], ["2/3", 0]], "b": ["1/4", "3/4"], "order": 2}
    for scheme in ("ssp3", "ark", custom):
        m = sspnet.create_model(scheme, dataset="mnist5k", blocks=2, seed=1)
        m2 = sspnet.create_model(**m.config, seed=1)
        x = torch.rand(3, 1, 28, 28)
        torch.testing.assert_close(m.eval()(x), m2.eval()(x))


def test_activation_checkpointing_matches_plain_training_step():
    torch.manual_seed(0)
    plain = sspnet.create_model("ssp2", dataset="cifar10", blocks=1, seed=3)
    ckpt = sspnet.create_model("ssp2", dataset="cifar10", blocks=1, seed=3, activation_checkpointing=True)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for m in (plain, ckpt):
        m.train()
        torch.nn.functional.cross_entropy(m(x), y).backward()
    for (n, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=n)
    for (n, b), (_, c) in zip(plain.named_buffers(), ckpt.named_buffers()):
        torch.testing.assert_close(b, c, msg=n)  # recompute leaves BatchNorm statistics alone


def test_preferred_layout_rule_and_same_results_in_channels_last():
    from sspnet.nn.models import preferred_memory_format

    bn = sspnet.create_model("ssp2", dataset="cifar10", blocks=1, seed=2)
    gn = sspnet.create_model("ssp2", dataset="mnist5k", blocks=1)  # GroupNorm by default
    assert preferred_memory_format(bn, "cpu") == torch.channels_last
    assert preferred_memory_format(gn, "cpu") == torch.contiguous_format
    assert preferred_memory_format(gn, "cuda") == torch.channels_last
    # float64: the layouts differ only in summation order, which fp32 train-mode BatchNorm can amplify
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g)
    ref = sspnet.create_model("ssp2", dataset="cifar10", blocks=1, seed=2).double()
    fast = bn.double().to(memory_format=preferred_memory_format(bn, "cpu"))
    assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for m in (ref, fast):
        m.train()
        torch.nn.functional.cross_entropy(m(x), y).backward()
    for (n, p), (_, q) in zip(ref.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=n)
    ref.eval(), fast.eval()
    torch.testing.assert_close(ref(x), fast(x), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "scheme,dataset", [("ssp2", "cifar10"), ("ark", "cifar10"), ("ssp3", "tiny"), ("res", "mnist5k")]
)
def test_inference_copy_folds_batchnorm_and_keeps_outputs_and_input_gradients(scheme, dataset):
    from sspnet.nn.models import inference_copy

    model = sspnet.create_model(scheme, dataset=dataset, blocks=2, norm="b", seed=4)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3), m.running_var.uniform_(0.5, 2.0), m.bias.uniform_(-0.2, 0.2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_copy(model)
    assert model.training and not fast.training  # the caller's model is untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    kept = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    total = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    branches = len(model.f_calls_per_block) + len(model.transitions)  # one F per RK block and per transition
    assert kept == total - branches - len(model.transitions)  # every F's n2 and every shortcut norm folded
    assert not any(p.requires_grad for p in fast.parameters())
    assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)  # BatchNorm model on CPU
    s = model.spec
    x = torch.rand(3, s.channels, s.size, s.size, generator=torch.Generator().manual_seed(5)).requires_grad_()
    model.eval()
    out_ref, out_fast = model(x), fast(x)
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-4, atol=1e-5)
    (g_ref,) = torch.autograd.grad(out_ref.sum(), x)
    (g_fast,) = torch.autograd.grad(out_fast.sum(), x)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(scheme="ssp9"), "unknown model 'ssp9'; valid models: res, ssp2, .*, ark, or a JSON/YAML scheme file"),
        (dict(scheme="res", groups="ark,res,ssp9"), "unknown model 'ssp9'"),
        (dict(scheme="res", blocks=10**8), "blocks must be at most 1000"),
        (dict(scheme="res", dataset="imagenet1k"), "unknown dataset 'imagenet1k'; valid datasets: mnist5k"),
        (dict(scheme="res", norm="q"), "unknown norm 'q'; valid norms: b"),
        (dict(scheme="res", blocks=0), "blocks must be an integer >= 1"),
        (dict(scheme="res", init="xavier"), "unknown init 'xavier'; valid inits"),
        (dict(scheme={"name": "imp", "A": [[0.5, 0], [0, 0.5]], "b": [0.5, 0.5]}), "explicitness"),
    ],
)
def test_bad_model_options(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        sspnet.create_model(**kwargs)


def test_wrong_input_shape_names_the_expected_one():
    model = sspnet.create_model("res", dataset="mnist5k", blocks=1)
    with pytest.raises(ValueError, match=r"expects input B x 1 x 28 x 28 in \[0, 1\], got shape \(2, 3, 28, 28\)"):
        model(torch.rand(2, 3, 28, 28))


def test_dataset_aliases_map_to_architectures():
    assert sspnet.create_model("res", dataset="tinyimagenet", blocks=1).config["dataset"] == "tiny"
    assert len(sspnet.create_model("res", dataset="fmnist", blocks=1).groups) == 1
    assert isinstance(sspnet.create_model("midrk2", dataset="fmnist", blocks=1).groups[0][0], RKBlock)


def test_torch_hub_local(tmp_path):
    import pathlib

    repo = pathlib.Path(__file__).resolve().parents[2]
    model = torch.hub.load(str(repo), "ssp2", source="local", dataset="cifar10", blocks=1)
    assert model.config["scheme"] == "ssp2" and model(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    assert torch.hub.load(str(repo), "ark", source="local", dataset="mnist5k", blocks=1).config["scheme"] == "ark"


def test_registry_entries_drive_models_without_special_cases(tmp_path, monkeypatch):
    from sspnet.nn import registry, schemes
    from sspnet.nn.blocks import RKBlock
    from sspnet.nn.registry import (
        BlockEntry,
        ModelEntry,
        display_name,
        f_calls_per_group,
        model_identity,
        register_block,
        register_model,
    )
    from sspnet.nn.schemes import get_scheme

    reserved = set(schemes.RESERVED_NAMES)  # registrations below are undone after the test
    for mod, name, value in (
        (registry, "_BLOCKS", dict(registry._BLOCKS)),
        (registry, "_MODELS", dict(registry._MODELS)),
        (registry, "RESERVED_NAMES", reserved),
        (schemes, "RESERVED_NAMES", reserved),
    ):
        monkeypatch.setattr(mod, name, value)
    assert f_calls_per_group("ark", "cifar10") == [2, 1, 2]
    assert f_calls_per_group("ark", "mnist") == [2]
    assert f_calls_per_group("ssp3", "tinyimagenet") == [3, 3, 3, 3]
    assert display_name("ark") == "SSP-adap" and display_name("res") == "ResNet"
    # a new block kind with its own builder, and a composite model using it: no code outside the registry
    calls = []

    def build(channels, norm, arch, options):
        calls.append((channels, arch))
        return RKBlock(channels, norm, get_scheme("ssp2"))

    register_block(BlockEntry("twice-test", build, 2, "ssp2 built by a user builder"))
    register_model(ModelEntry("mix-test", "Mix", groups={"cifar10": ("twice-test", "res", "ark")}))
    m = sspnet.create_model("mix-test", dataset="cifar10", blocks=1)
    assert m.f_calls_per_block == [2, 1, 2] == f_calls_per_group("mix-test", "cifar10")
    assert calls == [(16, "cifar10")] and "mix-test" in sspnet.list_models()
    with pytest.raises(ValueError, match="not defined for the mnist architecture"):
        sspnet.create_model("mix-test", dataset="mnist5k")
    with pytest.raises(ValueError, match="reserved"):
        sspnet.register_scheme(sspnet.Scheme("twice-test", [[1]], [[1]], order=1))
    # a scheme file is identified by its coefficients, so an edited file is another model
    f = tmp_path / "heun.yaml"
    f.write_text("name: heun\nA: [[0, 0], [1, 0]]\nb: [0.5, 0.5]\norder: 2\n")
    first = model_identity(str(f))
    f.write_text("name: heun\nA: [[0, 0], [1, 0]]\nb: [0.25, 0.75]\norder: 1\n")
    assert first["name"] == "heun" and model_identity(str(f)) != first


def test_unset_options_keep_model_defaults():
    a = sspnet.create_model("ssp2", dataset="mnist5k", blocks=None, norm=None, init=None, groups=None, seed=0)
    b = sspnet.create_model("ssp2", dataset="mnist5k", seed=0)
    assert a.config == b.config


# --- the architectures table (sspnet.nn.architectures) ------------------------------------------------------
@pytest.mark.parametrize("dataset", ["mnist5k", "fmnist", "cifar10", "tiny"])
def test_built_models_follow_the_architectures_table(dataset):
    from sspnet.data.specs import get_dataset_spec
    from sspnet.nn.architectures import get_architecture

    spec = get_dataset_spec(dataset)
    arch = get_architecture(dataset)
    assert arch is get_architecture(spec.arch) and dataset in arch.datasets
    model = sspnet.create_model("ark", dataset=dataset, seed=0)
    cfg = model.config
    assert (cfg["blocks"], cfg["norm"], cfg["init"]) == (arch.blocks, arch.norm, arch.init)
    assert len(model.groups) == arch.n_groups and len(model.transitions) == arch.n_groups - 1
    assert [g[0].f.conv1.in_channels for g in model.groups] == list(arch.widths)
    assert [len(g) for g in model.groups] == [arch.blocks] * arch.n_groups
    first = model.groups[0][0]  # ark fills the first group: the architecture's default coefficients
    assert (first.a21.item(), first.b10.item()) == arch.ark
    x = torch.rand(2, spec.channels, spec.size, spec.size)
    side = 6 if arch.stem == "downsample" else spec.size  # 28 -> 26 -> 13 -> 6, or a padded 3x3 conv
    assert model.stem(model.normalize(x)).shape == (2, arch.widths[0], side, side)
    assert model.head(torch.rand(2, arch.widths[-1], 4, 4)).shape == (2, spec.num_classes)


def test_architecture_names_datasets_and_original_archi_names():
    from sspnet.data.specs import DATASETS
    from sspnet.nn.architectures import ARCHITECTURES, archi_dataset, get_architecture

    assert sorted(d for a in ARCHITECTURES.values() for d in a.datasets) == sorted(DATASETS)  # a partition
    for arch in ARCHITECTURES.values():
        assert arch.dataset in arch.datasets
        for name, dataset in arch.archi.items():  # every --archi name means a dataset of that architecture
            assert archi_dataset(name) == archi_dataset(name.upper()) == dataset and dataset in arch.datasets
    expected = {
        "mnist": "mnist",
        "fmnist": "fmnist",
        "cifar10": "cifar10",
        "cifar": "cifar10",
        "imagenet": "tiny",
        "tinyimagenet": "tiny",
        "tiny": "tiny",
    }  # the original code's names
    assert {n: archi_dataset(n) for n in expected} == expected
    with pytest.raises(ValueError, match="unknown --archi 'svhn'; valid: mnist, fmnist, cifar10, cifar, imagenet"):
        archi_dataset("svhn")
    with pytest.raises(ValueError, match="unknown architecture 'vgg'; valid: mnist, cifar10, tinyimagenet"):
        get_architecture("vgg")


def test_f_calls_per_group_takes_an_architecture_or_a_dataset():
    from sspnet.nn.registry import f_calls_per_group

    assert f_calls_per_group("ark", "tiny") == f_calls_per_group("ark", "tinyimagenet") == [2, 1, 2, 2]
    assert f_calls_per_group("ssp3", "fmnist") == [3]
