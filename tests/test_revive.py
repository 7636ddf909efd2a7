"""Reviving dead latent channels (``slimcodec train --revive``) on the shipped default, whose
encoder has switched about half of its channels off."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import natural_like
from PIL import Image

from slimcodec.training import TrainConfig, Trainer
from slimcodec.training.revive import dead_channels, revive_channels
from slimcodec.utils.tensors import to_tensor
from slimcodec.zoo import load_model


@pytest.fixture(scope="module")
def model():
    return load_model("slimcae-hp").eval()


@pytest.fixture(scope="module")
def crops():
    return torch.cat([to_tensor(natural_like(64, 64, seed=i)) for i in range(4)])


def _modulation(model, lmbda: float) -> torch.Tensor:
    t, _ = model.conditions(torch.tensor([lmbda]))
    return model.modulation_a[-1](t).flatten()


def test_dead_channels_are_those_the_last_modulation_switched_off(model, crops):
    model.set_width(96)
    model.set_lambda(0.05)
    with torch.no_grad():
        dead = dead_channels(model, crops)
    assert (model.width, model.lmbda, model.training) == (96, pytest.approx(0.05), False)
    assert dead.shape == (192,) and 48 <= int(dead.sum()) < 192
    assert dead[144:].all()  # the widest width's own channels carry nothing
    model.set_width(192)
    with torch.no_grad():
        scale = _modulation(model, 0.8)
    # most dead channels are switched off there (a few die further on), no live one is
    assert float((scale[dead] < 0.3).float().mean()) > 0.85
    assert float(scale[~dead].min()) > 0.5


def test_revived_channels_carry_information_and_live_ones_keep_their_rows(model, crops):
    revived = copy.deepcopy(model)
    with torch.no_grad():
        dead = dead_channels(model, crops)
        assert revive_channels(revived, dead, shift=0.0) == int(dead.sum())
        after = dead_channels(revived, crops)
    assert int(after.sum()) < int(dead.sum()) // 2
    before_out, after_out = model.modulation_a[-1].out, revived.modulation_a[-1].out
    assert torch.equal(after_out.weight[~dead], before_out.weight[~dead])
    assert torch.equal(after_out.bias[~dead], before_out.bias[~dead])
    # shift: the revived channels' scale against the live channels' mean, in log units
    lower = copy.deepcopy(model)
    with torch.no_grad():
        revive_channels(lower, dead, shift=-2.0)
        revived.set_width(192)
        lower.set_width(192)
        ratio = _modulation(lower, 0.8)[dead] / _modulation(revived, 0.8)[dead]
    np.testing.assert_allclose(ratio.numpy(), np.exp(-2.0), rtol=1e-5)
    assert revive_channels(copy.deepcopy(model), torch.zeros(192, dtype=torch.bool)) == 0
    with pytest.raises(ValueError, match="no live channel"):
        revive_channels(copy.deepcopy(model), torch.ones(192, dtype=torch.bool))


def test_train_revive_revives_the_init_model(model, tmp_path):
    for i in range(2):
        Image.fromarray(natural_like(80, 80, seed=i)).save(tmp_path / f"{i}.png")
    cfg = model.config
    options = dict(arch="slimcae-hp", init="slimcae-hp", rate_anchors=1,
                   lambda_ranges=[v for pair in cfg["lambda_ranges"] for v in pair],
                   lambda_bounds=list(cfg["lambda_bounds"]), patch=64, batch=2, steps=1,
                   data=str(tmp_path), out=str(tmp_path / "run"))
    trainer = Trainer(TrainConfig(revive=-2.0, **options))
    ours, source = trainer.model.modulation_a[-1].out.bias, model.modulation_a[-1].out.bias
    changed = (ours != source).nonzero().flatten()
    assert len(changed) >= 48 and (changed >= 144).sum() == 48
    plain = Trainer(TrainConfig(**{**options, "out": str(tmp_path / "plain")}))
    assert torch.equal(plain.model.modulation_a[-1].out.bias, source)
    with pytest.raises(ValueError, match="--revive needs --init"):
        TrainConfig(revive=-2.0, **{**options, "init": None})
