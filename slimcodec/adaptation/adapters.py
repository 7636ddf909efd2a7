r"""Domain adapters: a few parameters that adapt a frozen codec to a content domain.

The source model is never changed: an adapter is a separate module that the model consults
at fixed points when it is active (:meth:`~slimcodec.models.SlimCAE.set_adapter`), after
each encoder stage (conv + GDN), after each decoder stage (inverse GDN + transposed conv)
and for the entropy model. Files written without an adapter (domain 0) decode bit for bit as
before, whatever adapters are loaded, and an adapter file holds only its own parameters and
the fingerprint of its source model.

Methods (``slimcodec adapt --method``):

* ``bias`` -- decoder bias-only updates, as in L²C (Zou et al.): a learned offset to the bias
  of each decoder stage, :math:`x \mapsto x + \Delta b`; the smallest adapter.
* ``adapters`` -- decoder adapters (Presta et al., "Domain adaptation for learned image
  compression with supervised adapters", DCC 2024): a residual 1x1 convolution after each
  hidden decoder stage, :math:`x \mapsto x + A x`, and an :class:`OutputFilter` on the
  decoded image, all zero-initialised. With several adapters loaded, the encoder's gate
  picks, per image, the one (or none) with the lowest RD loss, and the container's domain
  field signals the choice: the decoder needs no guess. The gate that weighs them
  (:class:`AdapterMixture`, ``--domain mix``) mixes ``adapters`` and ``bias`` domains per
  image with weights the container carries, found by search or predicted by a learned gate
  (:mod:`.gate`, ``--domain gate``). With ``entropy_models=True`` the
  domain also gets its own entropy models (as ``extend`` does): the decoder adapters can
  only lower distortion, their entropy models also lower the rate of a domain whose latent
  statistics differ from photos', at the price of the entropy tables in the file.
* ``extend`` -- codec adaptation without forgetting (DANICE, Katakol et al., CLIC 2021): the
  source stays frozen and embedded, and the domain adds residual 1x1 convolutions after
  every encoder and decoder stage, an :class:`OutputFilter`, and its own entropy models
  (initialised from the source's), trained together.

Every adapter is slimmable like the model: its convolutions are sliced to the active width
(:class:`~slimcodec.layers.SlimConv2d`), so one adapter serves every width.
"""

from __future__ import annotations

import copy
import hashlib
import os
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from slimcodec.bitstream import domain_id
from slimcodec.errors import ModelFileError, ModelMismatchError
from slimcodec.gating import GATES, SOURCE
from slimcodec.layers import SlimConv2d, Slimmable
from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.utils.io import atomic_write
from slimcodec.zoo import fingerprint
from slimcodec.zoo.checkpoint import hash_state, read_payload

__all__ = ["ADAPTER_METHODS", "MIXABLE_METHODS", "AdapterMixture", "DomainAdapter",
           "adapter_fingerprint", "domain_id", "load_adapter", "save_adapter"]

ADAPTER_METHODS = ("bias", "adapters", "extend")
FILE_FORMAT = "slimcodec-adapter"
#: Version 2 added the output filter, version 3 entropy models for any method (before, only
#: ``extend`` had them); older files still load.
FILE_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


def _residual(widths: tuple[int, ...]) -> SlimConv2d:
    conv = SlimConv2d(widths, widths, 1)
    nn.init.zeros_(conv.weight)  # starts as the identity: the source codec exactly
    nn.init.zeros_(conv.bias)
    return conv


class OutputFilter(nn.Module):
    r"""A small residual CNN on the decoded image, :math:`x \mapsto x + B\,\mathrm{ReLU}(A x)`.

    ``A``: 3x3 conv, 3 -> ``hidden``; ``B``: 3x3 conv, ``hidden`` -> 3, zero-initialised so
    that a new filter is the identity. The hidden decoder adapters work at 1/4 and 1/16 of
    the resolution; this one sees the pixels, where a domain of flat colours and sharp
    edges (screen content) differs most from photos. It is the same at every width (every
    width decodes RGB). Its cost, :math:`2 \cdot 27 \cdot` ``hidden`` = 1,728 multiply-adds
    per pixel, is 7% of the widest SlimCAE decoder's but about as much again as the
    narrowest's (2,000): ``adapt(..., output_filter=False)`` leaves it out.
    """

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.expand = nn.Conv2d(3, hidden, 3, padding=1)
        self.project = nn.Conv2d(hidden, 3, 3, padding=1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor) -> Tensor:
        # in place: the hidden layer has 32 channels at full resolution, and a fresh
        # tensor for the ReLU's output costs about as much as the ReLU
        return x + self.project(torch.relu_(self.expand(x)))


class DomainAdapter(nn.Module):
    """The extra parameters of one domain for one source model (see the module docstring).

    ``entropy_models``: the domain's own entropy models, initialised as copies of the
    source's (default: ``extend`` only).
    """

    def __init__(self, source: SlimCAE, method: str, domain: str,
                 output_filter: bool = True, entropy_models: bool | None = None) -> None:
        super().__init__()
        if method not in ADAPTER_METHODS:
            raise ValueError(f"unknown adapter method {method!r}; expected {ADAPTER_METHODS}")
        if domain in (SOURCE, *GATES):
            raise ValueError(f"{domain!r} is a reserved domain= value (the model alone, or a "
                             "gate), not a name for a domain")
        if entropy_models is None:
            entropy_models = method == "extend"
        self.method = method
        self.domain = domain
        self.domain_id = domain_id(domain)
        self.source_fingerprint = fingerprint(source)
        self.widths = tuple(source.widths)
        w = self.widths
        self.decoder_bias = nn.ParameterList()
        self.decoder = nn.ModuleList()
        self.encoder = nn.ModuleList()
        self.bottlenecks = nn.ModuleList()
        if method == "bias":
            for channels in (max(w), max(w), 3):
                self.decoder_bias.append(nn.Parameter(torch.zeros(channels)))
        if method in ("adapters", "extend"):
            self.decoder.extend(_residual(w) for _ in range(2))
        # Version-1 adapter files have no output filter (``output_filter=False`` loads them).
        self.output_filter = OutputFilter() if output_filter and method != "bias" else None
        if method == "extend":
            self.encoder.extend(_residual(w) for _ in range(3))
        if entropy_models:
            # The domain's own entropy models, starting as copies of the source's.
            self.bottlenecks.extend(copy.deepcopy(eb) for eb in source.entropy_bottlenecks)
        self._slimmable = tuple(m for m in self.modules() if isinstance(m, Slimmable))
        self._width_index = 0

    # -- what the model calls -------------------------------------------------------------

    def set_width_index(self, index: int) -> None:
        for layer in self._slimmable:
            layer.set_width_index(index)
        self._width_index = index

    def check_source(self, model: SlimCAE) -> None:
        fp = fingerprint(model)
        if fp != self.source_fingerprint:
            raise ModelMismatchError(
                f"adapter for domain {self.domain!r} was made for the model with fingerprint "
                f"{self.source_fingerprint.hex()}, not this one ({fp.hex()})")

    def encoder_stage(self, stage: int, x: Tensor) -> Tensor:
        return x + self.encoder[stage](x) if self.encoder else x

    def decoder_stage(self, stage: int, x: Tensor) -> Tensor:
        if self.decoder_bias:
            return x + self.decoder_bias[stage][: x.shape[1]].view(1, -1, 1, 1)
        if self.decoder and stage < len(self.decoder):
            return x + self.decoder[stage](x)
        if self.output_filter is not None and stage == 2:
            return self.output_filter(x)
        return x

    def entropy_bottleneck(self, model: SlimCAE) -> EntropyBottleneck | None:
        if not self.bottlenecks:
            return None
        index = model._width_index
        if isinstance(model, ModulatedSlimCAE):
            index = index * model.rate_anchors + model.anchor_index(model.lmbda)
        return self.bottlenecks[index]

    @property
    def codes_as_source(self) -> bool:
        """Whether a file coded through this adapter holds the source's strings: it changes
        the decoder alone (a :data:`MIXABLE_METHODS` method) and has no entropy models of its
        own, so only the file's domain field differs (the gate ``auto`` relies on it)."""
        return self.method in MIXABLE_METHODS and not len(self.bottlenecks)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


#: The methods whose adapters only change the decoder, so several can be mixed on one latent.
MIXABLE_METHODS = ("bias", "adapters")


class AdapterMixture:
    r"""Decoder adapters mixed with weights: the gate of Presta et al. (DCC 2024).

    Each decoder stage adds the members' corrections, weighted:
    :math:`x \mapsto x + \sum_k w_k\,(A_k(x) - x)`, where :math:`A_k` is member
    :math:`k`'s stage (for an ``adapters`` member :math:`A_k(x) - x` is its residual
    convolution or output filter, for a ``bias`` member its bias offset). Weights
    :math:`w = (1)` give that adapter, :math:`w = 0` the source decoder; between them the
    mixture suits an image between domains, or a domain the adapter generalises to only in
    part. Only decoder-side methods (:data:`MIXABLE_METHODS`) mix: the latent is the
    source encoder's, coded with the entropy models of ``entropy_domain`` (one of the
    members, or None for the source's). The container carries the weights, so the decoder
    applies exactly the encoder's (``slimcodec compress --domain mix``).
    """

    def __init__(self, members: list[tuple[DomainAdapter, float]],
                 entropy_domain: DomainAdapter | None = None) -> None:
        for adapter, _ in members:
            if adapter.method not in MIXABLE_METHODS:
                raise ValueError(f"domain {adapter.domain!r} ({adapter.method}) changes the "
                                 f"encoder and cannot be mixed; mixable: {MIXABLE_METHODS}")
        if entropy_domain is not None and all(a is not entropy_domain for a, _ in members):
            raise ValueError(f"domain {entropy_domain.domain!r} is not in the mixture")
        self.members = members
        self.entropy_domain = entropy_domain

    def set_width_index(self, index: int) -> None:
        for adapter, _ in self.members:
            adapter.set_width_index(index)

    def train(self, mode: bool = True) -> AdapterMixture:
        for adapter, _ in self.members:
            adapter.train(mode)
        return self

    def encoder_stage(self, stage: int, x: Tensor) -> Tensor:
        return x  # members change only the decoder

    def decoder_stage(self, stage: int, x: Tensor) -> Tensor:
        out = x
        for adapter, weight in self.members:
            out = out + weight * (adapter.decoder_stage(stage, x) - x)
        return out

    def entropy_bottleneck(self, model: SlimCAE) -> EntropyBottleneck | None:
        return self.entropy_domain.entropy_bottleneck(model) if self.entropy_domain else None


def _digest(adapter: DomainAdapter, state: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    h.update(f"{adapter.method}|{adapter.domain}|{adapter.source_fingerprint.hex()}".encode())
    hash_state(h, state)
    return h.hexdigest()[:16]


def adapter_fingerprint(adapter: DomainAdapter) -> str:
    """The fingerprint :func:`save_adapter` writes for ``adapter`` (its entropy tables as
    they are now: a trained adapter's are built when :func:`~slimcodec.adaptation.adapt`
    returns it, a loaded one's come from its file)."""
    return _digest(adapter, adapter.state_dict())


def save_adapter(adapter: DomainAdapter, path: str | os.PathLike,
                 meta: dict[str, Any] | None = None) -> str:
    """Write an adapter file atomically (entropy tables built first); its fingerprint."""
    for eb in adapter.bottlenecks:
        eb.update(force=True)
    state = {k: v.detach().cpu() for k, v in adapter.state_dict().items()}
    fp = _digest(adapter, state)
    payload = {"format": FILE_FORMAT, "version": FILE_VERSION, "method": adapter.method,
               "domain": adapter.domain, "domain_id": adapter.domain_id,
               "output_filter": adapter.output_filter is not None,
               "entropy_models": bool(adapter.bottlenecks),
               "source_fingerprint": adapter.source_fingerprint.hex(), "state_dict": state,
               "fingerprint": fp, "meta": meta or {}}
    atomic_write(path, lambda f: torch.save(payload, f))
    return fp


def load_adapter(path: str | os.PathLike, model: SlimCAE) -> DomainAdapter:
    """Load an adapter file for ``model``; typed errors for a damaged or foreign file."""
    payload = read_payload(path, FILE_FORMAT, READABLE_VERSIONS, "adapter",
                           {"source_fingerprint": str, "domain": str, "method": str,
                            "state_dict": dict, "fingerprint": str})
    fp = fingerprint(model).hex()
    if payload["source_fingerprint"] != fp:
        raise ModelMismatchError(
            f"{path}: adapter for domain {payload['domain']!r} was made for the model with "
            f"fingerprint {payload['source_fingerprint']}, not {fp}")
    state = payload["state_dict"]
    try:
        adapter = DomainAdapter(model, payload["method"], payload["domain"],
                                output_filter=bool(payload.get("output_filter", False)),
                                entropy_models=payload.get("entropy_models"))
        for i, eb in enumerate(adapter.bottlenecks):  # CDF tables come sized from the file
            for name in ("_quantized_cdf", "_offset", "_cdf_length"):
                getattr(eb, name).resize_(state[f"bottlenecks.{i}.{name}"].shape)
        adapter.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: adapter weights do not fit ({exc})") from None
    if adapter_fingerprint(adapter) != payload["fingerprint"]:
        raise ModelFileError(f"{path}: damaged adapter file (fingerprint mismatch)")
    return adapter.eval()
