r"""A learned gate: each decoder adapter's weight, predicted from the image's latent.

Presta et al. ("Domain adaptation for learned image compression with supervised adapters",
DCC 2024) weigh their decoder adapters by a small gate network on the latent: it outputs a
probability per domain, the source's and each adapter's, and is trained as a classifier on
images labelled with their domain. Here the gate runs in the encoder (``--domain gate``):
the probabilities :math:`p_1 \dots p_K` of the adapters' domains, rounded to the
container's steps of 1/64, are the weights :math:`w_k` of
:class:`~slimcodec.adaptation.AdapterMixture`, :math:`x \mapsto x + \sum_k w_k (A_k(x) - x)`,
and the file carries them, so the decoder is the one ``--domain mix`` files use and needs
neither the gate nor a guess. Against the search of ``--domain mix``, which decodes every
weighting on a grid, the gate costs one more run of the encoder's analysis, a two-layer
network and two decodes, whatever the number of adapters (up to the container's 8): the
encoder keeps the gate's file only where its RD loss is below the source codec's (a
classifier can be wrong on content unlike its training images, and the source's file must
remain the floor). The search finds the best weights per image; the gate predicts them.

Features, from the source encoder's latent before rounding at the coding width (and λ), and
the network's arithmetic at inference are in :mod:`slimcodec.gating`, which the edge runtime
shares, as is the choice of entropy models: the most weighed adapter's own, or the source's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from slimcodec.bitstream import MAX_MIXTURE
from slimcodec.errors import ModelFileError, ModelMismatchError
from slimcodec.gating import GateArrays
from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.utils.io import atomic_write
from slimcodec.zoo import fingerprint
from slimcodec.zoo.checkpoint import hash_state, read_payload

from .adapters import MIXABLE_METHODS, DomainAdapter, adapter_fingerprint

__all__ = ["DomainGate", "load_gate", "save_gate"]

FILE_FORMAT = "slimcodec-gate"
FILE_VERSION = 1


class DomainGate(nn.Module):
    """Predicts, from a latent, a probability for the source codec and for each adapter.

    ``adapters``: the decoder adapters (``bias``, ``adapters``) it weighs, in its output
    order after the source; it remembers their domains and fingerprints, and weighs only
    those very adapters (:meth:`check_adapters`).
    """

    def __init__(self, source: SlimCAE, adapters: Sequence[DomainAdapter],
                 hidden: int = 64) -> None:
        super().__init__()
        if not 0 < len(adapters) <= MAX_MIXTURE:
            raise ValueError(f"a gate weighs 1 to {MAX_MIXTURE} adapters (a file's mixture "
                             f"holds at most {MAX_MIXTURE}), not {len(adapters)}")
        for adapter in adapters:
            if adapter.method not in MIXABLE_METHODS:
                raise ValueError(f"domain {adapter.domain!r} ({adapter.method}) changes the "
                                 f"encoder; a gate weighs {', '.join(MIXABLE_METHODS)} adapters")
        self.source_fingerprint = fingerprint(source)
        self.domains = [a.domain for a in adapters]
        self.domain_ids = [a.domain_id for a in adapters]
        self.adapter_fingerprints = [adapter_fingerprint(a) for a in adapters]
        self.widths = tuple(source.widths)
        self.channels = min(self.widths)
        self.lambda_bounds = (tuple(source.lambda_bounds)
                              if isinstance(source, ModulatedSlimCAE) else None)
        self.hidden = hidden
        features = 2 * self.channels + len(self.widths) + 1
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, len(adapters) + 1))

    def features(self, latent: Tensor, width: int, lmbda: float | None) -> Tensor:
        """``(B, F)`` features of a ``(B, C, h, w)`` latent (the analysis transform's output,
        before rounding) at ``width`` (and λ), computed as the encoders compute them
        (:mod:`slimcodec.gating`)."""
        arrays = self.arrays()
        return torch.from_numpy(np.stack([arrays.features(y, width, lmbda)
                                          for y in latent.detach().cpu().numpy()]))

    def forward(self, features: Tensor) -> Tensor:
        """Logits: the source's first, then each adapter's."""
        return self.net(features)

    def arrays(self) -> GateArrays:
        """The gate as the encoders run it (:class:`slimcodec.gating.GateArrays`)."""
        (w1, b1), (w2, b2) = ((m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
                              for m in (self.net[0], self.net[2]))
        return GateArrays(w1, b1, w2, b2, tuple(self.domain_ids), self.channels, self.widths,
                          self.lambda_bounds)

    def weights(self, latent: Tensor, width: int, lmbda: float | None) -> dict[int, float]:
        """Domain id -> the weight of its adapter for one ``(C, h, w)`` latent, rounded to
        the container's 1/64."""
        return self.arrays().predict(latent.detach().cpu().numpy(), width, lmbda)

    def check_adapters(self, adapters: Mapping[int, DomainAdapter]) -> None:
        """Raise :class:`ModelMismatchError` unless ``adapters`` (domain id -> adapter)
        holds every adapter this gate was trained with, unchanged."""
        for domain, domain_id, fp in zip(self.domains, self.domain_ids,
                                         self.adapter_fingerprints, strict=True):
            adapter = adapters.get(domain_id)
            if adapter is None:
                raise ModelMismatchError(f"the gate weighs the adapter of domain {domain!r}, "
                                         "which is not loaded; pass its file with --adapter")
            if adapter_fingerprint(adapter) != fp:
                raise ModelMismatchError(f"the gate was trained with another adapter for "
                                         f"domain {domain!r} (fingerprint {fp})")


def _digest(gate: DomainGate, state: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    h.update(f"{gate.source_fingerprint.hex()}|{gate.domains}|{gate.adapter_fingerprints}|"
             f"{gate.widths}|{gate.lambda_bounds}|{gate.hidden}".encode())
    hash_state(h, state)
    return h.hexdigest()[:16]


def save_gate(gate: DomainGate, path: str | os.PathLike,
              meta: dict[str, Any] | None = None) -> str:
    """Write a gate file atomically; its fingerprint."""
    state = {k: v.detach().cpu() for k, v in gate.state_dict().items()}
    fp = _digest(gate, state)
    payload = {"format": FILE_FORMAT, "version": FILE_VERSION,
               "source_fingerprint": gate.source_fingerprint.hex(), "domains": gate.domains,
               "adapter_fingerprints": gate.adapter_fingerprints, "hidden": gate.hidden,
               "state_dict": state, "fingerprint": fp, "meta": meta or {}}
    atomic_write(path, lambda f: torch.save(payload, f))
    return fp


def load_gate(path: str | os.PathLike, model: SlimCAE,
              adapters: Mapping[int, DomainAdapter]) -> DomainGate:
    """Load a gate file for ``model`` and the loaded ``adapters`` (domain id -> adapter);
    typed errors for a damaged or foreign file, or a missing or different adapter."""
    payload = read_payload(path, FILE_FORMAT, (FILE_VERSION,), "gate",
                           {"source_fingerprint": str, "domains": list, "hidden": int,
                            "adapter_fingerprints": list, "state_dict": dict,
                            "fingerprint": str})
    fp = fingerprint(model).hex()
    if payload["source_fingerprint"] != fp:
        raise ModelMismatchError(f"{path}: gate made for the model with fingerprint "
                                 f"{payload['source_fingerprint']}, not {fp}")
    by_name = {a.domain: a for a in adapters.values()}
    missing = [d for d in payload["domains"] if d not in by_name]
    if missing:
        raise ModelMismatchError(f"{path}: the gate weighs the adapter of domain "
                                 f"{missing[0]!r}, which is not loaded; pass its file with "
                                 "--adapter")
    gate = DomainGate(model, [by_name[d] for d in payload["domains"]], payload["hidden"])
    gate.adapter_fingerprints = list(payload["adapter_fingerprints"])
    gate.check_adapters(adapters)
    try:
        gate.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelFileError(f"{path}: gate weights do not fit ({exc})") from None
    if _digest(gate, gate.state_dict()) != payload["fingerprint"]:
        raise ModelFileError(f"{path}: damaged gate file (fingerprint mismatch)")
    return gate.eval()
