import json
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers import natural_like
from PIL import Image

from slimcodec.cli import main
from slimcodec.errors import ImageError
from slimcodec.models import SlimCAE
from slimcodec.training import MixedSampler, PatchSampler, TrainConfig, Trainer, train
from slimcodec.training.data import parse_mix
from slimcodec.training.lambda_schedule import ScheduleState, rd_slope, schedule_lambdas
from slimcodec.training.trainer import checkpoint_model, cosine_lr, lr_at
from slimcodec.zoo import load_model_file, model_meta

TINY = {"widths": [16, 8], "lambdas": [0.01], "patch": 32, "batch": 4, "lr": 1e-3,
        "checkpoint_every": 10}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    (root / "sub").mkdir()
    for i in range(3):
        Image.fromarray(natural_like(48, 64, seed=i)).save(root / "sub" / f"{i}.png")
    Image.fromarray(natural_like(20, 24, seed=9)).save(root / "small.png")  # < patch: padded
    (root / "broken.png").write_bytes(b"\x89PNG but not really")
    (root / "notes.txt").write_text("not an image")
    return root


def test_dataset_skips_bad_files_and_pads_small_images(images):
    with pytest.warns(UserWarning, match="broken.png"):
        sampler = PatchSampler(images, 32)
    assert len(sampler) == 4
    batch = sampler.sample(5, torch.Generator().manual_seed(0))
    assert batch.shape == (5, 3, 32, 32) and batch.min() >= 0 and batch.max() <= 1
    again = sampler.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)


def test_dataset_with_no_images(tmp_path):
    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(ImageError, match="no readable"):
        PatchSampler(tmp_path, 32)


@pytest.mark.filterwarnings("ignore:skipping")
def test_training_smoke_loss_falls(images, tmp_path):
    trainer = train(TrainConfig(data=str(images), out=str(tmp_path), steps=60, **TINY))
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 61))
    first, last = np.mean([r["loss"] for r in log[:10]]), np.mean([r["loss"] for r in log[-10:]])
    assert last < 0.7 * first
    model = load_model_file(tmp_path / "model.pt")  # a usable, loadable model file
    assert model.widths == (16, 8) and trainer.step == 60


def _flat_images(root, value: int, count: int = 2):
    root.mkdir()
    for i in range(count):
        Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(root / f"{i}.png")
    return root


def test_mixed_sampler_draws_each_source_with_its_stated_proportion(tmp_path):
    """Three sources of flat images (0, 128, 255): over 6,000 crops with a fixed seed, each
    source's share is within 4 standard deviations of its stated fraction."""
    mix = {str(_flat_images(tmp_path / "mid", 128)): 0.25,
           str(_flat_images(tmp_path / "white", 255)): 0.1}
    sampler = MixedSampler.from_mix(_flat_images(tmp_path / "black", 0), mix, 8)
    n = 6000
    batch = sampler.sample(n, torch.Generator().manual_seed(0))
    values = (batch.mean(dim=(1, 2, 3)) * 255).round().long()
    assert set(values.tolist()) <= {0, 128, 255}
    for value, p in ((0, 0.65), (128, 0.25), (255, 0.1)):
        share = (values == value).double().mean().item()
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (value, share, p)
    again = sampler.sample(n, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)


def test_mix_renders_generated_domains_and_checks_its_fractions(tmp_path):
    sampler = MixedSampler.from_mix(_flat_images(tmp_path / "photos", 0), {"screen": 0.5}, 16)
    assert len(sampler.samplers[1]) > 0 and sampler.samplers[1].paths[0] == "screen:100000"
    assert parse_mix(["screen=0.2", "art/x=0.1"]) == {"screen": 0.2, "art/x": 0.1}
    for bad, match in ((["screen"], "SOURCE=FRACTION"), (["screen=a"], "SOURCE=FRACTION"),
                       (["screen=0"], r"in \(0, 1\)"), (["a=0.6", "b=0.5"], "sum to"),
                       (["a=0.1", "a=0.2"], "twice")):
        with pytest.raises(ValueError, match=match):
            parse_mix(bad)
    with pytest.raises(ValueError, match="SOURCE=FRACTION"):
        TrainConfig(data="x", out="y", mix=["screen"])


@pytest.mark.filterwarnings("ignore:skipping")
@pytest.mark.parametrize("mix", [None, "folder and screens"])
def test_resume_matches_uninterrupted_run(images, tmp_path, monkeypatch, mix):
    tiny = dict(TINY)
    if mix:
        tiny["mix"] = [f"{images / 'sub'}=0.3", "screen=0.3"]
    straight = train(TrainConfig(data=str(images), out=str(tmp_path / "a"), steps=20, **tiny))
    cfg = TrainConfig(data=str(images), out=str(tmp_path / "b"), steps=20, **tiny)
    interrupted = Trainer(cfg)
    step = Trainer.train_step

    def killed_after_13(self):
        if self.step == 13:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", killed_after_13)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(20)  # killed after step 13: the last checkpoint is step 10's
    monkeypatch.undo()
    log = (tmp_path / "b/metrics.jsonl").read_text().splitlines()
    assert len(log) == 13 and torch.load(tmp_path / "b/checkpoint.pt")["step"] == 10
    resumed = train(cfg, resume=True)
    assert resumed.step == 20
    for (k, a), (_, b) in zip(straight.model.state_dict().items(),
                              resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    steps = [json.loads(x)["step"] for x in (tmp_path / "b/metrics.jsonl").read_text().split("\n")
             if x]
    assert steps == list(range(1, 21))  # the lines past the checkpoint were replaced


@pytest.mark.filterwarnings("ignore:skipping")
def test_aux_loss_is_the_entropy_models_own_and_moves_the_quantiles(images, tmp_path):
    cfg = TrainConfig(data=str(images), out=str(tmp_path), steps=5, **TINY)
    trainer = Trainer(cfg)
    model = trainer.model
    x = trainer.sampler.sample(2, torch.Generator().manual_seed(0))
    by_hand = sum(eb.loss() for eb in model.entropy_bottlenecks)
    torch.testing.assert_close(trainer.loss(x)["aux_loss"], by_hand.detach())
    before = [eb.quantiles.detach().clone() for eb in model.entropy_bottlenecks]
    trainer.run(5, checkpoint=False)
    for eb, q in zip(model.entropy_bottlenecks, before, strict=True):
        assert not torch.equal(eb.quantiles, q)  # the aux optimiser trained them
        # ...towards the quantiles of the density: the aux loss fell.
    assert sum(eb.loss() for eb in model.entropy_bottlenecks) < by_hand


@pytest.mark.filterwarnings("ignore:skipping")
def test_resume_with_more_steps_extends_the_learning_rate_schedule(images, tmp_path):
    """A finished run resumed with a larger --steps decays over the new total."""
    train(TrainConfig(data=str(images), out=str(tmp_path), steps=10, **TINY))
    longer = TrainConfig(data=str(images), out=str(tmp_path), steps=40, **TINY)
    train(longer, resume=True)
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert log[10]["lr"] == pytest.approx(lr_at(longer, 10, 40))  # step 11: not the floor
    assert log[10]["lr"] > 0.5 * TINY["lr"]


@pytest.mark.filterwarnings("ignore:skipping")
def test_resume_does_not_read_the_init_source_again(images, tmp_path):
    """Every weight of a resumed run comes from its checkpoint: the --init file may be gone."""
    train(TrainConfig(data=str(images), out=str(tmp_path / "src"), steps=2, **TINY))
    source = tmp_path / "src" / "model.pt"
    cfg = dict(data=str(images), out=str(tmp_path / "run"), init=str(source), **TINY)
    first = train(TrainConfig(steps=10, **cfg))
    at_ten = {k: v.detach().clone() for k, v in first.model.named_parameters()}
    source.unlink()
    resumed = Trainer(TrainConfig(steps=20, **cfg), resuming=True)
    resumed.load_checkpoint()
    probed, step = checkpoint_model(tmp_path / "run")  # what a probe of the run reads
    assert step == 10
    for (k, v), (_, p) in zip(resumed.model.named_parameters(), probed.named_parameters(),
                              strict=True):
        assert torch.equal(v.detach().cpu(), at_ten[k].cpu()), k
        assert torch.equal(p.detach(), at_ten[k].cpu()), k
    with pytest.raises(Exception, match="no such model file"):
        Trainer(TrainConfig(steps=20, **cfg))  # a fresh start still needs it


@pytest.mark.filterwarnings("ignore:skipping")
def test_fresh_start_replaces_stale_logs(images, tmp_path):
    """A run without a checkpoint (killed before its first) starts its logs afresh."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "stale": true}\n' * 3)
    (tmp_path / "lambda_schedule.jsonl").write_text('{"event": "stale"}\n')
    train(TrainConfig(data=str(images), out=str(tmp_path), steps=5, **TINY))
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5] and not any("stale" in r for r in log)
    assert not (tmp_path / "lambda_schedule.jsonl").exists()


@pytest.mark.filterwarnings("ignore:skipping")
def test_resume_refuses_a_different_architecture(images, tmp_path):
    train(TrainConfig(data=str(images), out=str(tmp_path), steps=10, **TINY))
    with pytest.raises(ValueError, match="cannot resume: widths"):
        train(TrainConfig(data=str(images), out=str(tmp_path), steps=20,
                          **{**TINY, "widths": [16, 12]}, ), resume=True)


@pytest.mark.filterwarnings("ignore:skipping")
def test_resume_refuses_a_different_decoder_quantizer(images, tmp_path):
    train(TrainConfig(data=str(images), out=str(tmp_path), steps=10, **TINY))
    assert train(TrainConfig(data=str(images), out=str(tmp_path), steps=10, **TINY),
                 resume=True).model.ste_decoder
    with pytest.raises(ValueError, match="cannot resume: decoder_quantizer"):
        train(TrainConfig(data=str(images), out=str(tmp_path), steps=20,
                          decoder_quantizer="noise", **TINY), resume=True)
    # A checkpoint from before the option existed trained with noise, and says so.
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["config"]["decoder_quantizer"]
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="decoder_quantizer was noise, now ste"):
        train(TrainConfig(data=str(images), out=str(tmp_path), steps=20, **TINY), resume=True)
    train(TrainConfig(data=str(images), out=str(tmp_path), steps=20, decoder_quantizer="noise",
                      **TINY), resume=True)


def test_checkpoint_is_never_half_written(images, tmp_path, monkeypatch):
    """A crash while writing the checkpoint leaves the previous one intact."""
    cfg = TrainConfig(data=str(images), out=str(tmp_path), steps=10, **TINY)
    with pytest.warns(UserWarning):
        train(cfg)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.warns(UserWarning), pytest.raises(OSError, match="disk full"):
        train(TrainConfig(**{**cfg.__dict__, "steps": 20}), resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# -- λ-scheduling on a synthetic RD model ---------------------------------------------------


class SyntheticRD:
    """RD points whose slope for pair i depends only on k_i, the number of 0.8 reductions
    applied to width i+1 relative to width i: slope_i(k) = (k - best_i)^2 + 1."""

    def __init__(self, best):
        self.best = best
        self.lambdas = None

    def measure(self):
        points, bpp, psnr = [], 2.0, 40.0
        points.append((bpp, psnr))
        for i, best in enumerate(self.best):
            k = round(math.log(self.lambdas[i + 1] / self.lambdas[i]) / math.log(0.8))
            slope = (k - best) ** 2 + 1.0
            psnr -= slope * 0.5
            bpp -= 0.5
            points.append((bpp, psnr))
        return points


def run_synthetic(best, max_tries=7):
    rd = SyntheticRD(best)
    rd.lambdas = [0.01] * (len(best) + 1)
    saved = {}
    records = []

    def finetune(lambdas):
        rd.lambdas = list(lambdas)

    def accept(state):
        saved["lambdas"] = list(state.lambdas)

    def rollback(state):
        rd.lambdas = list(saved["lambdas"])

    state = schedule_lambdas(ScheduleState(lambdas=list(rd.lambdas)), rd.measure, finetune,
                             accept, rollback, max_tries=max_tries, log=records.append)
    ks = [round(math.log(state.lambdas[i + 1] / state.lambdas[i]) / math.log(0.8))
          for i in range(len(best))]
    return state, ks, records


def test_lambda_schedule_stops_at_slope_minimum_and_rolls_back():
    state, ks, records = run_synthetic([3, 1, 2, 0])
    assert ks == [3, 1, 2, 0]
    assert state.done
    rolled = [r for r in records if r.get("decision", "").startswith("rolled back")]
    assert [r["pair"] for r in rolled] == [[0, 1], [1, 2], [2, 3], [3, 4]]
    # the overshoot was measured one step past the minimum, then undone
    assert rolled[0]["slope_after"] > rolled[0]["slope_before"]
    # the final points are those of the accepted λ, not of the rolled-back overshoot
    rd = SyntheticRD([3, 1, 2, 0])
    rd.lambdas = state.lambdas
    assert state.points == rd.measure()


def test_lambda_schedule_respects_max_tries():
    _, ks, records = run_synthetic([5, 0], max_tries=2)
    assert ks == [2, 0]
    assert not any(r.get("pair") == [0, 1] and "rolled" in r.get("decision", "")
                   for r in records)


@pytest.mark.filterwarnings("ignore:skipping")
def test_lambda_schedule_through_the_trainer(images, tmp_path, monkeypatch):
    """Stage 2 end to end: the baseline and each try start at --finetune-lr and decay over
    their own steps; the exported model carries the λ the log ends with."""
    val = tmp_path / "val"
    val.mkdir()
    Image.fromarray(natural_like(32, 48, seed=7)).save(val / "v.png")
    seen = []
    step = Trainer.train_step

    def spy(self):
        metrics = step(self)
        seen.append((self.finetune_from, metrics["lr"]))
        return metrics

    monkeypatch.setattr(Trainer, "train_step", spy)
    cfg = TrainConfig(data=str(images), out=str(tmp_path / "run"), steps=4, schedule="lambda",
                      val=str(val), finetune_steps=3, finetune_lr=5e-4, max_tries=2, **TINY)
    train(cfg)
    assert [f for f, _ in seen[:4]] == [None] * 4
    tries = {}
    for start, lr in seen[4:]:
        tries.setdefault(start, []).append(lr)
    assert tries and all(len(lrs) == 3 for lrs in tries.values())
    for lrs in tries.values():
        assert lrs[0] == pytest.approx(5e-4) and lrs[0] > lrs[1] > lrs[2]
    log = [json.loads(x) for x in (tmp_path / "run/lambda_schedule.jsonl").read_text().split("\n")
           if x]
    assert [r["event"] for r in log[:2]] == ["begin", "start"] and log[-1]["event"] == "done"
    # one fine-tune at the starting λ for the baseline, then one per try
    assert len([r for r in log if r["event"] == "try"]) == len(tries) - 1
    model = load_model_file(tmp_path / "run/model.pt")
    assert model_meta(tmp_path / "run/model.pt")["lambdas"] == log[-1]["lambdas"]
    assert model.widths == (16, 8)


@pytest.mark.filterwarnings("ignore:skipping")
def test_lambda_schedule_moves_the_ranges_of_a_variable_rate_model(images, tmp_path,
                                                                    monkeypatch):
    """For slimcae-vr, a try moves the narrower widths' λ ranges (their centres by the
    factor, their log-widths kept) and the exported model carries the moved ranges."""
    val = tmp_path / "val"
    val.mkdir()
    Image.fromarray(natural_like(32, 48, seed=7)).save(val / "v.png")
    monkeypatch.setattr("slimcodec.training.trainer.measure_rd",
                        lambda model, val: _points(model))
    ranges = [0.004, 0.04, 0.002, 0.02]
    cfg = TrainConfig(data=str(images), out=str(tmp_path / "run"), steps=2, schedule="lambda",
                      val=str(val), finetune_steps=1, max_tries=2, arch="slimcae-vr",
                      lambda_ranges=ranges, rate_anchors=2, lambda_bounds=[0.0005, 0.04],
                      **{**TINY, "lambdas": [0.01]})
    trainer = train(cfg)
    model = load_model_file(tmp_path / "run/model.pt")
    (lo0, hi0), (lo1, hi1) = model.lambda_ranges
    assert (lo0, hi0) == pytest.approx((0.004, 0.04))  # the widest never moves
    assert hi1 / lo1 == pytest.approx(10.0)  # log-width kept
    log = [json.loads(x) for x in (tmp_path / "run/lambda_schedule.jsonl").read_text().split("\n")
           if x]
    accepted = [r for r in log if r["event"] == "try" and r["decision"] == "accepted"]
    assert math.sqrt(lo1 * hi1) == pytest.approx(math.sqrt(0.002 * 0.02) * 0.8 ** len(accepted))
    assert trainer.lambdas[1] == pytest.approx(math.sqrt(lo1 * hi1))


def _points(model):
    """RD points whose slope falls as the narrow width's range moves down, then rises."""
    lo, hi = model.lambda_range(model.widths[1])
    centre = math.sqrt(lo * hi)
    drop = math.log(math.sqrt(0.002 * 0.02) / centre) / math.log(1 / 0.8)  # tries so far
    slope = [4.0, 3.0, 2.5, 2.8, 3.5][min(round(drop), 4)]
    return [(1.0, 30.0), (0.5, 30.0 - 0.5 * slope)]


def test_rd_slope():
    assert rd_slope([(1.0, 35.0), (0.5, 32.0)], 0) == pytest.approx(6.0)
    assert rd_slope([(1.0, 35.0), (1.0, 32.0)], 0) == math.inf


# -- distributed ------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, data, out):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    import warnings

    warnings.simplefilter("ignore")
    trainer = train(TrainConfig(data=data, out=out, steps=6, device="cpu", **TINY))
    # parameters (quantiles included); rank 0's export rebuilt its CDF buffers, rank 1's not
    params = {k: v.detach() for k, v in trainer.model.named_parameters()}
    torch.save(params, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_two_process_distributed_training_keeps_ranks_identical(images, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(images), str(tmp_path)), nprocs=2)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and any(k.endswith("quantiles") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and training moved them: they are not the seeded initial weights
    torch.manual_seed(0)
    init = SlimCAE(tuple(TINY["widths"]))
    assert not torch.equal(a["g_a.0.weight"], init.g_a[0].weight)
    assert (tmp_path / "checkpoint.pt").exists()  # written by rank 0 only, once


def test_train_cli(images, tmp_path, capsys):
    code = main(["train", "--data", str(images), "--out", str(tmp_path), "--widths", "16",
                 "8", "--steps", "3", "--patch", "32", "--batch", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and "3 steps" in out
    assert err.startswith("slimcodec: warning: skipping") and "broken.png" in err
    code = main(["train", "--data", str(images), "--out", str(tmp_path), "--schedule", "lambda"])
    assert code == 2 and "--val" in capsys.readouterr().err


def test_run_logs_count_wall_time_across_resumes(tmp_path):
    from slimcodec.training.run_logs import schedule_seconds, training_seconds

    # Two run() calls: 3 s, then a resume whose timer restarts and runs 1.5 s.
    seconds = [1.0, 2.0, 3.0, 0.5, 1.5]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "seconds": s}) + "\n" for i, s in enumerate(seconds)))
    assert training_seconds(tmp_path) == pytest.approx(4.5)
    events = [{"event": "begin", "time": 100.0}, {"event": "try", "time": 130.0},
              {"event": "done", "time": 160.0}]
    (tmp_path / "lambda_schedule.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events))
    assert schedule_seconds(tmp_path) == pytest.approx(60.0)


def test_format_lambdas_names_one_shared_lambda_or_each():
    from slimcodec.training.run_logs import format_lambdas

    assert format_lambdas([0.005] * 5) == "0.005 for all"
    assert format_lambdas([0.005, 0.0008388608]) == "0.00500, 0.00084"


@pytest.mark.filterwarnings("ignore:skipping")
def test_warmup_ramps_the_step_size_and_resumes_inside_the_ramp(images, tmp_path):
    """--warmup 8: steps 1..8 take 1/8..8/8 of the schedule's step size, a run resumed
    inside the ramp goes on with it, and a resume with another warm-up is refused."""
    cfg = dict(data=str(images), out=str(tmp_path), lr_schedule="constant",
               **{**TINY, "checkpoint_every": 4})
    train(TrainConfig(steps=4, warmup=8, **cfg))
    train(TrainConfig(steps=12, warmup=8, **cfg), resume=True)
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert [r["lr"] for r in log] == pytest.approx(
        [TINY["lr"] * min(1.0, step / 8) for step in range(1, 13)])
    cosine = TrainConfig(steps=12, warmup=8, **{**cfg, "lr_schedule": "cosine"})
    assert lr_at(cosine, 3, 12) == pytest.approx(4 / 8 * cosine_lr(TINY["lr"], 3, 12))
    with pytest.raises(ValueError, match="cannot resume: warmup"):
        train(TrainConfig(steps=16, warmup=2, **cfg), resume=True)
    with pytest.raises(ValueError, match="warmup"):
        TrainConfig(steps=4, warmup=-1, **cfg)


@pytest.mark.filterwarnings("ignore:skipping")
def test_checkpoint_from_before_warmup_and_rate_quantizer_resumes(images, tmp_path):
    """A checkpoint written before --warmup and --rate-quantizer existed trained without a
    ramp and with the noisy rate: it resumes with those defaults, and says so otherwise."""
    cfg = dict(data=str(images), out=str(tmp_path), **TINY)
    train(TrainConfig(steps=10, **cfg))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["config"]["warmup"], state["config"]["rate_quantizer"]
    torch.save(state, tmp_path / "checkpoint.pt")
    assert train(TrainConfig(steps=12, **cfg), resume=True).step == 12
    with pytest.raises(ValueError, match="warmup was 0, now 5"):
        train(TrainConfig(steps=14, warmup=5, **cfg), resume=True)
