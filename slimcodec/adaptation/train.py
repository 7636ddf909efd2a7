"""``slimcodec adapt``: adapt a codec to a domain from a few of its images.

Every method trains every width jointly with the RD loss the model was trained with
(:class:`~slimcodec.training.loss.MultiWidthRDLoss`: the widths' training λ for a
single-rate model, a λ per width sampled in its range for a variable-rate one), on random
crops of the first ``images`` images of the domain folder:

* ``finetune`` -- every parameter (the baseline that forgets); returns a new model.
* ``selective`` -- the decoder only (``subset="decoder"``: synthesis and its modulations) or
  the entropy models only (``"entropy"``); returns a new model.
* ``bias``, ``adapters``, ``extend`` -- the source is frozen (its parameters untouched, bit
  for bit); only a :class:`~slimcodec.adaptation.adapters.DomainAdapter` trains.

``slimcodec gate``: :func:`train_gate` fits a learned gate over trained decoder adapters
(:class:`~slimcodec.adaptation.gate.DomainGate`), the source frozen too.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.training.data import PatchSampler
from slimcodec.training.loss import MultiWidthRDLoss
from slimcodec.training.trainer import sample_lambdas, step_seed

from .adapters import ADAPTER_METHODS, DomainAdapter
from .gate import DomainGate

__all__ = ["DEFAULT_LR", "DEFAULT_STEPS", "METHODS", "AdaptResult", "GateResult", "adapt",
           "train_gate"]

METHODS = ("finetune", "selective", *ADAPTER_METHODS)
#: Finishes in well under 15 minutes on 2 cores for the shipped models (patch 64, batch 8).
DEFAULT_STEPS = 400
#: Adam's step size per method. Trained weights (``finetune``, ``selective``) take small
#: steps; an adapter's new parameters start at zero (or as copies of the source's entropy
#: models) and, in a few hundred steps, gain far more on screens with larger ones (the
#: adaptation section of benchmarks/RESULTS.md; its ``--lr`` compares step sizes).
DEFAULT_LR = {"finetune": 1e-4, "selective": 1e-4, "bias": 3e-3, "adapters": 3e-3,
              "extend": 3e-3}


@dataclass
class AdaptResult:
    """The adapted model (``finetune``, ``selective``) or adapter (the others)."""

    method: str
    model: SlimCAE | None
    adapter: DomainAdapter | None
    steps: int
    seconds: float
    images: int


def _trainable(model: SlimCAE, method: str, subset: str, adapter: DomainAdapter | None
               ) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs a method trains."""
    if adapter is not None:
        return list(adapter.named_parameters())
    if method == "finetune":
        return list(model.named_parameters())
    if subset == "decoder":
        modules: list[nn.Module] = [model.g_s]
        if isinstance(model, ModulatedSlimCAE):
            modules.append(model.modulation_s)
        return [pair for m in modules for pair in m.named_parameters()]
    if subset == "entropy":
        return list(model.entropy_bottlenecks.named_parameters())
    raise ValueError(f"unknown subset {subset!r}; expected 'decoder' or 'entropy'")


def adapt(
    source: SlimCAE,
    data: str | os.PathLike,
    method: str,
    domain: str,
    lambdas: Sequence[float] | None = None,
    steps: int = DEFAULT_STEPS,
    images: int | None = None,
    subset: str = "decoder",
    lr: float | None = None,
    patch: int = 64,
    batch: int = 8,
    seed: int = 0,
    progress: bool = True,
    output_filter: bool = True,
    entropy_models: bool | None = None,
) -> AdaptResult:
    """Adapt ``source`` to the images in ``data`` (see the module docstring).

    ``lambdas``: one training λ per width (single-rate models; a variable-rate model samples
    its ranges). ``lr``: Adam's step size, cosine-decayed to 1% (default: the method's in
    :data:`DEFAULT_LR`). ``output_filter``: give ``adapters`` and ``extend`` an
    :class:`~slimcodec.adaptation.adapters.OutputFilter` (off: smaller and cheaper to
    decode). ``entropy_models``: give the adapter the domain's own entropy models (default:
    ``extend`` only; ``adapters`` with them also saves rate). ``source`` itself is never
    modified: ``finetune`` and ``selective`` train a copy.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    for name, value in (("steps", steps), ("images", images), ("lr", lr)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, not {value}")
    if entropy_models and method not in ADAPTER_METHODS:
        raise ValueError(f"entropy_models is for the adapter methods {ADAPTER_METHODS}; "
                         f"{method!r} writes a new model ('selective' with subset 'entropy' "
                         "fine-tunes the model's own entropy models)")
    lr = DEFAULT_LR[method] if lr is None else lr
    variable = isinstance(source, ModulatedSlimCAE)
    if not variable and (lambdas is None or len(lambdas) != len(source.widths)):
        raise ValueError(f"give one training λ per width {list(source.widths)} "
                         "(the model file's metadata records them)")
    sampler = PatchSampler(data, patch, limit=images)
    adapter = None
    if method in ADAPTER_METHODS:
        # The output filter's first convolution starts random: seed it, so that the same
        # call gives the same adapter whatever ran before it in the process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = DomainAdapter(source, method, domain, output_filter, entropy_models)
    model = source if adapter is not None else copy.deepcopy(source)
    frozen = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    params = _trainable(model, method, subset, adapter)
    for _, p in params:
        p.requires_grad_(True)
    # The entropy models' quantiles follow their own (aux) loss, as in training.
    main = [p for n, p in params if not n.endswith("quantiles")]
    quantiles = [p for n, p in params if n.endswith("quantiles")]
    optimizer = torch.optim.Adam(main, lr=lr)
    aux_optimizer = torch.optim.Adam(quantiles, lr=1e-3) if quantiles else None
    loss = MultiWidthRDLoss(model, lambdas if lambdas is not None else [1.0] * len(model.widths))
    was_training, ste = model.training, model.ste_decoder
    model.train()  # the adapter follows the model's mode once it is set on it, below
    model.ste_decoder = True
    t0 = time.time()
    bar = tqdm(total=steps, desc=f"adapt ({method})", unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        with model.using_adapter(adapter):
            for step in range(steps):
                generator = torch.Generator().manual_seed(step_seed(seed, step, 0))
                torch.manual_seed(step_seed(seed, step, 0))
                x = sampler.sample(batch, generator)
                if variable:
                    loss.lambdas = sample_lambdas(model.lambda_ranges, generator)
                for group in optimizer.param_groups:  # cosine decay to 1%
                    group["lr"] = lr * (0.01 + 0.495 * (1 + math.cos(math.pi * step / steps)))
                optimizer.zero_grad(set_to_none=True)
                if aux_optimizer:
                    aux_optimizer.zero_grad(set_to_none=True)
                out = loss(x)
                _objective(out, adapter).backward()
                nn.utils.clip_grad_norm_(main, 1.0)
                optimizer.step()
                if aux_optimizer:
                    aux_optimizer.step()
                bar.update()
                bar.set_postfix(loss=f"{out['rd_loss'].item():.3f}")
    finally:
        bar.close()
        model.train(was_training)
        model.ste_decoder = ste
        for p, flag in frozen.items():
            p.requires_grad_(flag)
    model.eval()
    if adapter is not None:
        adapter.eval()
        for eb in adapter.bottlenecks:
            eb.update(force=True)
        return AdaptResult(method, None, adapter, steps, time.time() - t0, len(sampler))
    model.update(force=True)
    return AdaptResult(method, model, None, steps, time.time() - t0, len(sampler))


def _objective(out: dict[str, torch.Tensor], adapter: DomainAdapter | None) -> torch.Tensor:
    """What to differentiate: the RD loss plus the aux loss of the entropy models that
    train. ``out["loss"]`` holds the model's own aux loss (only trainable quantiles move);
    an ``extend`` adapter's entropy models add theirs."""
    if adapter is None or not adapter.bottlenecks:
        return out["loss"]
    return out["loss"] + sum(eb.loss() for eb in adapter.bottlenecks)


@dataclass
class GateResult:
    """A trained :class:`~slimcodec.adaptation.gate.DomainGate` and how well it separates
    the domains it was trained on (the share of training crops it gives the highest
    probability to their own domain, over every width)."""

    gate: DomainGate
    accuracy: float
    crops: int
    seconds: float


def train_gate(
    source: SlimCAE,
    adapters: Sequence[DomainAdapter],
    data: Mapping[str, str | os.PathLike],
    source_data: str | os.PathLike,
    crops: int = 32,
    crop: int = 256,
    images: int | None = None,
    steps: int = 500,
    lr: float = 1e-2,
    seed: int = 0,
) -> GateResult:
    """Train a gate over ``adapters`` as Presta et al. train theirs: a classifier of domains.

    ``data``: each adapter's domain name -> a folder of its images; ``source_data``: images
    of the source's own domain (photos), the gate's class 0. ``crops`` random ``crop`` x
    ``crop`` crops of each folder (of its first ``images`` images, when given) are encoded
    by the source at every width (a variable-rate model at a λ drawn in the width's range
    for each crop) and labelled with their domain; the gate's network then fits them by
    cross-entropy (Adam, full batch, ``steps`` steps). ``source`` is not modified.
    """
    missing = [a.domain for a in adapters if a.domain not in data]
    if missing:
        raise ValueError(f"no images for domain {missing[0]!r}: give a folder per adapter")
    extra = sorted(set(data) - {a.domain for a in adapters})
    if extra:
        raise ValueError(f"images for domain {extra[0]!r}, which no adapter has")
    for name, value in (("crops", crops), ("steps", steps), ("images", images)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, not {value}")
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gate = DomainGate(source, adapters)
    variable = isinstance(source, ModulatedSlimCAE)
    generator = torch.Generator().manual_seed(seed)
    folders = [source_data, *(data[a.domain] for a in adapters)]
    features, labels = [], []
    was_training = source.training
    source.eval()
    try:
        with torch.inference_mode(), source.using_adapter(None):
            for label, folder in enumerate(folders):
                x = PatchSampler(folder, crop, limit=images).sample(crops, generator)
                for index, width in enumerate(source.widths):
                    with source.using_width(width):
                        for i in range(crops):
                            lmbda = None
                            if variable:
                                lmbda = sample_lambdas([source.lambda_ranges[index]],
                                                       generator)[0]
                            with source.using_lambda(lmbda) if variable else nullcontext():
                                latent = source.analysis(x[i : i + 1])
                            features.append(gate.features(latent, width, lmbda))
                            labels.append(label)
    finally:
        source.train(was_training)
    inputs, targets = torch.cat(features), torch.tensor(labels)
    optimizer = torch.optim.Adam(gate.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(gate(inputs), targets).backward()
        optimizer.step()
    gate.eval()
    with torch.no_grad():
        accuracy = float((gate(inputs).argmax(1) == targets).float().mean())
    return GateResult(gate, accuracy, len(inputs), time.time() - t0)
