"""A model's architecture apart from its dataset: the 3-group CIFAR-10 network on the 28 x 28 digits."""

from __future__ import annotations

import pytest
import torch

from sspnet.nn import create_model, load_model, save_checkpoint
from sspnet.train import TrainConfig


def test_the_cifar10_network_on_digits_has_three_groups_and_takes_their_images():
    model = create_model("ssp2", "mnist5k", arch="cifar10", blocks=2, seed=0).eval()
    assert len(model.groups) == 3 and len(model.transitions) == 2
    assert [g[0].f.conv1.in_channels for g in model.groups] == [16, 32, 64]
    assert model.config["arch"] == "cifar10" and model.config["norm"] == "b"  # the architecture's defaults
    assert model.config["groups"] == ["ssp2"] * 3
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="1 x 28 x 28"):
        model(torch.rand(2, 3, 32, 32))


def test_the_dataset_s_own_architecture_is_not_recorded_so_configs_stay_as_they_were():
    assert "arch" not in create_model("res", "mnist5k", arch="mnist", blocks=1).config
    assert "arch" not in create_model("res", "cifar10", blocks=1).config
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        create_model("res", "mnist5k", arch="resnet")


def test_an_architecture_override_round_trips_through_a_checkpoint(tmp_path):
    model = create_model("res", "mnist5k", arch="cifar10", blocks=1, step_size=0.5, seed=2).eval()
    loaded = load_model(save_checkpoint(tmp_path / "m.pt", model))
    assert loaded.config == model.config
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="cifar10 architecture.*mnist architecture"):
        load_model(tmp_path / "m.pt", arch="mnist")


def test_train_config_checks_the_architecture_and_builds_it():
    from sspnet.train.setup import build_model

    with pytest.raises(ValueError, match="unknown --arch 'cifar'; valid architectures: mnist, cifar10, tinyimagenet"):
        TrainConfig(arch="cifar", epochs=1).validate()
    cfg = TrainConfig(arch="cifar10", blocks=1, epochs=1)
    cfg.validate()
    assert len(build_model(cfg.resolved()).groups) == 3
