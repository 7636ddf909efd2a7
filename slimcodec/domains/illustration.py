"""A deterministic generator of vector-style illustrations: flat and gradient digital art.

Wallpaper-style illustrations are few and each is its own style, so adapting on a handful
teaches an adapter those images more than the style they share. This generator draws that
style from a seed alone (same seed, same pixels), one of four kinds:

* **lowpoly**: a jittered triangle mesh, each facet filled flat with the colour of a smooth
  gradient at its centroid plus a small shading offset (low-poly landscapes and abstracts);
* **hexagons**: a hexagon grid whose cells take one palette inside a smooth random region
  and another outside, some cells left out to show a faint grid behind;
* **layers**: a sky gradient, a sun or moon, and ranges of flat ridges (jagged or smooth)
  fading into the haze with distance;
* **bokeh**: a dark gradient crossed by a band of translucent discs of every size, some
  blurred, along a curve.

Shapes are drawn at twice the size and downsampled with Lanczos, so edges are anti-aliased
as in rendered vector art; a faint grain (1-2 grey levels) is added to some, as exported
wallpapers have. Palettes are harmonious (analogous or complementary hues) in HSV.
"""

from __future__ import annotations

import colorsys
import math
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from slimcodec.domains.folder import write_rendered

__all__ = ["KINDS", "render_illustration", "write_illustrations"]

KINDS = ("lowpoly", "hexagons", "layers", "bokeh")
SUPERSAMPLE = 2

Colour = tuple[float, float, float]  # RGB in [0, 1]


def _palette(rng: random.Random, n: int) -> list[Colour]:
    """``n`` colours around one or two hues (analogous or complementary)."""
    hue = rng.random()
    spread = rng.choice([0.06, 0.12, 0.5])  # analogous, wider, complementary
    sat, val = rng.uniform(0.35, 0.9), rng.uniform(0.45, 1.0)
    return [colorsys.hsv_to_rgb((hue + spread * rng.uniform(-1, 1) * (i % 2 or 0.5)) % 1,
                                min(1.0, max(0.1, sat + rng.uniform(-0.25, 0.25))),
                                min(1.0, max(0.08, val + rng.uniform(-0.35, 0.25))))
            for i in range(n)]


def _gradient(rng: random.Random, stops: list[Colour]):
    """A linear gradient along a random direction: a function of (x, y) in [0, 1]²."""
    angle = rng.uniform(0, 2 * math.pi)
    dx, dy = math.cos(angle), math.sin(angle)
    stops_arr = np.asarray(stops, dtype=np.float64)

    def colour(x, y):
        t = np.clip(0.5 + (np.asarray(x) - 0.5) * dx + (np.asarray(y) - 0.5) * dy, 0, 1)
        pos = t * (len(stops_arr) - 1)
        i = np.minimum(pos.astype(int), len(stops_arr) - 2)
        f = (pos - i)[..., None]
        return stops_arr[i] * (1 - f) + stops_arr[i + 1] * f

    return colour


def _field(rng: random.Random):
    """A smooth random scalar field on [0, 1]²: a few sinusoids, roughly in [-1, 1]."""
    waves = [(rng.uniform(1, 4), rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi))
             for _ in range(3)]

    def value(x, y):
        return sum(np.sin(f * 2 * math.pi * (np.cos(a) * x + np.sin(a) * y) + p)
                   for f, a, p in waves) / 2

    return value


def _rgb(c) -> tuple[int, int, int]:
    return tuple(round(255 * min(1.0, max(0.0, float(v)))) for v in c)


def _background(size: tuple[int, int], colour) -> Image.Image:
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    return Image.fromarray((np.clip(colour(xs, ys), 0, 1) * 255).astype(np.uint8))


def _lowpoly(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    colour = _gradient(rng, _palette(rng, rng.randint(2, 4)))
    image = _background(size, colour)
    draw = ImageDraw.Draw(image)
    step = rng.choice([0.05, 0.08, 0.12, 0.18]) * max(w, h)
    jitter, shade = rng.uniform(0.15, 0.45), rng.uniform(0.02, 0.09)
    cols, rows = int(w / step) + 2, int(h / step) + 2
    pts = [[((c + rng.uniform(-jitter, jitter) * (0 < c < cols)) * w / (cols - 1),
             (r + rng.uniform(-jitter, jitter) * (0 < r < rows)) * h / (rows - 1))
            for c in range(cols)] for r in range(rows)]
    for r in range(rows - 1):
        for c in range(cols - 1):
            a, b, d, e = pts[r][c], pts[r][c + 1], pts[r + 1][c], pts[r + 1][c + 1]
            for tri in ((a, b, e), (a, e, d)) if rng.random() < 0.5 else ((a, b, d), (b, e, d)):
                cx, cy = sum(p[0] for p in tri) / 3 / w, sum(p[1] for p in tri) / 3 / h
                fill = colour(cx, cy) + rng.gauss(0, shade)
                draw.polygon(tri, fill=_rgb(fill))
    return _shapes(image, rng)


def _shapes(image: Image.Image, rng: random.Random) -> Image.Image:
    """Up to three large translucent bands or triangles over ``image``, in new colours."""
    w, h = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for colour in _palette(rng, rng.choice([0, 0, 1, 2, 3])):
        alpha = int(rng.uniform(0.5, 1.0) * 255)
        if rng.random() < 0.5:  # a band across the image
            x, width, slant = rng.uniform(0, w), rng.uniform(0.05, 0.2) * w, rng.uniform(-1, 1) * h
            draw.polygon([(x, 0), (x + width, 0), (x + width + slant, h), (x + slant, h)],
                         fill=(*_rgb(colour), alpha))
        else:
            draw.polygon([(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(3)],
                         fill=(*_rgb(colour), alpha))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _hexagons(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    inside = _gradient(rng, _palette(rng, 3))
    outside = _gradient(rng, [tuple(v * rng.uniform(0.15, 0.5) for v in c)
                              for c in _palette(rng, 2)])
    region, threshold = _field(rng), rng.uniform(-0.3, 0.5)
    image = _background(size, _gradient(rng, [tuple(v * 0.6 for v in c)
                                              for c in _palette(rng, 2)]))
    draw = ImageDraw.Draw(image)
    radius = rng.choice([0.025, 0.04, 0.06]) * max(w, h)
    gap = rng.uniform(0.0, 0.12) * radius
    dx, dy = math.sqrt(3) * radius, 1.5 * radius
    for r in range(int(h / dy) + 2):
        for c in range(int(w / dx) + 2):
            x, y = c * dx + (r % 2) * dx / 2, r * dy
            if rng.random() < 0.08:
                continue
            u, v = x / w, y / h
            fill = inside(u, v) if region(u, v) > threshold else outside(u, v)
            corners = [(x + (radius - gap) * math.cos(math.pi / 6 + k * math.pi / 3),
                        y + (radius - gap) * math.sin(math.pi / 6 + k * math.pi / 3))
                       for k in range(6)]
            draw.polygon(corners, fill=_rgb(fill + rng.gauss(0, 0.03)))
    return image


def _layers(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    sky = _palette(rng, 2)
    haze = sky[1]
    image = _background(size, _gradient(rng, sky))
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.7:
        sx, sy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.4) * h
        sr = rng.uniform(0.03, 0.1) * w
        draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr],
                     fill=_rgb([min(1.0, v + 0.35) for v in haze]))
    ground = _palette(rng, 1)[0]
    layers = rng.randint(3, 6)
    jagged = rng.random() < 0.5
    for k in range(layers):
        depth = (k + 1) / layers  # 1: nearest
        base = h * (0.35 + 0.55 * depth)
        amp = h * rng.uniform(0.05, 0.2)
        if jagged:
            xs = sorted([0.0, float(w)] + [rng.uniform(0, w) for _ in range(rng.randint(3, 9))])
            ridge = [(x, base - amp * rng.uniform(0, 1)) for x in xs]
        else:
            f, p = rng.uniform(1, 4), rng.uniform(0, 2 * math.pi)
            ridge = [(x, base - amp * (0.5 + 0.5 * math.sin(f * 2 * math.pi * x / w + p)))
                     for x in np.linspace(0, w, 64)]
        near = [g * depth + c * (1 - depth) for g, c in zip(ground, haze, strict=True)]
        far = [min(1.0, v * rng.uniform(0.6, 1.3)) for v in near]
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).polygon([*ridge, (w, h), (0, h)], fill=255)
        image.paste(_background(size, _gradient(rng, [tuple(near), tuple(far)])), mask=mask)
    return image


def _bokeh(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    dark = [tuple(v * rng.uniform(0.05, 0.35) for v in c) for c in _palette(rng, 2)]
    image = _background(size, _gradient(rng, dark)).convert("RGBA")
    lights = _palette(rng, 3)
    curve = _field(rng)
    for blur in (rng.uniform(2, 6), 0):
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for _ in range(rng.randint(60, 220)):
            t = rng.random()
            x = t * w
            y = (0.5 + 0.3 * float(curve(t, 0.5)) + rng.gauss(0, 0.08)) * h
            r = math.exp(rng.uniform(math.log(0.003), math.log(0.04))) * w
            alpha = int(rng.uniform(0.15, 0.75) * 255)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(*_rgb(rng.choice(lights)), alpha))
        if blur:
            layer = layer.filter(ImageFilter.GaussianBlur(blur))
        image = Image.alpha_composite(image, layer)
    return image.convert("RGB")


_DRAW = {"lowpoly": _lowpoly, "hexagons": _hexagons, "layers": _layers, "bokeh": _bokeh}


def render_illustration(seed: int, size: tuple[int, int] = (512, 768),
                        kind: str | None = None) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 illustration of ``size`` (height, width) from ``seed``."""
    rng = random.Random(seed)
    kind = kind or KINDS[seed % len(KINDS)]
    if kind not in _DRAW:
        raise ValueError(f"unknown illustration kind {kind!r}; expected one of {KINDS}")
    h, w = size
    image = _DRAW[kind]((w * SUPERSAMPLE, h * SUPERSAMPLE), rng)
    pixels = np.asarray(image.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64)
    if rng.random() < 0.5:  # exported wallpapers carry a faint grain
        grain = np.random.default_rng(seed).normal(0, rng.uniform(0.5, 2.0), pixels.shape[:2])
        pixels = pixels + grain[..., None]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def write_illustrations(out: str | os.PathLike, count: int, seed: int = 0,
                        size: tuple[int, int] = (512, 768)) -> list[Path]:
    """Write ``count`` illustrations as PNG files ``illustration-<seed>.png`` into ``out``."""
    return write_rendered(out, "illustration", count, seed, lambda i: render_illustration(i, size))
