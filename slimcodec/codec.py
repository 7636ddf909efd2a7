"""Image <-> container bytes with a given model.

:class:`Codec` binds a model (eval mode, CDF tables built, fingerprint known) to the
container format and the image rules of :mod:`slimcodec.utils.image`: arbitrary sizes are
replicate-padded to a multiple of 16 and cropped back after decoding. The transforms run
tile by tile (:mod:`slimcodec.tiling`), so the network's memory does not grow with the
image. How the latent becomes strings and back is the model's own business: every path
here (plain, refined, with adapters, through the gates) asks the model for its latent coder
(``model.latent_coder()``, :mod:`slimcodec.latent`: a factorized prior's one string, a
hyperprior's two) and calls ``encode(y)`` / ``decode(strings, size)``, so a new kind of
model brings its coder and changes nothing here. Images over ``max_pixels`` are refused
before anything is allocated for them.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from slimcodec import tiling
from slimcodec.bitstream import (
    MIXTURE_UNIT,
    Bitstream,
    Header,
    RateKind,
    pack,
    unpack,
)
from slimcodec.bitstream.checks import check_header, check_image_size, check_latent
from slimcodec.bitstream.mixture import weighed_header, weight_grid
from slimcodec.bitstream.rate import rd_loss
from slimcodec.errors import (
    CorruptBitstreamError,
    ModelFileError,
    ModelMismatchError,
    RateError,
    ResourceLimitError,
    UntrainedModelError,
    WidthError,
    check_positive,
)
from slimcodec.gating import GATES, SOURCE, entropy_domain, gated_file, keep_gated
from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.palette import colours_to_try, finish, with_palette
from slimcodec.scaling import (
    AUTO,
    Scale,
    check_auto_filter,
    encode_scaled,
    gate_auto,
    per_image_pixel,
    to_image_size,
)
from slimcodec.utils.image import ImageLike, load_rgb
from slimcodec.utils.metrics import mean_squared_error, psnr
from slimcodec.zoo import fingerprint, load_model
from slimcodec.zoo.catalog import (
    find_by_fingerprint,
    install_hint,
    shipped_adapters,
    weights_path,
    writer_of,
)

__all__ = ["DEFAULT_MAX_PIXELS", "Codec", "load_shipped_adapters", "model_lock",
           "prepare_model", "untrained"]

#: Largest image (height x width) a codec encodes or decodes unless told otherwise: 64 Mi
#: pixels, about 1.2 GB of peak memory at width 192 (benchmarks/memory.py).
DEFAULT_MAX_PIXELS = 1 << 26

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
T = TypeVar("T")


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that serialises every use of ``model``'s width and λ state.

    One per model, not per codec: two codecs (or a codec and a user) sharing a model must
    not switch its width under each other.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def prepare_model(model: SlimCAE) -> bytes:
    """Put ``model`` in eval mode with CDF tables that match its weights; its fingerprint.

    A model loaded from a file keeps the tables stored with it (its fingerprint was checked
    on loading, and recomputing the tables elsewhere might round differently); any other
    model, or one whose weights changed since it was loaded, gets fresh tables.
    """
    model.eval()
    fp = fingerprint(model)
    if getattr(model, "file_fingerprint", None) == fp:
        return fp
    model.update(force=True)
    return fingerprint(model)


def untrained(model: SlimCAE) -> bool:
    """Whether ``model``'s entropy models never trained: every quantile is still compressai's
    initial ``(-10, 0, 10)``, which the aux loss moves from the first step (a model built by
    ``create_model(name)`` without ``pretrained=True``)."""
    initial = torch.tensor([-10.0, 0.0, 10.0])
    return all(torch.equal(eb.quantiles.detach().cpu().reshape(-1, 3),
                           initial.expand(eb.quantiles.shape[0], 3))
               for eb in model.entropy_bottlenecks)


def load_shipped_adapters(model: SlimCAE) -> list[Any]:
    """The domain adapters that ship with ``model``'s weights, where they are a shipped
    model's (found by fingerprint: its registered name or a copy of its file), each checked
    against the catalog's fingerprint; none for any other model. A shipped adapter that is
    missing or not the one that ships is a :class:`ModelFileError`: files the model wrote
    with it would not decode."""
    fp = getattr(model, "file_fingerprint", None) or fingerprint(model)
    name = find_by_fingerprint(fp)
    entries = shipped_adapters(name) if name else []
    if not entries:
        return []
    from slimcodec.adaptation import adapter_fingerprint, load_adapter

    adapters = []
    for entry in entries:
        path = weights_path(entry["weights"])
        if path is None:
            raise ModelFileError(f"the {entry['domain']!r} adapter of {name} is not installed: "
                                 f"it comes with {install_hint(name)}")
        adapter = load_adapter(path, model)
        if (adapter.domain, adapter_fingerprint(adapter)) != (entry["domain"],
                                                              entry["fingerprint"]):
            raise ModelFileError(f"{path}: not the {entry['domain']!r} adapter that ships with "
                                 f"{name} (fingerprint {entry['fingerprint']})")
        adapters.append(adapter)
    return adapters


def shipped_default_domain(shipped: Sequence[Any]) -> str | None:
    """The domain a model codes with where its caller names none, given its ``shipped``
    adapters (:func:`load_shipped_adapters`): the gate ``auto`` where some ship with it, so
    that each file is coded by whichever of the model alone and its adapters gives the lowest
    RD loss; else the model alone (None). One rule for the codec and the exported bundle."""
    return "auto" if shipped else None


def _numpy(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """A tensor function as the torch-free tiler calls it: numpy in, numpy out."""
    return lambda a: fn(torch.from_numpy(a)).numpy()


def _synthesis(model: SlimCAE) -> Callable[[np.ndarray], np.ndarray]:
    """The model's synthesis as the tiler calls it, on channels-last tensors: oneDNN's own
    layout, in which the synthesis's convolutions and an adapter's output filter run
    faster on a CPU (``benchmarks/coding_speed.py``); the sums are the same."""
    return _numpy(lambda y: model.synthesis(y.contiguous(memory_format=torch.channels_last)))


def _size(strings: tuple[bytes, ...]) -> int:
    return sum(len(s) for s in strings)


def _out_of_memory(what: str, call: Callable[[], T]) -> T:
    """Run ``call``; exhausted memory becomes a :class:`ResourceLimitError`."""
    try:
        return call()
    except MemoryError:
        raise ResourceLimitError(f"out of memory {what}") from None
    except RuntimeError as exc:  # torch's allocator reports as RuntimeError
        if "memory" in str(exc).lower() or "allocate" in str(exc).lower():
            raise ResourceLimitError(f"out of memory {what}") from None
        raise


class Codec:
    """Compress images to slimcodec containers and back with one model.

    Args:
        model: a :class:`~slimcodec.models.SlimCAE` or a variable-rate
            :class:`~slimcodec.models.ModulatedSlimCAE` (put in eval mode; its CDF tables are
            rebuilt unless it comes unchanged from a model file).
        name: how to call the model in messages (a registered name or a file path).
        max_pixels: refuse to encode or decode larger images (:class:`ResourceLimitError`).
        tile: tile size of the transforms, in latent positions (16 pixels each).
        refine_relaxation: how ``encode_rgb(refine=N)`` relaxes rounding, one of
            :data:`slimcodec.refine.RELAXATIONS` (the default, ``"sga"``, is the better).
        refine_lr: the refinement's Adam step size (None: the default of the model's kind
            of refinement, :mod:`slimcodec.refine`).
        allow_untrained: code with a model whose entropy models never trained (its files
            are noise: :class:`UntrainedModelError` unless this is set, for tests).
        adapters: domain adapters (:mod:`slimcodec.adaptation`) to decode and encode with.
        default_domain: what encoding uses where the caller names no domain (the
            ``domain=`` of :meth:`encode_rgb`): None, the model alone; a gate
            (:data:`~slimcodec.gating.GATES`); or a loaded adapter's domain.
            :meth:`load` makes it ``"auto"`` for a shipped model with shipped adapters.

    A codec is safe to share between threads, and so is its model between codecs: calls are
    serialised on a lock per model (:func:`model_lock`).
    """

    def __init__(self, model: SlimCAE, name: str | None = None, *,
                 max_pixels: int = DEFAULT_MAX_PIXELS, tile: int = tiling.DEFAULT_TILE,
                 rd_lambdas: Sequence[float] | None = None,
                 adapters: Sequence[Any] = (), default_domain: str | None = None,
                 refine_relaxation: str = "sga", refine_lr: float | None = None,
                 allow_untrained: bool = False) -> None:
        check_positive(max_pixels=max_pixels, tile=tile)
        if not allow_untrained and untrained(model):
            raise UntrainedModelError(
                f"{name or type(model).__name__} has untrained weights: its files would be "
                "noise; use create_model(name, pretrained=True), a trained model file, or "
                "Codec(..., allow_untrained=True) to code anyway")
        self._lock = model_lock(model)
        with self._lock:
            self.fingerprint = prepare_model(model)
        self.model = model
        self.name = name or type(model).__name__
        self.max_pixels = int(max_pixels)
        self.tile = int(tile)
        # A single-rate model's training λ per width: what weighs rate against distortion
        # when a latent is refined (a variable-rate model uses the file's λ).
        self.rd_lambdas = list(rd_lambdas) if rd_lambdas is not None else None
        # How refinement relaxes rounding (slimcodec.refine.RELAXATIONS); "ste" is there
        # for comparison (benchmarks/refine.py), the default is the better one.
        self.refine_relaxation = refine_relaxation
        self.refine_lr = refine_lr  # None: the refinement's own default for the model's kind
        # Domain adapters (slimcodec.adaptation) by container domain id.
        self.adapters: dict[int, Any] = {}
        for adapter in adapters:
            self.add_adapter(adapter)
        if default_domain not in (None, *GATES):
            self.adapter_for(default_domain)  # a loaded adapter's, or ModelMismatchError
        self.default_domain = default_domain
        # A learned gate over the decoder adapters (slimcodec.adaptation.DomainGate), for
        # ``domain="gate"``; decoding never needs it.
        self.gate: Any = None

    def add_adapter(self, adapter: Any) -> None:
        """Make a domain adapter available: files of its domain decode, and encode with
        ``domain=`` its name."""
        if adapter.source_fingerprint != self.fingerprint:
            adapter.check_source(self.model)  # raises ModelMismatchError, naming both
        other = self.adapters.get(adapter.domain_id)
        if other is not None and other.domain != adapter.domain:
            raise ModelMismatchError(f"domains {other.domain!r} and {adapter.domain!r} share "
                                     f"the domain id {adapter.domain_id}; rename one")
        self.adapters[adapter.domain_id] = adapter

    def adapter_for(self, domain: str) -> Any:
        for adapter in self.adapters.values():
            if adapter.domain == domain:
                return adapter
        known = ", ".join(repr(a.domain) for a in self.adapters.values()) or "none"
        raise ModelMismatchError(f"no adapter for domain {domain!r} is loaded (loaded: "
                                 f"{known}); pass its file with --adapter")

    @classmethod
    def load(cls, name_or_path: str | os.PathLike, **kwargs: int) -> Codec:
        """A codec for a registered pretrained model or a model file (with the training λ
        its metadata records, for refinement). Where the weights are a shipped model's, its
        shipped domain adapters come loaded (:func:`load_shipped_adapters`), and the codec
        encodes through the gate ``auto`` unless told otherwise: each file is coded by
        whichever of the model alone and its adapters gives the lowest RD loss."""
        model = load_model(name_or_path)
        lambdas = model.file_meta.get("lambdas")
        adapters = load_shipped_adapters(model)
        return cls(model, str(name_or_path), rd_lambdas=lambdas, adapters=adapters,
                   default_domain=shipped_default_domain(adapters), **kwargs)

    @property
    def widths(self) -> tuple[int, ...]:
        return self.model.widths

    @property
    def variable_rate(self) -> bool:
        """Whether the model takes a λ (a ``slimcae-vr``), written in every file."""
        return isinstance(self.model, ModulatedSlimCAE)

    @property
    def gate_keeps_source_strings(self) -> bool:
        """Whether the gate ``auto`` (without refinement) always keeps the model alone's
        strings: every loaded adapter codes them (``codes_as_source``), so whichever it
        picks, its file is the model alone's but for the domain field."""
        return all(a.codes_as_source for a in self.adapters.values())

    def lambda_range(self, width: int) -> tuple[float, float]:
        """The λ range a variable-rate model was trained for at ``width``."""
        if not self.variable_rate:
            raise RateError(f"{self.name} is single-rate: it has no λ to set (λ, quality and "
                            "rate targets need a variable-rate model such as slimcae-vr; "
                            "pick a rate by --width)")
        return self.model.lambda_range(self.resolve_width(width))

    def default_lambda(self, width: int) -> float:
        """The λ used when none is given: the geometric middle of the width's range."""
        lo, hi = self.lambda_range(width)
        return math.sqrt(lo * hi)

    # -- encoding -------------------------------------------------------------------------

    def encode(self, image: ImageLike, width: int | None = None, lmbda: float | None = None,
               refine: int = 0, report: dict[str, Any] | None = None,
               domain: str | None = None, scale: Scale = AUTO,
               resampling: str = "lanczos") -> bytes:
        """Compress ``image`` (path, PIL image or uint8 array) at ``width`` (default: the
        model's current width, the widest unless :meth:`~SlimCAE.set_width` chose another)
        and, for a variable-rate model, ``lmbda`` (default: :meth:`default_lambda`); see
        :meth:`encode_rgb` for ``refine``, ``report``, ``domain``, ``scale`` (here, as
        ``slimcodec compress``, :data:`~slimcodec.scaling.AUTO` unless given) and
        ``resampling``."""
        rgb, grayscale = load_rgb(image, max_pixels=self.max_pixels)
        return self.encode_rgb(rgb, width, grayscale, lmbda, refine, report, domain=domain,
                               scale=scale, resampling=resampling)

    def encode_rgb(self, rgb: np.ndarray, width: int | None = None, grayscale: bool = False,
                   lmbda: float | None = None, refine: int = 0,
                   report: dict[str, Any] | None = None,
                   progress: Callable[[int], None] | None = None,
                   domain: str | None = None,
                   mixture: Mapping[str, float] | None = None, scale: Scale = 1.0,
                   resampling: str = "lanczos", palette: bool = True) -> bytes:
        """Compress an ``(H, W, 3)`` uint8 array.

        ``refine``: gradient steps of latent refinement (:mod:`slimcodec.refine`); the file
        is then the better of the plain and the refined coding, by the RD loss of its bytes
        and decoded pixels. ``report`` (a dict) receives what refinement did: both losses,
        the choice, and the PSNR the decoder will reproduce.

        ``domain``: code with that loaded domain adapter (the file's domain field says so);
        ``"auto"``: the gate, which codes with every loaded adapter and none and keeps the
        file of the lowest RD loss; ``"mix"``: the gate that weighs the decoder adapters
        (:meth:`_mix`); ``"gate"``: the weights the learned gate :attr:`gate` predicts
        (:meth:`_gated`). ``None`` or ``"source"``: the model alone. (The front doors,
        :func:`slimcodec.compress`, :func:`~slimcodec.evaluate.evaluate` and the command
        line, pass :attr:`default_domain` where their caller names no domain.)

        ``mixture``: decoder weights per loaded domain (``bias`` or ``adapters`` adapters,
        multiples of 1/64 in [0, 255/64]), mixed by
        :class:`~slimcodec.adaptation.AdapterMixture`; ``domain`` then names the domain whose
        entropy models code the latent (None: the source's). The file carries the weights.

        ``scale``: code the image upsampled by this factor, 1 to 4, with the filter
        ``resampling`` (``"lanczos"`` or ``"box"``; :mod:`slimcodec.scaling`: quality beyond
        the transforms' ceiling, for ``scale²`` times the work); the rate and ``report``'s
        PSNR are the original's. :data:`~slimcodec.scaling.AUTO`: the scale and filter of
        the lowest RD loss on a probe of the image
        (:func:`~slimcodec.scaling.choose_scale`; ``report`` says which); with the gate
        ``"auto"``, the gate then chooses the domain on the probe at that scale and at scale
        1, and the image is coded once, with the pair of the lower loss
        (:func:`~slimcodec.scaling.gate_auto`; ``report``'s ``gate`` and ``domain`` are
        then the probe's).

        ``palette``: where the image is drawn in few colours (screens), the file may carry
        its most frequent colours, onto which every decoder snaps its output, and the
        blocks drawn in them alone exactly (:func:`slimcodec.palette.with_palette`, where
        that lowers the RD loss; ``report``'s ``palette`` says how many colours, 0 for
        none, and ``index_map`` the exact blocks' bytes); False: never.
        """
        data = self._encode(rgb, width, grayscale, lmbda, refine, report, progress, domain,
                            mixture, scale, resampling, palette)
        if not palette:
            return data
        return with_palette(data, rgb, self.decode_rgb, self._scale_weight, report)

    def _encode(self, rgb: np.ndarray, width: int | None = None, grayscale: bool = False,
                lmbda: float | None = None, refine: int = 0,
                report: dict[str, Any] | None = None,
                progress: Callable[[int], None] | None = None,
                domain: str | None = None,
                mixture: Mapping[str, float] | None = None, scale: Scale = 1.0,
                resampling: str = "lanczos", palette: bool = False) -> bytes:
        """:meth:`encode_rgb` without the palette: what its every path codes with.
        ``palette``: the file will be sent with one where it pays, so that ``scale="auto"``
        weighs its candidates as sent (:func:`~slimcodec.scaling.choose_scale`'s
        ``colours``)."""
        height, img_width = rgb.shape[:2]
        check_image_size(height, img_width, self.max_pixels)
        width = self.resolve_width(width)
        lmbda = self._checked_lambda(width, lmbda)
        colours = colours_to_try(rgb) if palette and scale == AUTO else None
        if domain == "auto" and mixture is None:  # the gate, at a scale or choosing it
            if scale != AUTO:
                return self._gate(rgb, width, grayscale, lmbda, refine, report, scale,
                                  resampling)
            check_auto_filter(scale, resampling)  # before the probe's work
            # (each call at its scale's λ, its keyword lmbda: scaling.coding_lambda)
            return gate_auto(
                lambda coded, lmbda=lmbda: self._encode(coded, width, grayscale, lmbda),
                lambda image, at, filter_, gated, lmbda=lmbda: self._gate(
                    image, width, grayscale, lmbda, 0, gated, at, filter_),
                lambda chosen, at, filter_, lmbda=lmbda: self._encode(
                    rgb, width, grayscale, lmbda, refine, report, progress, chosen,
                    scale=at, resampling=filter_),
                self.decode_rgb, rgb, self._scale_weight(width, lmbda), self.max_pixels,
                report, self._lowest_lambda(width), colours)
        if scale != 1 or resampling != "lanczos":  # checked there, even at scale 1
            plain = refine or report is not None  # a probe codes without either
            return encode_scaled(
                lambda coded, lmbda=lmbda: self._encode(
                    coded, width, grayscale, lmbda, refine, report, progress, domain, mixture),
                self.decode_rgb, rgb, scale, self.max_pixels, report, resampling,
                probe_encode=(lambda coded, lmbda=lmbda: self._encode(
                    coded, width, grayscale, lmbda, domain=domain, mixture=mixture))
                if plain else None,
                weight=lambda: self._scale_weight(width, lmbda),
                lowest=self._lowest_lambda(width), colours=colours)
        domain = None if domain == SOURCE else domain
        if refine < 0:
            raise ValueError("refine must be >= 0 steps")
        if mixture is not None and domain in GATES:
            raise ValueError("mixture= fixes the weights: domain names the domain whose "
                             "entropy models code the latent, or is None")
        if domain == "mix":
            return self._mix(rgb, width, grayscale, lmbda, refine, report)
        if domain == "gate":
            return self._gated(rgb, width, grayscale, lmbda, refine, report)
        adapter = self.adapter_for(domain) if domain is not None else None
        members = self._mixture_members(mixture, adapter) if mixture is not None else ()
        coder = self._mixture(members, adapter) if mixture is not None else adapter
        with self.operating_point(width, lmbda, coder):
            latent = self.model.latent_coder()
            y = _out_of_memory(
                f"encoding a {img_width}x{height} image",
                lambda: tiling.analyze(_numpy(self.model.analysis), rgb,
                                       self.model.downsampling, tiling.unchanged, self.tile))
            if refine:
                strings = self._refined(rgb, latent, y, width, lmbda, refine,
                                        report if report is not None else {}, progress)
            else:
                strings = latent.encode(y)
        kind = RateKind.NONE if lmbda is None else RateKind.LAMBDA
        header = Header(self.fingerprint, width, (height, img_width), grayscale, kind,
                        0.0 if lmbda is None else lmbda,
                        adapter.domain_id if adapter is not None else 0, members)
        return pack(Bitstream(header, strings))

    def _mixture_members(self, weights: Mapping[str, float], entropy_domain: Any
                         ) -> tuple[tuple[int, float], ...]:
        """A mixture's ``(domain id, weight)`` pairs, as the container holds them."""
        members = {}
        for name, weight in weights.items():
            units = float(weight) * MIXTURE_UNIT
            if not (units.is_integer() and 0 <= units < 256):
                raise ValueError(f"mixture weight {weight} of domain {name!r} is not a "
                                 f"multiple of 1/{MIXTURE_UNIT} in [0, {255 / MIXTURE_UNIT}]")
            members[self.adapter_for(name).domain_id] = float(weight)
        if entropy_domain is not None:  # listed even at weight 0: the decoder needs it
            members.setdefault(entropy_domain.domain_id, 0.0)
        if not members:
            raise ValueError("an empty mixture")
        return tuple(sorted(members.items()))

    def _mixture(self, members: Sequence[tuple[int, float]], entropy_domain: Any) -> Any:
        from slimcodec.adaptation.adapters import AdapterMixture

        return AdapterMixture([(self.adapters[d], w) for d, w in members], entropy_domain)

    def rd_weight(self, width: int, lmbda: float | None) -> float:
        """The λ that weighs rate against distortion at ``width``: the file's for a
        variable-rate model, the width's training λ for a single-rate one."""
        if lmbda is not None:
            return lmbda
        if not self.rd_lambdas:
            raise RateError(f"{self.name}'s training λ per width is unknown (its model file "
                            "records none): pass Codec(..., rd_lambdas=...)")
        return float(self.rd_lambdas[self.widths.index(width)])

    def _scale_weight(self, width: int, lmbda: float | None) -> float | None:
        """The RD weight ``scale="auto"`` chooses by; None where there is none (a
        single-rate model that records no training λ: it codes at scale 1)."""
        try:
            return self.rd_weight(width, lmbda)
        except RateError:
            return None

    def _lowest_lambda(self, width: int) -> float | None:
        """The lowest λ ``scale="auto"`` codes a candidate at (:func:`~slimcodec.scaling.
        coding_lambda`); None for a single-rate model, which codes its one rate."""
        return self.lambda_range(width)[0] if self.variable_rate else None

    def rd_loss(self, rgb: np.ndarray, data: bytes, y_hat: np.ndarray | None = None
                ) -> float:
        """λ·255²·MSE + bpp of a file (its real bytes, its decoded 8-bit pixels; λ per pixel
        of the image, :func:`~slimcodec.scaling.per_image_pixel`: s² times the file's λ
        where it was coded upsampled by s). ``y_hat``:
        the file's latent, already entropy decoded (:meth:`decode_latent`), so that files
        holding the same strings decode it once."""
        return self._measured(rgb, data, y_hat)[0]

    def _measured(self, rgb: np.ndarray, data: bytes, y_hat: np.ndarray | None,
                  quality: bool = False) -> tuple[float, float | None]:
        """:meth:`rd_loss`, and with ``quality`` the PSNR of the pixels the file decodes to
        (another pass over the image: only where a caller reads it)."""
        if y_hat is None:
            decoded, header = self.decode_rgb(data)
        else:
            header = unpack(data).header
            decoded = self.synthesize_rgb(y_hat, header)  # checks the header
        lmbda = header.rate if header.rate_kind == RateKind.LAMBDA else None
        weight = per_image_pixel(self.rd_weight(header.width, lmbda), header.image_size,
                                 header.coded_size)
        return rd_loss(rgb, decoded, len(data), weight), psnr(rgb, decoded) if quality else None

    def _gate(self, rgb: np.ndarray, width: int, grayscale: bool, lmbda: float | None,
              refine: int, report: dict[str, Any] | None, scale: float = 1.0,
              resampling: str = "lanczos") -> bytes:
        """Code with the source and every loaded adapter; keep the lowest RD loss.
        Each candidate is coded at ``scale`` with ``resampling``, its loss measured on
        ``rgb``'s own pixels.

        An adapter that changes the decoder alone (``codes_as_source``) codes the source's
        strings, so, unless refinement tunes the latent to its decoder, its candidate is the
        source's file with its domain in the header: the image is analysed and entropy
        coded once, its latent entropy decoded once, and synthesized per candidate (the same
        files and losses as coding and decoding each anew). ``report`` receives each
        candidate's loss (``gate``), the one kept (``domain``) and the PSNR its file decodes
        to (``psnr``: a PSNR target's search needs no decode of its own).
        """
        source = self._encode(rgb, width, grayscale, lmbda, refine, scale=scale,
                              resampling=resampling)
        y_hat, _ = self.decode_latent(source)  # what every relabelled candidate decodes to
        reported = report is not None
        loss, quality = self._measured(rgb, source, y_hat, reported)
        candidates = [(loss, "", source, quality)]
        for adapter in self.adapters.values():
            if adapter.codes_as_source and not refine:
                data = gated_file(source, 0, {adapter.domain_id: 1.0}, ())
                loss, quality = self._measured(rgb, data, y_hat, reported)
            else:
                data = self._encode(rgb, width, grayscale, lmbda, refine,
                                    domain=adapter.domain, scale=scale,
                                    resampling=resampling)
                loss, quality = self._measured(rgb, data, None, reported)
            candidates.append((loss, adapter.domain, data, quality))
        _, domain, data, quality = min(candidates, key=lambda c: c[:2])
        if report is not None:
            report["gate"] = {d or "source": c for c, d, _, _ in candidates}
            report["domain"] = domain or None
            report["psnr"] = quality
        return data

    def _mix(self, rgb: np.ndarray, width: int, grayscale: bool, lmbda: float | None,
             refine: int, report: dict[str, Any] | None) -> bytes:
        """The gate that weighs the decoder adapters (Presta et al., DCC 2024), by search.

        Every weighting of the loaded ``bias`` and ``adapters`` domains on a grid of
        quarters (weights summing to at most 1, so the grid holds the source codec and each
        adapter alone), with each choice of entropy models (the source's, or a member's
        own), is decoded, and the file of the lowest RD loss is kept. Presta et al. learn
        a gate that predicts the weights from the latent; searching them is exact per image
        and costs the encoder one decode per candidate, never the decoder, which reads the
        weights from the file. The latent is coded once per choice of entropy models.
        """
        from slimcodec.adaptation.adapters import MIXABLE_METHODS

        mixable = [a for a in self.adapters.values() if a.method in MIXABLE_METHODS]
        if not mixable:
            raise ModelMismatchError("--domain mix weighs decoder adapters (methods "
                                     f"{', '.join(MIXABLE_METHODS)}); none is loaded")
        grid = weight_grid(len(mixable))
        own = {a.domain_id for a in mixable if len(a.bottlenecks)}
        candidates = []
        for coder in [None, *(a for a in mixable if a.domain_id in own)]:
            plain = unpack(self._encode(rgb, width, grayscale, lmbda, refine,
                                        domain=coder.domain if coder else None))
            for weights in grid:
                by_id = {a.domain_id: w for a, w in zip(mixable, weights, strict=True)}
                header = weighed_header(plain.header, by_id, coder.domain_id if coder else 0,
                                        own)
                data = pack(Bitstream(header, plain.strings))
                chosen = {self.adapters[d].domain: w for d, w in by_id.items() if w}
                candidates.append((self.rd_loss(rgb, data), len(candidates), data,
                                   coder.domain if coder else None, chosen))
        loss, _, data, coder, weights = min(candidates)
        if report is not None:
            report.update({"mixture": weights, "domain": coder, "loss": loss,
                           "candidates": len(candidates)})
        return data

    def _gated(self, rgb: np.ndarray, width: int, grayscale: bool, lmbda: float | None,
               refine: int, report: dict[str, Any] | None) -> bytes:
        """Code with the source encoder, to be decoded with the adapter weights the learned
        gate predicts from the latent (Presta et al., DCC 2024;
        :mod:`slimcodec.adaptation.gate`); the latent coded with the entropy models of the
        adapter weighed most where it has its own (:func:`slimcodec.gating.entropy_domain`);
        kept where that beats the source codec's file by RD loss
        (:func:`slimcodec.gating.keep_gated`)."""
        if self.gate is None:
            raise ModelMismatchError("--domain gate needs a gate file (--gate)")
        self.gate.check_adapters(self.adapters)
        with self.operating_point(width, lmbda):  # the latent before rounding
            latent = _out_of_memory(
                f"encoding a {rgb.shape[1]}x{rgb.shape[0]} image",
                lambda: tiling.analyze(_numpy(self.model.analysis), rgb,
                                       self.model.downsampling, lambda y: y, self.tile))
        weights = self.gate.arrays().predict(latent, width, lmbda)
        own = {d for d, a in self.adapters.items() if len(a.bottlenecks)}
        coder = entropy_domain(weights, own)
        source = self._encode(rgb, width, grayscale, lmbda, refine)
        coded = (self._encode(rgb, width, grayscale, lmbda, refine,
                              domain=self.adapters[coder].domain) if coder else source)
        data, gated = keep_gated(gated_file(coded, coder, weights, own), source,
                                 lambda d: self.rd_loss(rgb, d))
        if report is not None:
            report.update({"mixture": {self.adapters[d].domain: w
                                       for d, w in weights.items() if w},
                           "entropy_domain": self.adapters[coder].domain if coder else None,
                           "kept": "gate" if gated else "source"})
        return data

    def _refined(self, rgb: np.ndarray, latent: Any, y: np.ndarray, width: int,
                 lmbda: float | None, steps: int, report: dict[str, Any],
                 progress: Callable[[int], None] | None) -> tuple[bytes, ...]:
        """The better strings of the plain and the refined latent (caller holds the lock)."""
        from slimcodec.refine import refine_strings

        weight = self.rd_weight(width, lmbda)
        refined = refine_strings(self.model, latent, y, rgb, weight, steps,
                                 self.refine_relaxation, self.tile, progress,
                                 lr=self.refine_lr)
        candidates = []
        for label, data in (("plain", latent.encode(y)), ("refined", refined)):
            y_hat = latent.decode(data, y.shape[1:])
            decoded = tiling.synthesize(_synthesis(self.model), tiling.unchanged, y_hat,
                                        rgb.shape[:2], self.model.downsampling, self.tile)
            mse = mean_squared_error(decoded, rgb) / 255**2
            candidates.append((rd_loss(rgb, decoded, _size(data), weight), label, data,
                               10 * math.log10(1 / max(mse, 1e-12))))
        _, label, data, predicted = min(candidates)
        report.update({"steps": steps, "lmbda": weight, "chosen": label,
                       "loss_plain": candidates[0][0], "loss_refined": candidates[1][0],
                       "psnr_predicted": predicted,
                       "bytes_plain": _size(candidates[0][2]), "bytes": _size(data)})
        return data

    @contextmanager
    def operating_point(self, width: int, lmbda: float | None, adapter: Any = None
                        ) -> Iterator[SlimCAE]:
        """Hold the model's lock, in inference mode, at ``width`` (and ``lmbda``, and with
        a domain ``adapter``)."""
        rate = (self.model.using_lambda(lmbda) if lmbda is not None else nullcontext())
        with (self._lock, torch.inference_mode(), self.model.using_width(width), rate,
              self.model.using_adapter(adapter)):
            yield self.model

    def resolve_width(self, width: int | None) -> int:
        """``width``, checked to be one of the model's; None: the model's current width
        (:meth:`~slimcodec.models.SlimCAE.set_width`; the widest unless set)."""
        width = self.model.width if width is None else int(width)
        if width not in self.widths:
            raise WidthError(f"width {width} is not one of {self.name}'s: {list(self.widths)}")
        return width

    def _checked_lambda(self, width: int, lmbda: float | None) -> float | None:
        if not self.variable_rate:
            if lmbda is not None:
                raise RateError(f"{self.name} is single-rate: it takes no λ")
            return None
        if lmbda is None:
            lmbda = self.default_lambda(width)
        lo, hi = self.lambda_range(width)
        value = float(np.float32(lmbda))
        if not (float(np.float32(lo)) <= value <= float(np.float32(hi))):
            raise RateError(f"λ {lmbda:g} is outside width {width}'s range "
                            f"[{lo:g}, {hi:g}]")
        return value

    # -- decoding -------------------------------------------------------------------------

    def check(self, header: Header) -> None:
        """Raise unless this codec's model can decode a file with ``header``."""
        writer = ("another model" if header.fingerprint == self.fingerprint
                  else writer_of(header.fingerprint))
        check_header(header, name=self.name, fingerprint=self.fingerprint, widths=self.widths,
                     lambda_bounds=self.model.lambda_bounds if self.variable_rate else None,
                     domains={i: a.domain for i, a in self.adapters.items()},
                     max_pixels=self.max_pixels, writer=writer,
                     missing_domain="; pass its adapter file with --adapter")

    def decode_rgb(self, data: bytes) -> tuple[np.ndarray, Header]:
        """Decompress to an ``(H, W, 3)`` uint8 array; also returns the header."""
        bitstream = self._checked(data)
        with self._decoding_point(bitstream.header):  # one point (one mixture) for both halves
            y_hat = self._entropy_decode(bitstream)
            return self._synthesize(y_hat, bitstream.header), bitstream.header

    def decode_latent(self, data: bytes) -> tuple[np.ndarray, Header]:
        r"""The file's entropy-decoded latent :math:`\hat y` (what the synthesis takes), and
        its header: the first half of :meth:`decode_rgb`."""
        bitstream = self._checked(data)
        with self._decoding_point(bitstream.header):
            return self._entropy_decode(bitstream), bitstream.header

    def synthesize_rgb(self, y_hat: np.ndarray, header: Header) -> np.ndarray:
        """The uint8 image the synthesis makes of ``y_hat`` as a file with ``header`` says
        (its width, λ and domain or mixture): the second half of :meth:`decode_rgb`. A
        header this model cannot decode, or a latent not of the shape it makes, is refused
        with a typed error."""
        self.check(header)
        check_latent(y_hat, header, self.model.downsampling)
        with self._decoding_point(header):
            return self._synthesize(y_hat, header)

    def _checked(self, data: bytes) -> Bitstream:
        bitstream = unpack(data)
        self.check(bitstream.header)
        return bitstream

    def _entropy_decode(self, bitstream: Bitstream) -> np.ndarray:
        """The latent of a checked file, at the operating point its header sets."""
        h, w = bitstream.header.coded
        latent = tuple(-(-side // self.model.downsampling) for side in (h, w))
        coder = self.model.latent_coder()
        return _out_of_memory(f"decoding a {w}x{h} image",
                              lambda: coder.decode(bitstream.strings, latent))

    def _synthesize(self, y_hat: np.ndarray, header: Header) -> np.ndarray:
        """The image of ``y_hat``, at the operating point ``header`` sets."""
        h, w = header.coded
        return finish(to_image_size(_out_of_memory(
            f"decoding a {w}x{h} image",
            lambda: tiling.synthesize(_synthesis(self.model), tiling.unchanged, y_hat,
                                      header.coded, self.model.downsampling, self.tile)),
            header), header)

    def _decoding_point(self, header: Header) -> Any:
        """:meth:`operating_point` as a (checked) file's header sets it."""
        lmbda = header.rate if header.rate_kind == RateKind.LAMBDA else None
        adapter = self.adapters.get(header.domain) if header.domain else None
        if header.mixture:
            try:
                adapter = self._mixture(header.mixture, adapter)
            except ValueError as exc:  # a writer that mixed what cannot be mixed
                raise CorruptBitstreamError(f"corrupt slimcodec file: {exc}") from None
        return self.operating_point(header.width, lmbda, adapter)

    def decode(self, data: bytes) -> Image.Image:
        """Decompress to a PIL image (mode ``L`` for grayscale sources, else ``RGB``)."""
        rgb, header = self.decode_rgb(data)
        image = Image.fromarray(rgb, "RGB")
        return image.convert("L") if header.grayscale else image
