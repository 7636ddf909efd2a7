"""Rate-distortion evaluation through the real container: what ``slimcodec eval`` reports.

For every image and width the image goes through :meth:`Codec.encode_rgb` to bytes and
back. bpp counts every byte of the container (header and CRC included) over the original
pixel count; PSNR and MS-SSIM compare the 8-bit RGB input (after the mode rules of
:mod:`slimcodec.utils.image`) with the 8-bit decoded output. Points average over images, a
PSNR counted at most :data:`~slimcodec.utils.metrics.MEAN_PSNR_CEILING` (60 dB: an image
decoded exactly has an infinite one).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from slimcodec.bitstream.container import RESAMPLING
from slimcodec.codec import Codec
from slimcodec.errors import ImageError, SlimcodecError
from slimcodec.rate_control import lambdas_for_eval
from slimcodec.scaling import AUTO, Scale
from slimcodec.utils.image import ImageLike, load_rgb
from slimcodec.utils.metrics import mean_psnr, ms_ssim, psnr

__all__ = ["evaluate", "format_table", "operating_points"]


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def operating_points(codec: Codec, widths: Sequence[int] | None = None,
                     lmbdas: Sequence[float] | None = None) -> list[tuple[int, float | None]]:
    """``(width, λ)`` pairs to evaluate: each width, and for a variable-rate model each λ of
    ``lmbdas`` (default: 5 spread over the width's range; a λ outside a width's range skips
    that width)."""
    widths = list(codec.widths if widths is None else widths)
    for w in widths:
        if w not in codec.widths:
            raise SlimcodecError(f"width {w} is not one of {list(codec.widths)}")
    if not codec.variable_rate:
        if lmbdas:
            raise SlimcodecError(f"{codec.name} is single-rate: --lmbdas does not apply")
        return [(w, None) for w in widths]
    points = []
    for w in widths:
        lo, hi = (float(np.float32(v)) for v in codec.lambda_range(w))
        values = lambdas_for_eval(codec, w) if lmbdas is None else lmbdas
        points += [(w, float(np.float32(v))) for v in values
                   if lo <= float(np.float32(v)) <= hi]
    if not points:
        raise SlimcodecError("no λ of --lmbdas lies in any evaluated width's range")
    return points


def evaluate(
    codec: Codec,
    images: Sequence[ImageLike],
    widths: Sequence[int] | None = None,
    progress: bool = True,
    lmbdas: Sequence[float] | None = None,
    refine: int = 0,
    domain: str | None = None,
    repeats: int = 1,
    scale: Scale = AUTO,
    resampling: str = "lanczos",
    palette: bool = True,
) -> dict[str, Any]:
    """Code every image (paths, PIL images or arrays) at every operating point (width, and
    λ for a variable-rate model: see :func:`operating_points`); average the points.

    ``domain``: as :meth:`Codec.encode_rgb`'s; None: the codec's
    :attr:`~slimcodec.codec.Codec.default_domain`, what ``slimcodec compress`` does
    (``"source"``: the model alone, without the adapters a shipped model comes with).

    ``repeats``: code each image that many times at each point; its encode and decode times
    are the medians (a file's bytes and pixels are the same every time).

    ``scale``: code each image upsampled by it with the filter ``resampling``
    (:mod:`slimcodec.scaling`); the default, ``"auto"``, chooses both per image and point,
    as ``slimcodec compress`` does; rates and PSNRs are the original's, and each image's
    record says the size it was coded at (``coded_size``) and the filter.

    ``palette``: as :meth:`Codec.encode_rgb`'s (False: files without one); each image's
    record says how many colours its file's palette holds (``palette``, 0 for none).

    Unreadable images are skipped with a warning. Raises ``SlimcodecError`` when none is left.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    domain = codec.default_domain if domain is None else domain
    settings = operating_points(codec, widths, lmbdas)
    loaded: list[tuple[str, np.ndarray]] = []
    for i, image in enumerate(images):
        name = str(image) if isinstance(image, (str, os.PathLike)) else f"image {i}"
        try:
            loaded.append((name, load_rgb(image, max_pixels=codec.max_pixels)[0]))
        except ImageError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
    if not loaded:
        raise SlimcodecError("no readable images to evaluate")

    # One untimed pass per width on a small crop: the first call pays one-off set-up costs.
    warm = loaded[0][1][:64, :64]
    for w, lmbda in settings:
        codec.decode_rgb(codec.encode_rgb(warm, w, lmbda=lmbda, scale=scale,
                                          resampling=resampling))

    per_point: dict[tuple[int, float | None], list[dict[str, Any]]] = {s: [] for s in settings}
    bar = tqdm(total=len(loaded) * len(settings), desc="eval", unit="code",
               disable=not progress, file=sys.stderr)
    for path, rgb in loaded:
        pixels = rgb.shape[0] * rgb.shape[1]
        for w, lmbda in settings:
            enc, dec = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                data = codec.encode_rgb(rgb, w, lmbda=lmbda, refine=refine, domain=domain,
                                        scale=scale, resampling=resampling, palette=palette)
                t1 = time.perf_counter()
                out, header = codec.decode_rgb(data)
                enc.append(t1 - t0)
                dec.append(time.perf_counter() - t1)
            record = {
                "image": path,
                "width": w,
                "size": list(rgb.shape[:2]),
                "bytes": len(data),
                "bpp": 8 * len(data) / pixels,
                "psnr": psnr(rgb, out),
                "ms_ssim": ms_ssim(rgb, out),
                "enc_ms": 1000 * float(np.median(enc)),
                "dec_ms": 1000 * float(np.median(dec)),
                "coded_size": list(header.coded),
                "resampling": (RESAMPLING[header.resampling] if header.coded_size
                               else None),
                "palette": len(header.palette),
            }
            if lmbda is not None:
                record["lmbda"] = lmbda
            per_point[(w, lmbda)].append(record)
            bar.update()
    bar.close()

    points = []
    for (w, lmbda), records in per_point.items():
        point: dict[str, Any] = {"width": w}
        if lmbda is not None:
            point["lmbda"] = lmbda
        point.update({k: _mean(r[k] for r in records)
                      for k in ("bpp", "ms_ssim", "enc_ms", "dec_ms")})
        point["psnr"] = mean_psnr(r["psnr"] for r in records)
        points.append(point)
    return {
        "model": codec.name,
        "fingerprint": codec.fingerprint.hex(),
        "images": len(loaded),
        "refine": refine,
        "domain": domain,
        "repeats": repeats,
        "scale": scale,
        "resampling": resampling,
        "points": points,
        "per_image": [r for records in per_point.values() for r in records],
    }


def format_table(result: dict[str, Any]) -> str:
    """The points of :func:`evaluate` as a fixed-width text table."""
    rate = any("lmbda" in p for p in result["points"])
    head = f"{'width':>5} " + (f"{'λ':>9} " if rate else "")
    lines = [head + f"{'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'enc ms':>8} {'dec ms':>8}"]
    for p in result["points"]:
        msssim = f"{p['ms_ssim']:.4f}" if p["ms_ssim"] is not None else "n/a"
        lam = f"{p['lmbda']:>9.5f} " if rate else ""
        lines.append(
            f"{p['width']:>5} {lam}{p['bpp']:>7.4f} {p['psnr']:>8.2f} {msssim:>8} "
            f"{p['enc_ms']:>8.1f} {p['dec_ms']:>8.1f}"
        )
    return "\n".join(lines)
