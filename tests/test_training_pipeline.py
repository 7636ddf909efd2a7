"""The training options that keep a GPU busy (crops on the device, one λ per image,
steps without host synchronisation, bf16), checked on the CPU."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import natural_like
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from slimcodec.models import HyperpriorSlimCAE
from slimcodec.training import MixedSampler, PatchSampler, TrainConfig, Trainer, train
from slimcodec.training.data import DeviceCrops
from slimcodec.training.loss import MultiWidthRDLoss

# A variable-rate model with one entropy model per width: what one λ per image needs.
TINY_VR = {"arch": "slimcae-vr", "rate_anchors": 1, "lambda_ranges": [0.003, 0.03],
           "widths": [16, 8], "patch": 32, "batch": 4, "lr": 1e-3, "checkpoint_every": 10}
GPU_PIPELINE = {"crops": "device", "lambda_per": "image", "log_every": 3}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    for i in range(3):
        Image.fromarray(natural_like(48 + 8 * i, 64, seed=i)).save(root / f"{i}.png")
    return root


def _flat_images(root, value: int, count: int = 2, size: int = 40):
    root.mkdir()
    for i in range(count):
        Image.fromarray(np.full((size, size + 8 * i, 3), value, np.uint8)).save(root / f"{i}.png")
    return root


def test_device_crops_draw_each_source_with_its_stated_proportion(tmp_path):
    """As the host's mixed sampler: over 6,000 crops with a fixed seed, each source's share
    is within 4 standard deviations of its stated fraction, and a seed gives one batch."""
    mix = {str(_flat_images(tmp_path / "mid", 128)): 0.25,
           str(_flat_images(tmp_path / "white", 255, count=3)): 0.1}
    crops = DeviceCrops(MixedSampler.from_mix(_flat_images(tmp_path / "black", 0), mix, 8),
                        "cpu")
    n = 6000
    batch = crops.sample(n, torch.Generator().manual_seed(0))
    assert batch.shape == (n, 3, 8, 8) and batch.dtype == torch.float32
    values = (batch.mean(dim=(1, 2, 3)) * 255).round().long()
    assert set(values.tolist()) <= {0, 128, 255}  # no crop reaches the zero padding
    for value, p in ((0, 0.65), (128, 0.25), (255, 0.1)):
        share = (values == value).double().mean().item()
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (value, share, p)
    assert torch.equal(batch, crops.sample(n, torch.Generator().manual_seed(0)))


def test_device_crops_are_crops_of_the_images_flipped_both_ways(tmp_path):
    """Every crop is a window of one image, as is or flipped (each flip about half the
    time), and windows reach every corner, so no position is left out."""
    rng = np.random.default_rng(0)
    root = tmp_path / "noise"
    root.mkdir()
    pictures = [rng.integers(0, 256, (12, 10 + 3 * i, 3), dtype=np.uint8) for i in range(2)]
    for i, rgb in enumerate(pictures):
        Image.fromarray(rgb).save(root / f"{i}.png")
    p = 6
    crops = DeviceCrops(PatchSampler(root, p), "cpu")
    batch = (crops.sample(800, torch.Generator().manual_seed(1)) * 255).round().byte()
    flips = {(False, False): 0, (False, True): 0, (True, False): 0, (True, True): 0}
    corners = set()
    for crop in batch.permute(0, 2, 3, 1).numpy():
        found = None
        for k, rgb in enumerate(pictures):
            for top in range(rgb.shape[0] - p + 1):
                for left in range(rgb.shape[1] - p + 1):
                    window = rgb[top : top + p, left : left + p]
                    for v in (False, True):
                        for h in (False, True):
                            w = window[::-1] if v else window
                            if np.array_equal(w[:, ::-1] if h else w, crop):
                                found = (k, top, left, v, h)
        assert found is not None, "a crop that is no window of any image"
        k, top, left, v, h = found
        flips[(v, h)] += 1
        corners.add((k, top == 0, left == 0, top == pictures[k].shape[0] - p,
                     left == pictures[k].shape[1] - p))
    assert all(120 < count < 280 for count in flips.values()), flips
    assert (0, True, True, False, False) in corners and (1, False, False, True, True) in corners


def test_one_lambda_per_image_is_each_image_at_its_own_lambda():
    """A batch at λs (a, b, c) gives each image what a batch of that image alone gives at
    its λ, and the loss averages each image's own RD cost."""
    torch.manual_seed(0)
    model = HyperpriorSlimCAE(widths=(16, 8), lambda_ranges=[(0.001, 0.1)] * 2).eval()
    x = torch.rand(3, 3, 64, 64)
    lmbdas = torch.tensor([0.002, 0.02, 0.09])
    together = model(x, lmbdas)
    for i, lmbda in enumerate(lmbdas.tolist()):
        model.set_lambda(lmbda)
        alone = model(x[i : i + 1])
        torch.testing.assert_close(together["x_hat"][i : i + 1], alone["x_hat"])
        torch.testing.assert_close(together["likelihoods"]["y"][i : i + 1],
                                   alone["likelihoods"]["y"])
    loss = MultiWidthRDLoss(model, [0.01, 0.01])
    per_image = loss(x, torch.stack([lmbdas, lmbdas]))["rd_loss"]
    expected = 0
    for width in model.widths:
        for i, lmbda in enumerate(lmbdas.tolist()):
            model.set_width(width)
            model.set_lambda(lmbda)
            out = model(x[i : i + 1])
            bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
            mse = torch.mean((out["x_hat"] - x[i : i + 1]) ** 2)
            expected = expected + (lmbda * 255**2 * mse + bits / (64 * 64)) / 3
    torch.testing.assert_close(per_image, expected)
    with pytest.raises(ValueError, match="shape"):
        model(x, lmbdas[:2])


def test_one_lambda_per_image_needs_one_entropy_model_per_width(images):
    for bad in ({"arch": "slimcae"}, {"arch": "slimcae-vr", "rate_anchors": 8}):
        with pytest.raises(ValueError, match="one entropy model per width"):
            TrainConfig(data=str(images), out="x", lambda_per="image", **bad)
    for key, value in (("crops", "gpu"), ("lambda_per", "pixel"), ("precision", "fp16"),
                       ("log_every", 0)):
        with pytest.raises(ValueError):
            TrainConfig(data=str(images), out="x", **{key: value})


def _killed_and_resumed(images, tmp_path, monkeypatch, options, kill_after=13):
    straight = train(TrainConfig(data=str(images), out=str(tmp_path / "a"), steps=20, **options))
    cfg = TrainConfig(data=str(images), out=str(tmp_path / "b"), steps=20, **options)
    step = Trainer.train_step

    def killed(self):
        if self.step == kill_after:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).run(20)
    monkeypatch.undo()
    assert torch.load(tmp_path / "b/checkpoint.pt")["step"] == 10
    return straight, train(cfg, resume=True)


def test_resume_matches_uninterrupted_run_with_the_gpu_pipeline(images, tmp_path,
                                                                 monkeypatch):
    """Crops on the device, one λ per image, a mix and steps free of synchronisation: a
    run killed and resumed ends with the weights of a run never stopped, and its log has
    every step once."""
    options = {**TINY_VR, **GPU_PIPELINE, "mix": ["screen=0.3"]}
    straight, resumed = _killed_and_resumed(images, tmp_path, monkeypatch, options)
    assert resumed.step == 20
    for (k, a), (_, b) in zip(straight.model.state_dict().items(),
                              resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    log = [json.loads(x) for x in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 21))
    assert all(r["lambdas"] == "per image" and len(r["bpp"]) == 2 for r in log)
    with pytest.raises(ValueError, match="cannot resume: crops"):
        train(TrainConfig(data=str(images), out=str(tmp_path / "b"), steps=30,
                          **{**options, "crops": "host"}), resume=True)


@pytest.mark.parametrize("log_every", [1, 4])
def test_a_step_with_a_non_finite_gradient_changes_nothing(images, tmp_path, monkeypatch,
                                                          log_every):
    """Checked on the host (one log line a step) or on the device (fused Adam's found_inf):
    a step whose gradient is NaN leaves the weights and the optimizers' state as they were,
    its log line says so, and the steps after it train."""
    cfg = TrainConfig(data=str(images), out=str(tmp_path), steps=6,
                      **{**TINY_VR, **GPU_PIPELINE, "log_every": log_every})
    trainer = Trainer(cfg)
    trainer.run(2)
    forward = trainer.net.forward

    def poisoned(*args):
        out = forward(*args)
        if trainer.step == 2:
            out["loss"] = out["loss"] * math.nan
        return out

    monkeypatch.setattr(trainer.net, "forward", poisoned)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in trainer.optimizer.state.values()]
    trainer.run(3)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for s, m in zip(trainer.optimizer.state.values(), moments, strict=True):
        assert torch.equal(s["exp_avg"], m) and int(s["step"]) == 2
    trainer.run(4)
    assert not torch.equal(trainer.model.state_dict()["g_a.0.weight"], before["g_a.0.weight"])
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("skipped", False) for r in log] == [False, False, True, False]


class HostTraffic(TorchDispatchMode):
    """Records the operations that would make a GPU step wait: reading a tensor's value on
    the host (a scalar, or the size of a result that depends on the data, as boolean
    indexing's), which waits for everything queued before it, and building a tensor from
    host data, which a blocking copy then takes to the device."""

    OPS = ("_local_scalar_dense", "is_nonzero", "item", "nonzero", "equal", "masked_select",
           "_unique2", "unique_consecutive", "lift_fresh")
    INDEXING = ("index", "index_put", "index_put_", "_index_put_impl_")

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.OPS or (name in self.INDEXING and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])):
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("arch", ["slimcae-vr", "slimcae-hp", "slimcae-hpc"])
def test_a_gpu_pipeline_step_never_waits_for_the_host(images, tmp_path, arch):
    """Between log lines a step only queues work: not one value comes back to the host
    (compressai's own EntropyBottleneck.forward reads twelve per call)."""
    trainer = Trainer(TrainConfig(data=str(images), out=str(tmp_path), steps=10,
                                  **{**TINY_VR, **GPU_PIPELINE, "arch": arch}))
    trainer.train_step()  # (first-step set-up is not what a run repeats)
    with HostTraffic() as traffic:
        trainer.train_step()
    assert traffic.ops == []


@pytest.mark.parametrize("arch", ["slimcae-vr", "slimcae-hpc"])
def test_a_step_reparametrises_each_gdn_once_for_every_width(images, tmp_path, arch):
    """The step runs the model at every width; each GDN builds its non-negative parameters
    once for all of them, not once per width."""
    from compressai.ops.parametrizers import NonNegativeParametrizer

    from slimcodec.layers import SlimGDN

    trainer = Trainer(TrainConfig(data=str(images), out=str(tmp_path), steps=10,
                                  **{**TINY_VR, **GPU_PIPELINE, "arch": arch}))
    calls: list[str] = []
    gdns = [m for m in trainer.model.modules() if isinstance(m, SlimGDN)]
    for i, gdn in enumerate(gdns):
        for m in gdn.modules():
            if isinstance(m, NonNegativeParametrizer):
                m.register_forward_hook(lambda *_, i=i: calls.append(i))
    trainer.train_step()
    assert len(gdns) == 6 and len(trainer.model.widths) == 2
    assert calls and all(calls.count(i) == 6 for i in range(len(gdns)))  # SlimGDN+: 6 each


def test_bf16_runs_the_transforms_in_bf16_and_the_rates_in_float32(images, tmp_path):
    """Under autocast the hyperprior and densities compute in float32: from the same
    latent, the rates are exactly those of a float32 pass."""
    torch.manual_seed(0)
    model = HyperpriorSlimCAE(widths=(16, 8), lambda_ranges=[(0.001, 0.1)] * 2).eval()
    for p in model.h_scale.parameters():  # a hyperprior that does something
        torch.nn.init.normal_(p, std=0.1)
    x, lmbdas = torch.rand(2, 3, 64, 64), torch.tensor([0.002, 0.05])
    y = model.analysis(x, lmbdas).detach()
    model.analysis = lambda *args: y
    plain = model(x, lmbdas)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, lmbdas)
    assert out["x_hat"].dtype == torch.bfloat16
    for name, likelihoods in out["likelihoods"].items():
        assert torch.equal(likelihoods, plain["likelihoods"][name]), name
    trainer = train(TrainConfig(data=str(images), out=str(tmp_path), steps=3,
                                **{**TINY_VR, "precision": "bf16"}))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(math.isfinite(r["loss"]) for r in log)


def test_a_time_limit_stops_at_a_step_with_a_checkpoint_and_a_model_file(images, tmp_path,
                                                                          monkeypatch):
    """--time-limit: the run stops between steps, checkpoints and writes its model file;
    resumed, it ends where a run never stopped ends."""
    import time

    options = {**TINY_VR, **GPU_PIPELINE}
    straight = train(TrainConfig(data=str(images), out=str(tmp_path / "a"), steps=12, **options))
    step = Trainer.train_step

    def slow(self):
        time.sleep(0.3)
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", slow)
    cut = train(TrainConfig(data=str(images), out=str(tmp_path / "b"), steps=12,
                            time_limit=1.0, **options))
    monkeypatch.undo()
    assert 0 < cut.step < 12
    assert torch.load(tmp_path / "b/checkpoint.pt")["step"] == cut.step
    from slimcodec.zoo import model_meta

    assert model_meta(tmp_path / "b/model.pt")["steps"] == cut.step
    resumed = train(TrainConfig(data=str(images), out=str(tmp_path / "b"), steps=12,
                                **options), resume=True)
    assert resumed.step == 12
    for (k, a), (_, b) in zip(straight.model.state_dict().items(),
                              resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_a_compiled_step_trains_as_the_eager_one(images, tmp_path):
    """--compile: the same losses and, after a few steps, the same weights as the eager
    step, up to rounding (inductor fuses the operations, it does not change the math)."""
    options = {**TINY_VR, **GPU_PIPELINE, "arch": "slimcae-hpc", "log_every": 1, "steps": 3}
    runs = [train(TrainConfig(data=str(images), out=str(tmp_path / name), compile=compiled,
                              **options))
            for name, compiled in (("eager", False), ("compiled", True))]
    eager, compiled = runs
    assert compiled.net is not compiled.loss  # (the step did go through torch.compile)
    logs = [[json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("eager", "compiled")]
    for a, b in zip(*logs, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["bpp"] == pytest.approx(b["bpp"], rel=1e-4)
    for (k, a), (_, b) in zip(eager.model.state_dict().items(),
                              compiled.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=k)
