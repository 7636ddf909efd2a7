"""``slimcodec train``: joint training of every width, resumable and distributable.

* Every step runs every width on the same batch (:class:`MultiWidthRDLoss`).
* Adam on the network, a second Adam on the entropy models' quantiles (the aux loss).
* Learning rate: constant or cosine decay to 1% over the run.
* ``RUN_DIR/metrics.jsonl``: one line per step; ``RUN_DIR/checkpoint.pt``: every K steps,
  written atomically; ``--resume`` continues from it, and gives the same parameters as an
  uninterrupted run, because each step's batch and quantisation noise are seeded from
  ``(seed, step, rank)`` rather than from a running random state.
* Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` set) it trains with
  DistributedDataParallel, gloo on CPU and nccl on GPU; rank ``r`` draws its own batches,
  and only rank 0 writes files.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from slimcodec.errors import ImageError, ModelFileError
from slimcodec.models import CheckerboardSlimCAE, HyperpriorSlimCAE, ModulatedSlimCAE, SlimCAE
from slimcodec.models.modulated import as_float32
from slimcodec.utils.image import find_images, load_rgb
from slimcodec.utils.io import atomic_write
from slimcodec.utils.tensors import to_tensor
from slimcodec.zoo import load_model, save_model_file
from slimcodec.zoo.checkpoint import build

from .data import DeviceCrops, MixedSampler, PatchSampler, parse_mix
from .lambda_schedule import ScheduleState, schedule_lambdas
from .loss import MultiWidthRDLoss
from .revive import dead_channels, revive_channels

__all__ = ["TrainConfig", "Trainer", "saved_config", "train"]

CHECKPOINT = "checkpoint.pt"
REVIVE_CROPS = 16  # training crops on which --revive finds the dead channels
METRICS = "metrics.jsonl"
SCHEDULE_LOG = "lambda_schedule.jsonl"
MODEL_FILE = "model.pt"
# Config keys added later, with the value that runs written before them had.
ARCHS = ("slimcae", "slimcae-vr", "slimcae-hp", "slimcae-hpc")
#: The architectures with a hyperprior (slimcae-hpc: with a checkerboard mean context).
HYPERPRIOR_ARCHS = ("slimcae-hp", "slimcae-hpc")
LEGACY_CONFIG = {"decoder_quantizer": "noise", "arch": "slimcae", "lambda_ranges": None,
                 "rate_anchors": 8, "lambda_bounds": None, "stage": "joint", "mix": None,
                 "hyper_hidden": 1.0, "crops": "host", "lambda_per": "batch",
                 "precision": "fp32", "log_every": 1, "warmup": 0,
                 "rate_quantizer": "noise"}
#: What a resumed run must share with the run it continues (each changes the batches, the
#: noise or the arithmetic of every later step).
RESUME_KEYS = ("arch", "widths", "gdn", "patch", "batch", "seed", "decoder_quantizer", "mix",
               "hyper_hidden", "crops", "lambda_per", "precision", "log_every", "warmup",
               "rate_quantizer")


def saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A config as a checkpoint or model file stored it, keys added since filled in."""
    return {**LEGACY_CONFIG, **saved}


@dataclass
class TrainConfig:
    data: str
    out: str
    widths: list[int] = field(default_factory=lambda: [192, 144, 96, 72, 48])
    lambdas: list[float] = field(default_factory=lambda: [0.013])  # one λ: every width
    gdn: str = "slim+"
    # "slimcae" (one λ per width), "slimcae-vr" (λ-modulated: every step samples a λ per
    # width, log-uniform in that width's range) or "slimcae-hp" (slimcae-vr with a
    # mean-scale hyperprior).
    # (the rest of this comment is slimcae-vr's:)
    # width, log-uniform in that width's range).
    arch: str = "slimcae"
    # slimcae-vr: LOW HIGH for every width, or one pair per width (widest first);
    # None: the architecture's defaults.
    lambda_ranges: list[float] | None = None
    # slimcae-vr: entropy models per width. One, as measured in the `vr_penalty` section of
    # benchmarks/variable_rate.py: with anchors, each density sees 1/K of the λ draws and
    # lags behind (`slimcae-vr` itself ships 8, chosen by a shorter run of that benchmark).
    rate_anchors: int = 1
    # slimcae-hp: the hyper-syntheses' hidden channels, a fraction of the width (both run on
    # the decoder's path: 1/2 divides their multiply-adds by about 2.5).
    hyper_hidden: float = 1.0
    # slimcae-vr: LOW HIGH, the λ any width may ever use (room for λ-scheduling to move the
    # ranges); None: from the lowest range's low to the highest range's high.
    lambda_bounds: list[float] | None = None
    init: str | None = None  # start from a model file or registered pretrained model
    # Revive the --init model's dead latent channels (training/revive.py), their modulation
    # set this many log units below the live channels'. None: leave them.
    revive: float | None = None
    # Other sources of crops, each with the fraction of crops drawn from it (the rest come
    # from `data`): a folder, or a generated domain ("screen", "illustration") rendered in
    # memory. ["screen=0.15", "illustration=0.1"] or {"screen": 0.15, ...}.
    mix: list[str] | dict[str, float] | None = None
    steps: int = 10_000
    patch: int = 128
    batch: int = 8
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_schedule: str = "cosine"  # or "constant"
    # Steps of linear warm-up from a fresh optimizer (a run's step 0). Adam's first updates
    # move every weight by about the step size whatever its gradient, which knocks trained
    # weights (--init) off their optimum before the moments settle; 0: none.
    warmup: int = 0
    # What the decoder sees in training: the rounded latent through a straight-through
    # gradient ("ste", as at test time) or the noisy one ("noise", Ballé et al.'s relaxation).
    decoder_quantizer: str = "ste"
    # What the rate term prices in training (slimcae-hp): the noisy latent ("noise", Ballé
    # et al.'s relaxation) or the rounded symbols the coder sends, through a straight-through
    # gradient ("ste": HyperpriorSlimCAE.ste_rate), for fine-tuning a trained model.
    rate_quantizer: str = "noise"
    # "joint": every weight trains on the RD loss. "entropy" (slimcae-hp): the transforms
    # (and modulations, latent gain) stay as they are and only the hyperprior and z's
    # densities train, on the rate alone: the distortion does not depend on them but for
    # the rounding offsets, and the synthesis (most of a step's cost) is skipped. A new
    # hyperprior on trained transforms learns in a fraction of the steps that way.
    # "encoder": only the encoder's side (model.ENCODER_PARAMETERS: g_a, its modulations,
    # h_a) trains, on the RD loss; the decoder and the densities stay bit for bit, so the
    # decoder reads the old encoder's strings as before (the new model file still has a
    # fingerprint of its own, which a file's header names).
    # "decoder": only the synthesis side (model.DECODER_PARAMETERS: g_s, its modulations)
    # trains, on the distortion of the latent the coder sends (--decoder-quantizer ste, and
    # for slimcae-hp --rate-quantizer ste, so that the means come from ẑ's symbols): every
    # string the model writes stays bit for bit, the rate with it.
    # "context" (slimcae-hpc): as "entropy", but only the checkerboard mean context
    # (model.CONTEXT_PARAMETERS) trains, around a trained hyperprior (--init slimcae-hp):
    # the anchors' strings stay bit for bit.
    stage: str = "joint"
    clip: float = 1.0
    # -- keeping a GPU busy (docs/gpu_training.md). Each changes a run's random stream or
    # arithmetic, so a run resumes only with the values it started with.
    # "host": crops cut one by one on the CPU and copied over; "device": every image held
    # on the training device as uint8, a batch cut there in one gather (DeviceCrops).
    crops: str = "host"
    # slimcae-vr/-hp: one λ per width for the whole batch ("batch"), or one per image and
    # width ("image": every step sees the whole range; needs one entropy model per width).
    lambda_per: str = "batch"
    # "bf16": the transforms under bfloat16 autocast; the entropy models, the hyperprior
    # and the loss stay float32.
    precision: str = "fp32"
    # Write the log every K steps. K > 1 makes a step free of host synchronisation: the
    # metrics stay on the device until then, and a step whose gradient is not finite is
    # skipped on the device (fused Adam's found_inf) instead of by a host-side test.
    log_every: int = 1
    # Compile the step's forward and backward (torch.compile, inductor): on a GPU, where a
    # step of small convolutions is bound by launching its thousands of operations one by one,
    # fused kernels are fewer launches. The first step compiles (minutes); the arithmetic
    # differs from eager only by rounding (the same noise), so a run may resume with it on
    # or off.
    compile: bool = False
    checkpoint_every: int = 500
    # Seconds this session may train: then the run stops at a step's end, checkpoints and
    # writes its model file (a GPU slot's end); --resume continues it. None: no limit.
    time_limit: float | None = None
    seed: int = 0
    device: str = "auto"
    # λ-scheduling (stage 2, after `steps` steps of joint training)
    schedule: str = "fixed"  # or "lambda"
    val: str | None = None
    finetune_steps: int = 200
    finetune_lr: float = 1e-4
    lambda_factor: float = 0.8
    max_tries: int = 7

    def __post_init__(self) -> None:
        if len(self.lambdas) == 1:
            self.lambdas = self.lambdas * len(self.widths)
        if len(self.lambdas) != len(self.widths):
            raise ValueError("give one λ, or one per width")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}")
        if self.lambda_ranges is not None:
            pairs = len(self.lambda_ranges) // 2
            if len(self.lambda_ranges) % 2 or pairs not in (1, len(self.widths)):
                raise ValueError("give one LOW HIGH λ range, or one pair per width")
            if pairs == 1:
                self.lambda_ranges = list(self.lambda_ranges) * len(self.widths)
        self.mix = parse_mix(self.mix) or None
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown lr schedule {self.lr_schedule!r}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be 0 or more steps, not {self.warmup}")
        if self.stage not in ("joint", "entropy", "context", "encoder", "decoder"):
            raise ValueError(f"unknown training stage {self.stage!r}")
        if self.stage == "decoder" and (self.decoder_quantizer != "ste" or (
                self.arch in HYPERPRIOR_ARCHS and self.rate_quantizer != "ste")):
            raise ValueError("--stage decoder trains on the latent the coder sends: "
                             "--decoder-quantizer ste (and --rate-quantizer ste for "
                             "slimcae-hp)")
        if self.stage == "entropy" and self.arch not in HYPERPRIOR_ARCHS:
            raise ValueError("--stage entropy trains a hyperprior (--arch slimcae-hp or "
                             "slimcae-hpc)")
        if self.stage == "context" and self.arch != "slimcae-hpc":
            raise ValueError("--stage context trains a checkerboard context (--arch "
                             "slimcae-hpc)")
        if self.decoder_quantizer not in ("ste", "noise"):
            raise ValueError(f"unknown decoder quantizer {self.decoder_quantizer!r}")
        if self.rate_quantizer not in ("noise", "ste"):
            raise ValueError(f"unknown rate quantizer {self.rate_quantizer!r}")
        if self.rate_quantizer == "ste" and self.arch not in HYPERPRIOR_ARCHS:
            raise ValueError("--rate-quantizer ste prices a hyperprior's symbols "
                             "(--arch slimcae-hp or slimcae-hpc)")
        if self.crops not in ("host", "device"):
            raise ValueError(f"unknown crop source {self.crops!r}")
        if self.lambda_per not in ("batch", "image"):
            raise ValueError(f"unknown λ sampling {self.lambda_per!r}")
        if self.lambda_per == "image" and (self.arch == "slimcae" or (
                self.arch == "slimcae-vr" and self.rate_anchors != 1)):
            raise ValueError("--lambda-per image needs a variable-rate model with one entropy "
                             "model per width (--arch slimcae-hp, or slimcae-vr "
                             "--rate-anchors 1)")
        if self.revive is not None and (not self.init or self.arch == "slimcae"):
            raise ValueError("--revive needs --init and a variable-rate model")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {self.precision!r}")
        if self.log_every < 1:
            raise ValueError("--log-every must be at least 1")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError("--time-limit must be a positive number of seconds")
        if self.schedule not in ("fixed", "lambda"):
            raise ValueError(f"unknown λ schedule {self.schedule!r}")
        if self.schedule == "lambda" and not self.val:
            raise ValueError("λ-scheduling measures RD slopes on validation images: give --val")


#: What a training checkpoint holds (and what --resume needs of it).
CHECKPOINT_FIELDS = {"config": dict, "model": dict, "optimizer": dict, "aux_optimizer": dict,
                     "step": int}


def read_checkpoint(path: str | os.PathLike, device: Any = "cpu") -> dict[str, Any]:
    """A run's checkpoint, loaded with ``weights_only`` (no code runs); a one-line
    :class:`ModelFileError` for anything else (torch's own message advises loading the
    file unsafely)."""
    try:
        with warnings.catch_warnings():  # torch's advice about pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such checkpoint") from None
    except Exception:
        raise ModelFileError(f"{path}: not a slimcodec training checkpoint (unreadable or "
                             "damaged); move it away to start the run afresh") from None
    if not isinstance(state, dict) or any(not isinstance(state.get(k), t)
                                          for k, t in CHECKPOINT_FIELDS.items()):
        raise ModelFileError(f"{path}: not a slimcodec training checkpoint (fields missing)")
    return state


def checkpoint_lambda_ranges(state: dict[str, Any]) -> list[tuple[float, float]] | None:
    """A λ-scheduled variable-rate run's current ranges, as its checkpoint keeps them."""
    ranges = state.get("lambda_ranges")
    return [(float(lo), float(hi)) for lo, hi in ranges] if ranges else None


def checkpoint_model(run: str | os.PathLike) -> tuple[SlimCAE, int]:
    """The model of a run's last checkpoint, as a resumed run would have it, and its step
    (read only: for looking at a run while it trains)."""
    state = read_checkpoint(Path(run) / CHECKPOINT)
    model = build_model(TrainConfig(**saved_config(state["config"])))
    model.load_state_dict(state["model"])
    if (ranges := checkpoint_lambda_ranges(state)) is not None:
        model.lambda_ranges = ranges
    model.update(force=True)
    return model.eval(), state["step"]


def build_model(cfg: TrainConfig) -> SlimCAE:
    """The untrained model ``cfg`` describes."""
    kwargs: dict[str, Any] = {"widths": tuple(cfg.widths), "gdn": cfg.gdn}
    if cfg.arch in ("slimcae-vr", *HYPERPRIOR_ARCHS):
        if cfg.arch == "slimcae-vr":
            kwargs["rate_anchors"] = cfg.rate_anchors
        else:
            if cfg.rate_anchors != 1:
                raise ValueError(f"{cfg.arch} has one entropy model per width: "
                                 "--rate-anchors 1")
            kwargs["hyper_hidden"] = cfg.hyper_hidden
        kwargs["latent_gain"] = True
        if cfg.lambda_bounds is not None:
            kwargs["lambda_bounds"] = list(cfg.lambda_bounds)
        if cfg.lambda_ranges is not None:
            r = cfg.lambda_ranges
            kwargs["lambda_ranges"] = [r[i : i + 2] for i in range(0, len(r), 2)]
    return build(cfg.arch, kwargs)


def init_from(model: SlimCAE, source: SlimCAE) -> None:
    """Start ``model`` from ``source``'s weights.

    A model of the same architecture is copied whole. A variable-rate model can also start
    from a plain SlimCAE of the same widths and GDN: its transforms are copied, and its
    modulations (which start as the identity) and entropy models are left new; or from a
    variable-rate model of other λ ranges and bounds, moved to the new bounds.
    """
    if list(source.widths) != list(model.widths):
        raise ValueError(f"--init model has widths {source.widths}, not {model.widths}")
    if source.gdn != model.gdn:
        raise ValueError(f"--init model has GDN {source.gdn!r}, not {model.gdn!r} "
                         f"(pass --gdn {source.gdn})")
    if type(source) is type(model) and source.config == model.config:
        model.load_state_dict(source.state_dict())
        return
    if isinstance(model, HyperpriorSlimCAE):
        _init_hyperprior_from_modulated(model, source)
        return
    if isinstance(source, ModulatedSlimCAE) and isinstance(model, ModulatedSlimCAE):
        if (source.latent_gain is None) == (model.latent_gain is None):
            _init_modulated_at_other_bounds(model, source)
        else:
            _init_gained_from_modulated(model, source)
        return
    if not isinstance(model, ModulatedSlimCAE) or type(source) is not SlimCAE:
        raise ValueError(f"cannot start a {type(model).__name__} from a "
                         f"{type(source).__name__}")
    transforms = {k: v for k, v in source.state_dict().items() if k.startswith(("g_a.", "g_s."))}
    missing, unexpected = model.load_state_dict(transforms, strict=False)
    if unexpected or any(k.startswith(("g_a.", "g_s.")) for k in missing):
        raise ValueError(f"--init transforms do not fit: missing {missing}, extra {unexpected}")
    # Every anchor of a width starts from that width's density: with the modulations at
    # the identity, the latents are the source's (times the latent gain at the anchor's λ,
    # which the density is stretched by), and a fresh density would cost several bpp.
    k = model.rate_anchors
    with torch.no_grad():
        for i, src in enumerate(source.entropy_bottlenecks):
            for dst in model.entropy_bottlenecks[i * k : (i + 1) * k]:
                for p_src, p_dst in zip(src.parameters(), dst.parameters(), strict=True):
                    p_dst.copy_(p_src)
    if model.latent_gain is not None:
        _stretch_anchor_densities(model)


def _at_bounds_of(model: ModulatedSlimCAE, source: ModulatedSlimCAE) -> ModulatedSlimCAE:
    """``source``, or a copy of it moved to ``model``'s λ bounds (:meth:`~slimcodec.models.
    ModulatedSlimCAE.move_lambda_bounds`: it computes what it did at every λ). Other λ
    ranges need other bounds: with the same ones, the ranges must match."""
    if tuple(source.lambda_bounds) != tuple(model.lambda_bounds):
        source = copy.deepcopy(source)
        try:
            source.move_lambda_bounds(model.lambda_bounds)
        except ValueError as e:
            raise ValueError(f"--init model's λ bounds {list(source.lambda_bounds)} cannot "
                             f"move: {e}") from None
    elif source.config["lambda_ranges"] != model.config["lambda_ranges"]:
        raise ValueError("--init model must match in λ ranges (pass its --lambda-ranges; "
                         "other ranges need --lambda-bounds wider than its own)")
    return source


def _init_modulated_at_other_bounds(model: ModulatedSlimCAE, source: ModulatedSlimCAE) -> None:
    """A variable-rate model from one of other λ ranges (a higher top for the widest width):
    every weight copied, the modulations moved to the new bounds (:func:`_at_bounds_of`), so
    the new model starts out computing what the source did at every λ of the source's."""
    if any(source.config[k] != model.config[k] for k in ("rate_anchors", "hidden")):
        raise ValueError("--init variable-rate model must match in anchors and hidden units")
    source = _at_bounds_of(model, source)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"--init weights do not fit: missing {missing}, extra {unexpected}")


def _init_gained_from_modulated(model: ModulatedSlimCAE, source: ModulatedSlimCAE) -> None:
    """A variable-rate model with a latent gain, from one without.

    Everything is copied; then each anchor's density is stretched by the gain at its λ, so
    that it fits the gained latent as the source's density fit the ungained one.
    """
    same = ("lambda_ranges", "rate_anchors", "hidden")
    if source.latent_gain is not None or model.latent_gain is None or any(
            source.config[k] != model.config[k] for k in same):
        raise ValueError("--init variable-rate model must match in λ ranges, anchors and "
                         "hidden units, and have no latent gain when the new one has")
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any(not k.startswith("latent_gain.") for k in missing):
        raise ValueError(f"--init weights do not fit: missing {missing}, extra {unexpected}")
    _stretch_anchor_densities(model)


def _init_hyperprior_from_modulated(model: HyperpriorSlimCAE, source: SlimCAE) -> None:
    """A hyperprior model from a variable-rate one: transforms, modulations and latent gain
    are copied; the hyperprior (and the densities of z) start new. From a hyperprior model
    of other hyper-synthesis widths (``--hyper-hidden``), ``h_a`` and z's densities are
    copied too, and only the two syntheses start new; of the same widths, everything.

    Other λ ranges than the source's need other λ bounds (``--lambda-bounds``): the source's
    modulations are moved to them exactly (:meth:`~slimcodec.models.ModulatedSlimCAE.
    move_lambda_bounds`), so the new model starts out computing what the source did."""
    if (type(source) not in (ModulatedSlimCAE, HyperpriorSlimCAE, CheckerboardSlimCAE)
            or source.latent_gain is None):
        raise ValueError("--init of a hyperprior model must be a slimcae-vr model with a "
                         "latent gain or a hyperprior model, not a "
                         f"{type(source).__name__}")
    if source.config["hidden"] != model.config["hidden"]:
        raise ValueError("--init model must match in hidden units")
    source = _at_bounds_of(model, source)
    same_hyper = (isinstance(source, HyperpriorSlimCAE)
                  and source.hyper_hidden == model.hyper_hidden)
    dropped = (() if same_hyper else ("h_mean.", "h_scale.", "gaussian_conditional.")
               if isinstance(source, HyperpriorSlimCAE) else ("entropy_bottlenecks.",))
    kept = {k: v for k, v in source.state_dict().items() if not k.startswith(dropped)}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    # (mean_context.: a checkerboard model's context starts new from a plain hyperprior.)
    new = ("entropy_bottlenecks.", "h_a.", "h_mean.", "h_scale.", "gaussian_conditional.",
           "mean_context.")
    if unexpected or any(not k.startswith(new) for k in missing):
        raise ValueError(f"--init weights do not fit: missing {missing}, extra {unexpected}")


def _stretch_anchor_densities(model: ModulatedSlimCAE) -> None:
    """Stretch each anchor's density by the latent gain at the anchor's λ."""
    with torch.no_grad():
        for i, width in enumerate(model.widths):
            model.set_width(width)
            for j, anchor in enumerate(model.anchors()):
                _, log_ratio = model.conditions(torch.tensor([anchor]))
                gain = model.gain(log_ratio)[0, :, 0, 0]
                stretch_density(model.entropy_bottlenecks[i * model.rate_anchors + j], gain)
        model.set_width(model.widths[0])


def stretch_density(bottleneck: EntropyBottleneck, gain: torch.Tensor) -> None:
    r"""Make ``bottleneck`` the density of ``gain * y`` where it was that of ``y``.

    compressai's cumulative is :math:`c(y) = f(\dots f(H_0 y + b_0) \dots)` with
    :math:`H_0 = \mathrm{softplus}(\text{matrix}_0)` per channel; :math:`c(y/g)` divides
    :math:`H_0` by :math:`g`, and the quantiles scale with it.
    """
    matrix = bottleneck.matrices[0]
    h0 = F.softplus(matrix) / gain[:, None, None]
    matrix.copy_(h0 + torch.log(-torch.expm1(-h0)))  # softplus⁻¹
    bottleneck.quantiles.mul_(gain[:, None, None])


def centred_range(centre: float, lo: float, hi: float, bounds: tuple[float, float]
                  ) -> tuple[float, float]:
    """The range of log-width ``hi / lo`` centred (geometrically) on ``centre``, shifted or,
    at worst, shrunk to stay within the model's ``bounds``."""
    half = math.sqrt(hi / lo)
    new_lo, new_hi = centre / half, centre * half
    if new_lo < bounds[0]:
        new_lo, new_hi = bounds[0], min(bounds[1], bounds[0] * half * half)
    if new_hi > bounds[1]:
        new_lo, new_hi = max(bounds[0], bounds[1] / (half * half)), bounds[1]
    return new_lo, new_hi


def sample_lambdas(ranges: list[tuple[float, float]], generator: torch.Generator) -> list[float]:
    """One λ per width, log-uniform in that width's range."""
    u = torch.rand(len(ranges), generator=generator, dtype=torch.float64).tolist()
    return [as_float32(lo * (hi / lo) ** ui) for (lo, hi), ui in zip(ranges, u, strict=True)]


def log_ranges(ranges: list[tuple[float, float]], device: torch.device) -> torch.Tensor:
    """``(widths, 2)``: each λ range's log low end and log width, on ``device``."""
    return torch.tensor([[math.log(lo), math.log(hi / lo)] for lo, hi in ranges],
                        device=device)


def sample_image_lambdas(logs: torch.Tensor, batch: int,
                         generator: torch.Generator) -> torch.Tensor:
    """``(widths, batch)`` float32 λs, each log-uniform in its width's range (``logs``:
    :func:`log_ranges`), drawn on the generator's device."""
    u = torch.rand(len(logs), batch, generator=generator, device=generator.device)
    return torch.exp(logs[:, :1] + u * logs[:, 1:])


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def cosine_lr(peak: float, step: int, total: int) -> float:
    """Cosine decay from ``peak`` at step 0 to 1% of it at ``total``."""
    floor = 0.01 * peak
    progress = min(step / total, 1.0) if total > 0 else 1.0
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """The step size of ``step``: the schedule's, ramped up linearly over ``cfg.warmup``."""
    lr = cfg.lr if cfg.lr_schedule == "constant" else cosine_lr(cfg.lr, step, total)
    return lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup > 0 else lr


class Trainer:
    """Holds the model, optimizers and run directory; :meth:`run` trains to a step count.

    The λ-scheduler drives one trainer through several fine-tunes, changing ``lambdas``
    and calling :meth:`run` with a growing target step.
    """

    def __init__(self, cfg: TrainConfig, resuming: bool = False) -> None:
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.out = Path(cfg.out)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)

        if self.device.type == "cuda":  # TF32 convolutions and matmuls: ~2x, no visible loss
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = build_model(cfg)
        # A resumed run takes every weight from its checkpoint: the --init source is not
        # read again (it may have changed or gone since the run started).
        if cfg.init and not resuming:
            init_from(model, load_model(cfg.init))
        self.variable_rate = isinstance(model, ModulatedSlimCAE)
        self.model: SlimCAE = model.to(self.device).train()
        self.model.ste_decoder = cfg.decoder_quantizer == "ste"
        self.model.ste_rate = cfg.rate_quantizer == "ste"
        if cfg.stage in ("entropy", "context"):
            self.model.rate_only = True
        trained = {"entropy": getattr(model, "ENTROPY_PARAMETERS", None),
                   "context": getattr(model, "CONTEXT_PARAMETERS", None),
                   "encoder": model.ENCODER_PARAMETERS,
                   "decoder": model.DECODER_PARAMETERS}.get(cfg.stage)  # None: every weight
        if trained is not None:
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith(trained))
        self.loss = MultiWidthRDLoss(self.model, cfg.lambdas)
        # A variable-rate step trains one entropy model per width (its λ's anchor): the
        # others get no gradient in that step, which DDP must be told.
        self.net = (DistributedDataParallel(self.loss, find_unused_parameters=self.variable_rate)
                    if self.world > 1 else self.loss)
        if cfg.compile:
            # The quantisation noise from eager's generator, not inductor's own: the same
            # draws as an eager step, so that a run resumes with --compile on or off.
            import torch._inductor.config as inductor

            inductor.fallback_random = True
            self.net = torch.compile(self.net)
        main = [p for n, p in model.named_parameters()
                if not n.endswith("quantiles") and p.requires_grad]
        # (Frozen quantiles get no gradient, so the aux step leaves them as they are.)
        aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
        self.main_params = main
        # Fused Adam takes a device-side "skip this step" flag (found_inf), which a step free
        # of host synchronisation needs.
        self.sync_free = cfg.log_every > 1
        self.optimizer = torch.optim.Adam(main, lr=cfg.lr, fused=self.sync_free or None)
        self.aux_optimizer = torch.optim.Adam(aux, lr=cfg.aux_lr, fused=self.sync_free or None)
        sampler = (MixedSampler.from_mix(cfg.data, cfg.mix, cfg.patch) if cfg.mix
                   else PatchSampler(cfg.data, cfg.patch))
        self.sampler: PatchSampler | MixedSampler | DeviceCrops = (
            DeviceCrops(sampler, self.device) if cfg.crops == "device" else sampler)
        if cfg.revive is not None and not resuming:
            # Dead channels are found on crops of the training data, drawn with the seed.
            crops = sampler.sample(REVIVE_CROPS, torch.Generator().manual_seed(cfg.seed))
            revived = revive_channels(model, dead_channels(model, crops.to(self.device)),
                                      cfg.revive)
            if self.is_main:
                print(f"revived {revived} of {max(model.widths)} latent channels")
        self.step = 0
        self.started = time.perf_counter()  # for cfg.time_limit
        self._log_ranges: tuple[Any, Any] = (None, None)  # (ranges, log_ranges(ranges))
        self.out_of_time = False
        # λ-schedule tries: the step a try began at. Each try decays from --finetune-lr over
        # its own steps, so the RD measure after it sees a settled model, not one mid-stride.
        self.finetune_from: int | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def lambdas(self) -> list[float]:
        """One λ per width, what λ-scheduling moves: a single-rate model's training λ, or
        the (geometric) centre of each width's λ range for a variable-rate model."""
        if self.variable_rate:
            return [math.sqrt(lo * hi) for lo, hi in self.model.lambda_ranges]
        return self.loss.lambdas

    @lambdas.setter
    def lambdas(self, values: list[float]) -> None:
        if self.variable_rate:  # move each range to its new centre, keeping its log-width
            self.model.lambda_ranges = [
                centred_range(float(v), lo, hi, self.model.lambda_bounds)
                for v, (lo, hi) in zip(values, self.model.lambda_ranges, strict=True)]
        else:
            self.loss.lambdas = [float(v) for v in values]

    # -- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "lambdas": self.lambdas,
            "lambda_ranges": self.model.lambda_ranges if self.variable_rate else None,
            "config": dataclasses.asdict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
        }

    def save_checkpoint(self, extra: dict[str, Any] | None = None) -> None:
        if self.is_main:
            state = {**self.state(), **(extra or {})}
            atomic_write(self.out / CHECKPOINT, lambda f: torch.save(state, f))

    def load_checkpoint(self) -> dict[str, Any]:
        """Restore the last checkpoint; returns it (the λ-scheduler keeps its own keys)."""
        path = self.out / CHECKPOINT
        state = read_checkpoint(path, self.device)
        saved = saved_config(state["config"])
        for key in RESUME_KEYS:
            if saved[key] != getattr(self.cfg, key):
                raise ValueError(f"cannot resume: {key} was {saved[key]}, "
                                 f"now {getattr(self.cfg, key)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        # The cosine horizon is always this run's --steps: resuming with a larger --steps
        # extends the run instead of finishing it at the floor learning rate.
        self.step = state["step"]
        ranges = checkpoint_lambda_ranges(state)
        if self.variable_rate and ranges is not None:
            self.model.lambda_ranges = ranges
        else:
            self.lambdas = state["lambdas"]
        if self.is_main:
            self._truncate_metrics(self.step)
        return state

    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines past the checkpoint: they will be written again."""
        path = self.out / METRICS
        if not path.exists():
            return
        keep = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        atomic_write(path, lambda f: f.write("".join(k + "\n" for k in keep).encode()))

    # -- training -------------------------------------------------------------------------

    def train_step(self) -> dict[str, Any]:
        """One step; its log record (tensors still on the device when ``sync_free``: see
        :meth:`records`)."""
        cfg = self.cfg
        seed = step_seed(cfg.seed, self.step, self.rank)
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # the entropy models' quantisation noise
        # Draws on the device come from a generator there (seeding it is host-side state).
        draws = (torch.Generator(self.device).manual_seed(seed)
                 if cfg.crops == "device" else generator)
        x = self.sampler.sample(cfg.batch, draws).to(self.device)
        lambdas = None
        if self.variable_rate and cfg.lambda_per == "image":
            # The ranges' logs go to the device once (a copy from the host would wait for
            # the device), again only when λ-scheduling moves the ranges.
            ranges = tuple(self.model.lambda_ranges)
            if self._log_ranges[0] != ranges:
                self._log_ranges = (ranges, log_ranges(list(ranges), draws.device))
            lambdas = sample_image_lambdas(self._log_ranges[1], cfg.batch,
                                           draws).to(self.device)
        elif self.variable_rate:
            self.loss.lambdas = sample_lambdas(self.model.lambda_ranges, generator)
        if self.finetune_from is None:
            lr = lr_at(cfg, self.step, cfg.steps)
        else:
            lr = cosine_lr(cfg.finetune_lr, self.step - self.finetune_from, cfg.finetune_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        self.aux_optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=cfg.precision == "bf16"):
            out = self.net(x, lambdas)
        out["loss"].backward()
        norm = nn.utils.clip_grad_norm_(self.main_params, cfg.clip if cfg.clip > 0 else math.inf)
        # A non-finite gradient (an overflowing batch) would poison every weight through
        # Adam's moments: such a step is skipped, and its log line says so.
        if self.sync_free:  # decided on the device: fused Adam leaves weights and moments
            skipped = (~torch.isfinite(norm)).float()  # alone where found_inf is 1
            self.optimizer.found_inf = self.aux_optimizer.found_inf = skipped
            self.optimizer.step()
            self.aux_optimizer.step()
        else:
            skipped = not bool(torch.isfinite(norm))
            if not skipped:
                self.optimizer.step()
                self.aux_optimizer.step()
        self.step += 1
        record = {"step": self.step, "lr": lr, "loss": out["rd_loss"], "aux": out["aux_loss"],
                  "bpp": out["bpp"], "mse": out["mse"], "skipped": skipped,
                  "lambdas": self.loss.lambdas if lambdas is None else "per image"}
        return record if self.sync_free else self.records([record])[0]

    @staticmethod
    def records(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Log lines from :meth:`train_step`'s records, their tensors fetched from the device
        in one transfer."""
        if not pending:
            return []
        values = torch.stack([torch.cat([torch.as_tensor(r[k], dtype=torch.float32,
                                                         device=r["loss"].device).reshape(-1)
                                         for k in ("loss", "aux", "skipped", "bpp", "mse")])
                              for r in pending]).cpu().tolist()
        lines = []
        for r, row in zip(pending, values, strict=True):
            widths = len(r["bpp"])
            bpp, mse = row[3 : 3 + widths], row[3 + widths :]
            line = {"step": r["step"], "lr": r["lr"], "loss": row[0], "aux": row[1], "bpp": bpp,
                    "psnr": [10 * math.log10(1 / max(m, 1e-10)) if math.isfinite(m) else m
                             for m in mse]}
            if row[2]:
                line["skipped"] = True
            line["lambdas"] = r["lambdas"]
            if "seconds" in r:
                line["seconds"] = r["seconds"]
            lines.append(line)
        return lines

    def run(self, until: int, desc: str = "train", checkpoint: bool = True) -> None:
        """Train until ``self.step == until``, logging every step, checkpointing every K.

        ``checkpoint=False`` for λ-schedule trials, which are persisted only once accepted.
        """
        bar = tqdm(total=until, initial=self.step, desc=desc, unit="step", file=sys.stderr,
                   disable=not self.is_main, dynamic_ncols=True)
        log = (self.out / METRICS).open("a") if self.is_main else None
        t0 = time.perf_counter()
        pending: list[dict[str, Any]] = []

        def write_log() -> None:
            for metrics in self.records(pending) if self.sync_free else pending:
                if log:
                    log.write(json.dumps(metrics) + "\n")
                bar.set_postfix(loss=f"{metrics['loss']:.3f}",
                                bpp=f"{metrics['bpp'][0]:.3f}/{metrics['bpp'][-1]:.3f}",
                                psnr=f"{metrics['psnr'][0]:.1f}/{metrics['psnr'][-1]:.1f}")
            if log:
                log.flush()
            pending.clear()

        deadline = (math.inf if self.cfg.time_limit is None or not checkpoint
                    else self.started + self.cfg.time_limit)  # (not inside λ-schedule tries)
        try:
            while self.step < until:
                if time.perf_counter() >= deadline:
                    self.out_of_time = True
                    break
                record = self.train_step()
                record["seconds"] = round(time.perf_counter() - t0, 3)
                pending.append(record)
                bar.update()
                at_checkpoint = checkpoint and (self.step % self.cfg.checkpoint_every == 0
                                                or self.step == until)
                if len(pending) >= self.cfg.log_every or at_checkpoint:
                    write_log()  # before a checkpoint: its log must reach its step
                if at_checkpoint:
                    self.save_checkpoint()
            write_log()
            if self.out_of_time and checkpoint:
                self.save_checkpoint()
        finally:
            bar.close()
            if log:
                log.close()

    def export(self, meta: dict[str, Any]) -> Path | None:
        """Write the trained model as a model file (``RUN_DIR/model.pt``) from rank 0."""
        if not self.is_main:
            return None
        model = self.model
        was_training = model.training
        model.eval()
        save_model_file(model.cpu(), self.out / MODEL_FILE, meta=meta)
        model.to(self.device).train(was_training)
        return self.out / MODEL_FILE


@torch.no_grad()
def measure_rd(model: SlimCAE, images: list[torch.Tensor]) -> list[tuple[float, float]]:
    """(bpp, PSNR) per width, widest first, averaged over ``images`` (each (1, 3, H, W),
    sides multiples of 16), a variable-rate width at the centre of its λ range. bpp is
    estimated from the likelihoods, which the entropy coder matches to within its small
    overhead; PSNR is on the unrounded reconstruction."""
    was_training, width = model.training, model.width
    model.eval()
    points = []
    variable = isinstance(model, ModulatedSlimCAE)
    for w in model.widths:
        model.set_width(w)
        if variable:  # a variable-rate width is measured at the centre of its range
            lo, hi = model.lambda_range(w)
            model.set_lambda(math.sqrt(lo * hi))
        bpps, psnrs = [], []
        for x in images:
            out = model(x)
            n = x.shape[-2] * x.shape[-1]
            bits = sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values())
            bpps.append(bits / n)
            mse = float(torch.mean((out["x_hat"].clamp(0, 1) - x) ** 2))
            psnrs.append(10 * math.log10(1 / max(mse, 1e-10)))
        points.append((float(np.mean(bpps)), float(np.mean(psnrs))))
    model.set_width(width)
    model.train(was_training)
    return points


def load_validation(root: str, device: torch.device, multiple: int = 16) -> list[torch.Tensor]:
    """Validation images, cropped to a multiple of 16 (no padding enters the measure)."""
    images = []
    for path in find_images(root):
        rgb, _ = load_rgb(path)
        h, w = (rgb.shape[0] // multiple) * multiple, (rgb.shape[1] // multiple) * multiple
        if h and w:
            images.append(to_tensor(rgb[:h, :w]).to(device))
    if not images:
        raise ImageError(f"{root}: no validation images of at least 16x16")
    return images


def run_lambda_schedule(trainer: Trainer, resumed: dict[str, Any] | None) -> ScheduleState:
    """Stage 2: λ-scheduling from the trained model (or from where it was interrupted)."""
    cfg = trainer.cfg
    val = load_validation(cfg.val, trainer.device)
    saved = (resumed or {}).get("schedule")
    state = ScheduleState(**saved) if saved else ScheduleState(lambdas=list(trainer.lambdas))
    state.points = [tuple(p) for p in state.points]
    log_path = trainer.out / SCHEDULE_LOG

    def finetune(lambdas: list[float]) -> None:
        trainer.lambdas = lambdas
        trainer.finetune_from = trainer.step
        trainer.run(trainer.step + cfg.finetune_steps, desc="λ-schedule", checkpoint=False)

    def accept(s: ScheduleState) -> None:
        trainer.lambdas = s.lambdas
        trainer.save_checkpoint({"schedule": s.as_dict()})

    def log(record: dict[str, Any]) -> None:
        if trainer.is_main:
            with log_path.open("a") as f:
                f.write(json.dumps({"step": trainer.step, "time": time.time(), **record}) + "\n")

    def measure() -> list[tuple[float, float]]:
        points = measure_rd(trainer.model, val)
        if dist.is_initialized():
            # Every rank must take rank 0's decisions: float noise between ranks could
            # otherwise send them down different schedules (and DDP into a deadlock).
            box = [points]
            dist.broadcast_object_list(box, src=0)
            points = box[0]
        return points

    return schedule_lambdas(
        state,
        measure=measure,
        finetune=finetune,
        accept=accept,
        rollback=lambda s: trainer.load_checkpoint(),
        factor=cfg.lambda_factor,
        max_tries=cfg.max_tries,
        log=log,
    )


def train(cfg: TrainConfig, resume: bool = False) -> Trainer:
    """Train ``cfg.steps`` steps, then λ-schedule if asked; ``resume`` continues a run."""
    resuming = resume and (Path(cfg.out) / CHECKPOINT).exists()
    if resume and not resuming:  # said, not silently done: a run killed before its first
        # checkpoint, or a mistyped folder, starts over
        print(f"slimcodec train: no checkpoint in {cfg.out}: starting at step 0",
              file=sys.stderr)
    trainer = Trainer(cfg, resuming=resuming)
    resumed = None
    if resuming:
        resumed = trainer.load_checkpoint()
    elif trainer.is_main:  # a fresh start: logs of an earlier attempt would mislead
        trainer._truncate_metrics(0)
        (trainer.out / SCHEDULE_LOG).unlink(missing_ok=True)
    t0 = time.time()
    if trainer.step < cfg.steps:
        trainer.run(cfg.steps)
    schedule = None
    if trainer.out_of_time:  # the model file of a run stopped by --time-limit: its last step
        print(f"slimcodec train: --time-limit reached at step {trainer.step} of {cfg.steps} "
              "(--resume continues)", file=sys.stderr)
    elif cfg.schedule == "lambda":
        schedule = run_lambda_schedule(trainer, resumed)
    trainer.export({
        "summary": f"trained {trainer.step} steps by slimcodec train",
        "trained": True,
        "config": dataclasses.asdict(cfg),
        "lambdas": trainer.lambdas,
        "validation_points": schedule.points if schedule else None,
        "steps": trainer.step,
        "seconds_this_session": round(time.time() - t0, 1),
    })
    return trainer
