""":class:`EdgeCodec`: a bundle's graphs in onnxruntime, the container and rANS in numpy.

The same steps as :class:`slimcodec.codec.Codec`, with an onnxruntime session in place of
the model: tiled analysis (:mod:`slimcodec.tiling`), ``round(y - median)``, rANS, the
container; and back. Files written by either decode with the other; the entropy symbols
decoded from a file are identical, and pixels differ at most by one level where the two
runtimes' float arithmetic rounds differently (``benchmarks/edge_parity.py`` measures how
often). A bundle exported with domain adapters (``slimcodec export --adapter``) codes with
them too: ``encode(..., domain=NAME)`` writes the domain's id, and a file's id picks the
graphs and entropy tables it decodes with. A file of the weighing gate (``slimcodec compress
--domain mix``) decodes through the bundle's mixing graph, with the file's weights as its
input, and ``encode(..., domain="mix")`` searches the weights as slimcodec does;
``encode(..., domain="gate")`` has the bundle's learned gate predict them
(:mod:`slimcodec.gating`, the arithmetic slimcodec's encoder runs).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from slimcodec import tiling
from slimcodec.bitstream import Bitstream, Header, RateKind, pack, unpack
from slimcodec.bitstream.checks import check_header, check_image_size, check_latent
from slimcodec.bitstream.mixture import weighed_header, weight_grid
from slimcodec.bitstream.rate import rd_loss
from slimcodec.errors import (
    BundleError,
    CorruptBitstreamError,
    ModelMismatchError,
    RateError,
    ResourceLimitError,
    StaleBundleWarning,
    WidthError,
    check_positive,
)
from slimcodec.gating import adapter_domain, entropy_domain, gated_file, keep_gated
from slimcodec.latent import LatentCoder
from slimcodec.palette import colours_to_try, finish, with_palette
from slimcodec.rate_control import encode_with_rate
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
from slimcodec.utils.metrics import psnr
from slimcodec.zoo.catalog import writer_of

from ..bundle import Bundle

__all__ = ["DEFAULT_MAX_PIXELS", "EdgeCodec"]


DEFAULT_MAX_PIXELS = 1 << 26  # as slimcodec.codec.DEFAULT_MAX_PIXELS (which imports torch)


def _session_options(threads: int, arena: bool) -> ort.SessionOptions:
    """onnxruntime options: ``threads`` intra-op threads (0: all cores), quiet, and a memory
    arena or not."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = arena
    return options


class EdgeCodec:
    """Encode and decode slimcodec files with a bundle.

    Args:
        bundle: a bundle folder (or a loaded :class:`~slimcodec_edge.bundle.Bundle`).
        threads: onnxruntime intra-op threads (0: onnxruntime's default, all cores).
        int8: use the bundle's int8 graphs (``slimcodec export --int8``).
        max_pixels: refuse larger images before allocating anything for them.
        tile: tile size of the transforms, in latent positions (16 pixels each).
    """

    def __init__(self, bundle: str | os.PathLike | Bundle, threads: int = 0, int8: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS, tile: int = tiling.DEFAULT_TILE) -> None:
        check_positive(max_pixels=max_pixels, tile=tile)
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.int8 = int8
        if (int8 or self.bundle.int8_only) and self.bundle.clipping_int8_means:
            warnings.warn(f"{self.bundle.root}: exported by slimcodec 0.5.0, whose int8 h_μ "
                          "clips the means at high rates (a file a float encoder wrote "
                          "decodes up to 3.3 dB below its float decode at the top of the "
                          "widest width); export the bundle again", StaleBundleWarning,
                          stacklevel=2)
        self.max_pixels = int(max_pixels)
        self.tile = int(tile)
        # The coder's networks run on bands of rows as wide as the image: an arena would keep
        # each session's largest band allocated for the codec's life, so they allocate and
        # free per run. The tiled transforms keep theirs: their tiles repeat one size, so it
        # holds one tile's working set, reused rather than reallocated for every tile.
        self.options = _session_options(threads, arena=True)
        self.coder_options = _session_options(threads, arena=False)
        self._sessions: dict[tuple[int, str, int], ort.InferenceSession] = {}
        self._coders: dict[tuple[int, int, int], LatentCoder] = {}

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def widths(self) -> tuple[int, ...]:
        return self.bundle.widths

    @property
    def fingerprint(self) -> bytes:
        return self.bundle.fingerprint

    @property
    def variable_rate(self) -> bool:
        """Whether the bundle's model takes a λ (and so a quality or a rate target)."""
        return self.bundle.variable_rate

    @property
    def gate_keeps_source_strings(self) -> bool:
        """Whether the gate ``auto`` always keeps the model alone's strings: every built-in
        adapter codes them (the manifest's ``codes_as_source``), so whichever it picks, its
        file is the model alone's but for the domain field."""
        return all(e.get("codes_as_source", False) for e in self.bundle.domains.values())

    def lambda_range(self, width: int) -> tuple[float, float]:
        """The λ range the model was trained for at ``width``."""
        if not self.variable_rate:
            raise RateError(f"{self.name} is single-rate: it has no λ to set (λ, quality and "
                            "rate targets need a variable-rate model); pick a rate by width")
        return self.bundle.lambda_range(self.resolve_width(width))

    def session(self, width: int, kind: str, domain: int = 0) -> ort.InferenceSession:
        """The onnxruntime session of a width's ``analysis`` or ``synthesis`` graph (of a
        domain's adapter for ``domain`` > 0), or of its ``mix`` graph."""
        key = (width, kind, domain)
        if key not in self._sessions:
            path = (self.bundle.mixture_graph(width, self.int8) if kind == "mix"
                    else self.bundle.graph(width, kind, self.int8, domain))
            try:
                options = (self.coder_options if kind in self.bundle.coder_graphs
                           else self.options)
                self._sessions[key] = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise BundleError(f"{path}: not a loadable graph ({exc})") from None
        return self._sessions[key]

    def _transform(self, width: int, kind: str, lmbda: float | None, domain: int = 0,
                   weights: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
        session = self.session(width, kind, domain)
        first = session.get_inputs()[0].name
        extra = {} if lmbda is None else {"lmbda": np.array([lmbda], np.float32)}
        if weights is not None:
            extra["weights"] = weights
        return lambda x: session.run(None, {first: x, **extra})[0]

    def coder(self, width: int, lmbda: float | None, domain: int = 0) -> LatentCoder:
        """The latent coder of ``width`` (λ, domain), running the bundle's graphs for it;
        built once (its tables checked once) per width, rate anchor and domain."""
        key = (width, self.bundle.anchor(lmbda), domain)
        if key not in self._coders:
            networks = {}
            for kind in self.bundle.coder_graphs:
                run = self._transform(width, kind, None, domain)
                networks[kind] = lambda a, run=run: run(
                    np.ascontiguousarray(a[None], np.float32))[0]
            self._coders[key] = self.bundle.coder(width, lmbda, domain, networks)
        return self._coders[key]

    def _mixture_weights(self, header: Header) -> np.ndarray:
        """The mixing graph's ``weights`` input for a mixed file: each member's weight at its
        place in the bundle's mixture, 0 for the rest."""
        members = self.bundle.mixture_domains
        weights = np.zeros(len(members), np.float32)
        for domain, weight in header.mixture:
            if domain not in members:  # built in, but not decoder-side: no valid file mixes it
                raise CorruptBitstreamError(
                    f"corrupt slimcodec file: it mixes domain id {domain}, whose adapter "
                    f"({self.bundle.domains[domain]['method']}) changes the encoder")
            weights[members.index(domain)] = weight
        return weights

    # -- checks -----------------------------------------------------------------------------

    def resolve_width(self, width: int | None) -> int:
        width = self.widths[0] if width is None else int(width)
        if width not in self.widths:
            raise WidthError(f"width {width} is not one of {self.name}'s: {list(self.widths)}")
        return width

    def _scale_weight(self, width: int, lmbda: float | None) -> float | None:
        """The RD weight ``scale="auto"`` chooses by; None where the bundle records none (it
        then codes at scale 1, as slimcodec's codec does)."""
        try:
            return self.bundle.rd_weight(width, lmbda)
        except BundleError:
            return None

    def _lowest_lambda(self, width: int) -> float | None:
        """As slimcodec's codec: the lowest λ ``scale="auto"`` codes a candidate at."""
        return self.bundle.lambda_range(width)[0] if self.bundle.variable_rate else None

    def _lambda(self, width: int, lmbda: float | None) -> float | None:
        if not self.bundle.variable_rate:
            if lmbda is not None:
                raise RateError(f"{self.name} is single-rate: it takes no λ")
            return None
        lo, hi = self.bundle.lambda_range(width)
        value = float(np.float32(np.sqrt(lo * hi) if lmbda is None else lmbda))
        if not float(np.float32(lo)) <= value <= float(np.float32(hi)):
            raise RateError(f"λ {lmbda:g} is outside width {width}'s range [{lo:g}, {hi:g}]")
        return value

    # -- coding -----------------------------------------------------------------------------

    def encode(self, image: ImageLike, width: int | None = None, lmbda: float | None = None,
               domain: str | None = None, *, quality: float | None = None,
               target_bpp: float | None = None, target_size: int | None = None,
               target_psnr: float | None = None, prefer: str = "quality",
               scale: Scale = AUTO, resampling: str = "lanczos", palette: bool = True) -> bytes:
        """Compress an image (path, PIL image or uint8 array) to container bytes; with
        ``domain``, through that built-in domain adapter. The rate, one of: ``lmbda``,
        ``quality`` (1-100), ``target_bpp``, ``target_size`` (bytes) or ``target_psnr``,
        searched as ``slimcodec.compress`` does it
        (:func:`slimcodec.rate_control.encode_with_rate`, the same code); ``scale``,
        ``resampling`` and ``palette`` as :meth:`encode_rgb`'s (``scale``, unless given,
        :data:`~slimcodec.scaling.AUTO`, as ``slimcodec-edge encode``'s)."""
        rgb, grayscale = load_rgb(image, max_pixels=self.max_pixels)
        data, _ = encode_with_rate(self, rgb, grayscale, width, lmbda=lmbda, quality=quality,
                                   target_bpp=target_bpp, target_size=target_size,
                                   target_psnr=target_psnr, domain=domain, prefer=prefer,
                                   scale=scale, resampling=resampling, palette=palette)
        return data

    def encode_rgb(self, rgb: np.ndarray, width: int | None = None, grayscale: bool = False,
                   lmbda: float | None = None, domain: str | None = None,
                   report: dict[str, Any] | None = None, scale: Scale = 1.0,
                   resampling: str = "lanczos", palette: bool = True) -> bytes:
        """Compress an ``(H, W, 3)`` uint8 array. ``domain``: a built-in domain adapter's
        name; None or ``"source"``, the model alone; ``"auto"``, the gate: code with the
        source and every built-in adapter and keep the file of the lowest RD loss (as
        :meth:`slimcodec.codec.Codec.encode_rgb`; ``report`` then receives each candidate's
        loss, ``gate``, the domain kept, ``domain``, and the PSNR its file decodes to,
        ``psnr``);
        ``"mix"``, the gate that weighs the decoder adapters (:meth:`_mix`); ``"gate"``, the
        learned gate (:meth:`_gated`). ``scale``: code the image upsampled by it with the
        filter ``resampling``, as slimcodec does (:mod:`slimcodec.scaling`; ``"auto"``:
        the scale and filter of the lowest RD loss on a probe of the image, then with the
        gate ``"auto"`` its domain on the probe, :func:`~slimcodec.scaling.gate_auto`).
        ``palette``: the file may carry the image's colours and exact blocks, as
        slimcodec's (:func:`slimcodec.palette.with_palette`); False: never."""
        data = self._encode(rgb, width, grayscale, lmbda, domain, report, scale, resampling,
                            palette)
        if not palette:
            return data
        return with_palette(data, rgb, self.decode_rgb, self._scale_weight, report)

    def _encode(self, rgb: np.ndarray, width: int | None = None, grayscale: bool = False,
                lmbda: float | None = None, domain: str | None = None,
                report: dict[str, Any] | None = None, scale: Scale = 1.0,
                resampling: str = "lanczos", palette: bool = False) -> bytes:
        """:meth:`encode_rgb` without the palette: what its every path codes with
        (``palette``: as :meth:`slimcodec.codec.Codec._encode`'s)."""
        height, img_width = rgb.shape[:2]
        check_image_size(height, img_width, self.max_pixels)
        width = self.resolve_width(width)
        lmbda = self._lambda(width, lmbda)
        colours = colours_to_try(rgb) if palette and scale == AUTO else None
        if domain == "auto":  # the gate, at a scale or choosing it
            if scale != AUTO:
                return self._gate(rgb, width, grayscale, lmbda, report, scale, resampling)
            check_auto_filter(scale, resampling)  # before the probe's work
            # (each call at its scale's λ, its keyword lmbda: scaling.coding_lambda)
            return gate_auto(
                lambda coded, lmbda=lmbda: self._encode(coded, width, grayscale, lmbda),
                lambda image, at, filter_, gated, lmbda=lmbda: self._gate(
                    image, width, grayscale, lmbda, gated, at, filter_),
                lambda chosen, at, filter_, lmbda=lmbda: self._encode(
                    rgb, width, grayscale, lmbda, chosen, report, at, filter_),
                self.decode_rgb, rgb, self._scale_weight(width, lmbda), self.max_pixels,
                report, self._lowest_lambda(width), colours)
        if scale != 1 or resampling != "lanczos":  # checked there, even at scale 1
            return encode_scaled(
                lambda coded, lmbda=lmbda: self._encode(coded, width, grayscale, lmbda,
                                                        domain, report),
                self.decode_rgb, rgb, scale, self.max_pixels, report, resampling,
                probe_encode=(lambda coded, lmbda=lmbda: self._encode(
                    coded, width, grayscale, lmbda, domain))
                if report is not None else None,
                weight=lambda: self._scale_weight(width, lmbda),
                lowest=self._lowest_lambda(width), colours=colours)
        if domain == "mix":
            return self._mix(rgb, width, grayscale, lmbda)
        if domain == "gate":
            return self._gated(rgb, width, grayscale, lmbda)
        named = adapter_domain(domain)  # None: the model alone ("source" says so too)
        domain_id = self.bundle.domain_id(named) if named is not None else 0
        coder = self.coder(width, lmbda, domain_id)
        y = tiling.analyze(self._transform(width, "analysis", lmbda, domain_id), rgb,
                           self.bundle.downsampling, tiling.unchanged, self.tile)
        strings = coder.encode(y)
        kind = RateKind.NONE if lmbda is None else RateKind.LAMBDA
        header = Header(self.fingerprint, width, (height, img_width), grayscale, kind,
                        0.0 if lmbda is None else lmbda, domain_id)
        return pack(Bitstream(header, strings))

    def _gate(self, rgb: np.ndarray, width: int, grayscale: bool, lmbda: float | None,
              report: dict[str, Any] | None = None, scale: float = 1.0,
              resampling: str = "lanczos") -> bytes:
        """As slimcodec's ``--domain auto``: the source and every built-in adapter, each
        coded at ``scale`` with ``resampling``, the lowest RD loss on ``rgb``'s pixels. An
        adapter the manifest says ``codes_as_source`` (decoder alone, no entropy tables of
        its own) codes the source's strings, so its candidate is the source's file
        relabelled: the image is analysed and entropy coded once, and its
        latent entropy decoded once and synthesized per candidate."""
        source = self._encode(rgb, width, grayscale, lmbda, scale=scale,
                              resampling=resampling)
        header = unpack(source).header
        weight = per_image_pixel(self.bundle.rd_weight(width, lmbda), header.image_size,
                                 header.coded_size)
        y_hat, _ = self.decode_latent(source)  # what every relabelled candidate decodes to

        def measured(data: bytes, relabelled: bool) -> tuple[float, bytes, float | None]:
            decoded = (self.synthesize_rgb(y_hat, unpack(data).header) if relabelled
                       else self.decode_rgb(data)[0])
            quality = psnr(rgb, decoded) if report is not None else None  # only if read
            return rd_loss(rgb, decoded, len(data), weight), data, quality

        candidates = [(*measured(source, True), None)]
        for domain, entry in self.bundle.domains.items():
            relabelled = bool(entry.get("codes_as_source"))
            data = (gated_file(source, 0, {domain: 1.0}, ()) if relabelled
                    else self._encode(rgb, width, grayscale, lmbda, entry["name"],
                                      scale=scale, resampling=resampling))
            candidates.append((*measured(data, relabelled), entry["name"]))
        _, data, quality, name = min(candidates, key=lambda c: c[0])  # the first of the lowest
        if report is not None:
            report["gate"] = {n or "source": loss for loss, _, _, n in candidates}
            report["domain"] = name
            report["psnr"] = quality
        return data

    def _mix(self, rgb: np.ndarray, width: int, grayscale: bool, lmbda: float | None
             ) -> bytes:
        """The gate that weighs the built-in decoder adapters, as slimcodec's ``--domain
        mix``: every weighting on the grid (:mod:`slimcodec.bitstream.mixture`), with each
        choice of entropy models, decoded through the mixing graph; the lowest RD loss."""
        members = self.bundle.mixture_domains
        if not members:
            raise ModelMismatchError(f"{self.name}'s bundle has no decoder adapters to weigh "
                                     "(export it with bias or adapters --adapter files)")
        grid = weight_grid(len(members))
        own = {d for d in members if self.bundle.domains[d].get("own_tables")}
        weight = self.bundle.rd_weight(width, lmbda)
        candidates = []
        for coder in (0, *(d for d in members if d in own)):
            name = self.bundle.domains[coder]["name"] if coder else None
            plain = unpack(self._encode(rgb, width, grayscale, lmbda, name))
            for weights in grid:
                header = weighed_header(plain.header, dict(zip(members, weights, strict=True)),
                                        coder, own)
                data = pack(Bitstream(header, plain.strings))
                loss = rd_loss(rgb, self.decode_rgb(data)[0], len(data), weight)
                candidates.append((loss, len(candidates), data))
        return min(candidates)[2]

    def _gated(self, rgb: np.ndarray, width: int, grayscale: bool, lmbda: float | None
               ) -> bytes:
        """As slimcodec's ``--domain gate``: the bundle's learned gate predicts the decoder
        adapters' weights from the source's latent (and so the entropy models, as
        :func:`slimcodec.gating.entropy_domain` picks them), kept where they beat the source
        codec's file by RD loss (:func:`slimcodec.gating.keep_gated`)."""
        gate = self.bundle.gate()
        latent = tiling.analyze(self._transform(width, "analysis", lmbda), rgb,
                                self.bundle.downsampling, lambda y: y, self.tile)
        weights = gate.predict(latent, width, lmbda)
        own = {d for d in self.bundle.mixture_domains if self.bundle.domains[d].get("own_tables")}
        coder = entropy_domain(weights, own)
        rd_weight = self.bundle.rd_weight(width, lmbda)
        source = self._encode(rgb, width, grayscale, lmbda)
        coded = (self._encode(rgb, width, grayscale, lmbda, self.bundle.domains[coder]["name"])
                 if coder else source)
        data, _ = keep_gated(gated_file(coded, coder, weights, own), source,
                             lambda d: rd_loss(rgb, self.decode_rgb(d)[0], len(d), rd_weight))
        return data

    def check(self, header: Header) -> None:
        """Raise unless this bundle can decode a file with ``header``."""
        writer = ("another model" if header.fingerprint == self.fingerprint
                  else writer_of(header.fingerprint))
        check_header(header, name=self.name, fingerprint=self.fingerprint, widths=self.widths,
                     lambda_bounds=(self.bundle.lambda_bounds if self.bundle.variable_rate
                                    else None),
                     domains={d: e["name"] for d, e in self.bundle.domains.items()},
                     max_pixels=self.max_pixels, writer=writer,
                     missing_domain=" (re-export the bundle with its adapter)",
                     mixtures=bool(self.bundle.mixture_domains))

    def decode_latent(self, data: bytes) -> tuple[np.ndarray, Header]:
        r"""The file's entropy-decoded ``(C, h, w)`` float32 latent :math:`\hat y` (what the
        synthesis takes), and its header."""
        bitstream = unpack(data)
        header = bitstream.header
        self.check(header)
        factor = self.bundle.downsampling
        latent = tuple(-(-side // factor) for side in header.coded)
        lmbda = header.rate if header.rate_kind == RateKind.LAMBDA else None
        coder = self.coder(header.width, lmbda, header.domain)
        try:
            y_hat = coder.decode(bitstream.strings, latent)
        except MemoryError:
            raise ResourceLimitError("out of memory decoding the latent") from None
        return y_hat, header

    def decode_rgb(self, data: bytes) -> tuple[np.ndarray, Header]:
        """Decompress to an ``(H, W, 3)`` uint8 array; also returns the header."""
        y_hat, header = self.decode_latent(data)
        return self.synthesize_rgb(y_hat, header), header

    def synthesize_rgb(self, y_hat: np.ndarray, header: Header) -> np.ndarray:
        """The uint8 image the synthesis makes of ``y_hat`` as a file with ``header`` says
        (its width, λ and domain or mixture): the second half of :meth:`decode_rgb`. A
        header this bundle cannot decode, or a latent not of the shape it makes, is refused
        with a typed error, as in the PyTorch codec."""
        self.check(header)
        check_latent(y_hat, header, self.bundle.downsampling)
        lmbda = header.rate if header.rate_kind == RateKind.LAMBDA else None
        if header.mixture:  # the domain field names the entropy models; the weights, the graph
            synthesis = self._transform(header.width, "mix", lmbda,
                                        weights=self._mixture_weights(header))
        else:
            synthesis = self._transform(header.width, "synthesis", lmbda, header.domain)
        try:
            rgb = tiling.synthesize(synthesis, tiling.unchanged, y_hat, header.coded,
                                    self.bundle.downsampling, self.tile)
        except MemoryError:
            raise ResourceLimitError("out of memory decoding the image") from None
        return finish(to_image_size(rgb, header), header)

    def decode(self, data: bytes) -> Image.Image:
        """Decompress to a PIL image (``L`` for grayscale sources, else ``RGB``)."""
        rgb, header = self.decode_rgb(data)
        image = Image.fromarray(rgb, "RGB")
        return image.convert("L") if header.grayscale else image

