"""A deterministic generator of screen content: the domain a photo codec handles worst.

Each image is one of four kinds, drawn from a seed alone (same seed, same pixels):

* **code**: an editor with a gutter of line numbers, indented lines of syntax-coloured
  tokens, in a dark or a light theme;
* **prose**: a document page, a heading and justified-looking paragraphs of words, with a
  sidebar;
* **chart**: a bar or line chart with axes, grid lines, tick labels and a legend;
* **ui**: an application window, title bar, toolbar buttons, a list with a selection, a
  form with fields and a checkbox, flat colours and sharp edges.

Text uses Pillow's bundled scalable font at several sizes (no system fonts needed, so the
output is the same on every machine with the same Pillow), rendered with and without
anti-aliasing; words are random strings of letters with a word-length distribution like
English, so there is no language model to learn, only glyph shapes.

A screen's text comes in one of three renderings (``TEXT``): ``aliased`` (its theme's few
colours), ``grayscale`` anti-aliasing (blends along the line between ink and background)
and ``subpixel``, the rendering of ClearType and FreeType's LCD mode: the glyph's coverage
is sampled at three times the horizontal resolution, low-passed with FreeType's default
five-tap LCD filter ``[8, 77, 86, 77, 8] / 256``, and each pixel's red, green and blue take
the coverage of its own third, so that stems get coloured fringes, blends off the line
between the two colours. A seed draws aliased or grayscale text (:func:`antialiased`);
``render_screen(seed, text="subpixel")`` draws the same layout with subpixel text.
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slimcodec.domains.folder import write_rendered

__all__ = ["KINDS", "TEXT", "antialiased", "render_screen", "write_screens"]

KINDS = ("code", "prose", "chart", "ui")
TEXT = ("aliased", "grayscale", "subpixel")
LCD_FILTER = np.array([8, 77, 86, 77, 8], np.float32) / 256  # FreeType's FT_LCD_FILTER_DEFAULT
THEMES = {
    "dark": {"bg": (30, 30, 36), "fg": (220, 220, 220), "gutter": (45, 45, 52),
             "muted": (120, 120, 130), "accents": [(198, 120, 221), (97, 175, 239),
                                                   (152, 195, 121), (229, 192, 123)]},
    "light": {"bg": (250, 250, 250), "fg": (36, 41, 46), "gutter": (238, 238, 240),
              "muted": (140, 140, 150), "accents": [(215, 58, 73), (0, 92, 197),
                                                    (34, 134, 58), (227, 98, 9)]},
}


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


class _SubpixelText:
    """An ``ImageDraw`` whose ``text`` is rendered with subpixel (LCD) anti-aliasing; every
    other call goes to the wrapped draw, so a screen's layout and colours stay those of its
    seed."""

    def __init__(self, image: Image.Image) -> None:
        self._image, self._draw = image, ImageDraw.Draw(image)

    def __getattr__(self, name: str):
        return getattr(self._draw, name)

    def text(self, xy: tuple[float, float], text: str, font: ImageFont.FreeTypeFont,
             fill: tuple[int, int, int]) -> None:
        # The glyphs drawn at three times the size, then averaged down to pixels vertically
        # and to subpixels (thirds of a pixel) horizontally: the coverage of each subpixel,
        # from a pixel left of the text (room for the filter's spread). Hinting makes the
        # small font's advances narrower than a third of the big one's, so the mask is
        # squeezed to the small font's length: words keep their places.
        big = ImageFont.load_default(size=3 * font.size)
        left, top = int(np.floor(xy[0])) - 1, int(xy[1])
        right, bottom = big.getbbox(text)[2:]
        squeeze = font.getlength(text) / max(big.getlength(text) / 3, 1e-6)
        w, h = int(np.ceil((right * squeeze + 6) / 3)) + 2, -(-bottom // 3) + 1
        mask = Image.new("L", (int(np.ceil(3 * w / squeeze)), 3 * h))
        ImageDraw.Draw(mask).text((round(3 * (xy[0] - left) / squeeze), 0), text, font=big,
                                  fill=255)
        mask = mask.resize((3 * w, 3 * h), Image.BOX, box=(0, 0, 3 * w / squeeze, 3 * h))
        cover = np.asarray(mask, np.float32).reshape(h, 3, 3 * w).mean(axis=1) / 255
        cover = np.apply_along_axis(np.convolve, 1, cover, LCD_FILTER, mode="same")
        cover = cover.reshape(h, w, 3)  # each pixel's red, green, blue thirds
        # the part inside the image, blended per channel over what is drawn there
        width, height = self._image.size
        cx, cy = max(0, -left), max(0, -top)
        cover = cover[cy:max(cy, height - top), cx:max(cx, width - left)]
        if cover.size == 0:
            return
        box = (left + cx, top + cy, left + cx + cover.shape[1], top + cy + cover.shape[0])
        under = np.asarray(self._image.crop(box), np.float32)
        out = under + cover * (np.asarray(fill, np.float32) - under)
        self._image.paste(Image.fromarray(np.rint(out).astype(np.uint8)), box[:2])


def _word(rng: random.Random) -> str:
    n = min(12, max(1, int(rng.expovariate(1 / 4.5)) + 1))
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def _code(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    theme = THEMES[rng.choice(list(THEMES))]
    w, h = size
    draw.rectangle([0, 0, w, h], fill=theme["bg"])
    fsize = rng.choice([11, 12, 13, 14, 16])
    font, line = _font(fsize), int(fsize * 1.45)
    gutter = 4 * fsize
    draw.rectangle([0, 0, gutter, h], fill=theme["gutter"])
    indent = 0
    for i, y in enumerate(range(6, h - line, line)):
        draw.text((6, y), f"{i + 1:>3}", font=font, fill=theme["muted"])
        indent = max(0, min(6, indent + rng.choice([-1, 0, 0, 0, 1])))
        x = gutter + 8 + indent * 2 * fsize
        for _ in range(rng.randint(0, 7)):
            token = _word(rng) + rng.choice(["", "", "(", ")", ":", ",", " =", "."])
            color = rng.choice(theme["accents"] + [theme["fg"]] * 3)
            draw.text((x, y), token, font=font, fill=color)
            x += int(font.getlength(token + " "))
            if x > w - 20:
                break


def _prose(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    w, h = size
    paper = rng.choice([(255, 255, 255), (248, 246, 240), (240, 244, 248)])
    ink = rng.choice([(20, 20, 20), (40, 40, 60), (60, 30, 30)])
    draw.rectangle([0, 0, w, h], fill=paper)
    side = rng.choice([0, w // 4])
    if side:
        draw.rectangle([0, 0, side, h], fill=tuple(c - 18 for c in paper))
        for y in range(20, h - 20, 28):
            draw.text((14, y), _word(rng).title(), font=_font(13), fill=ink)
    x0, y = side + 24, 20
    draw.text((x0, y), " ".join(_word(rng) for _ in range(4)).title(), font=_font(26),
              fill=ink)
    y += 48
    fsize = rng.choice([12, 13, 14, 15, 18])
    font, line = _font(fsize), int(fsize * 1.5)
    while y < h - line:
        x = x0
        for _ in range(rng.randint(8, 40)):
            word = _word(rng)
            if x + font.getlength(word) > w - 24:
                x, y = x0, y + line
                if y >= h - line:
                    break
            draw.text((x, y), word, font=font, fill=ink)
            x += int(font.getlength(word + " "))
        y += line + (line if rng.random() < 0.3 else 0)


def _chart(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    w, h = size
    draw.rectangle([0, 0, w, h], fill=(255, 255, 255))
    left, top = min(60, w // 5), min(40, h // 6)
    right, bottom = w - min(30, w // 10), h - min(50, h // 6)
    font = _font(12)
    draw.text((left, 12), " ".join(_word(rng) for _ in range(3)).title(), font=_font(18),
              fill=(30, 30, 30))
    for i in range(6):
        y = bottom - i * (bottom - top) // 5
        draw.line([left, y, right, y], fill=(225, 225, 225))
        draw.text((10, y - 7), f"{i * rng.choice([10, 20, 25, 50])}", font=font,
                  fill=(90, 90, 90))
    draw.line([left, top, left, bottom], fill=(60, 60, 60), width=2)
    draw.line([left, bottom, right, bottom], fill=(60, 60, 60), width=2)
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    series, n = rng.randint(1, 3), rng.randint(5, 14)
    values = [[rng.uniform(0.1, 1.0) for _ in range(n)] for _ in range(series)]
    step = (right - left) / n
    for s, vals in enumerate(values):
        if rng.random() < 0.5:
            bar = step / (series + 1)
            for i, v in enumerate(vals):
                x = left + i * step + s * bar + bar / 2
                draw.rectangle([x, bottom - v * (bottom - top), x + max(bar - 2, 1), bottom],
                               fill=colors[s])
        else:
            pts = [(left + (i + 0.5) * step, bottom - v * (bottom - top))
                   for i, v in enumerate(vals)]
            draw.line(pts, fill=colors[s], width=rng.choice([2, 3]))
            for x, y in pts:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colors[s])
        draw.rectangle([right - 110, top + 4 + 18 * s, right - 100, top + 14 + 18 * s],
                       fill=colors[s])
        draw.text((right - 94, top + 2 + 18 * s), _word(rng), font=font, fill=(40, 40, 40))
    for i in range(n):
        draw.text((left + i * step + step / 3, bottom + 8), _word(rng)[:3], font=font,
                  fill=(90, 90, 90))


def _ui(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random) -> None:
    w, h = size
    theme = THEMES[rng.choice(list(THEMES))]
    accent = rng.choice(theme["accents"])
    draw.rectangle([0, 0, w, h], fill=theme["bg"])
    draw.rectangle([0, 0, w, 32], fill=theme["gutter"])
    for i, c in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        draw.ellipse([10 + 20 * i, 10, 22 + 20 * i, 22], fill=c)
    draw.text((w // 2 - 40, 8), _word(rng).title(), font=_font(14), fill=theme["fg"])
    x = 10
    for _ in range(rng.randint(3, 7)):  # toolbar
        label = _word(rng).title()
        width = int(_font(13).getlength(label)) + 20
        draw.rounded_rectangle([x, 42, x + width, 68], radius=4, outline=theme["muted"],
                               fill=theme["gutter"])
        draw.text((x + 10, 47), label, font=_font(13), fill=theme["fg"])
        x += width + 8
    panel = w // 3
    draw.line([panel, 78, panel, h], fill=theme["muted"])
    selected = rng.randint(0, 8)
    for i, y in enumerate(range(84, h - 24, 26)):  # list
        if i == selected:
            draw.rectangle([0, y - 3, panel - 1, y + 21], fill=accent)
        draw.rectangle([10, y + 2, 24, y + 16], fill=rng.choice(theme["accents"]))
        draw.text((32, y + 1), _word(rng) + " " + _word(rng), font=_font(13),
                  fill=(255, 255, 255) if i == selected else theme["fg"])
    y = 90
    font = _font(rng.choice([12, 13, 14]))
    while y < h - 60:  # form
        draw.text((panel + 20, y), _word(rng).title() + ":", font=font, fill=theme["muted"])
        draw.rectangle([panel + 140, y - 4, w - 30, y + 20], outline=theme["muted"],
                       fill=theme["bg"])
        draw.text((panel + 146, y), " ".join(_word(rng) for _ in range(rng.randint(1, 4))),
                  font=font, fill=theme["fg"])
        y += 40
    draw.rectangle([panel + 20, h - 48, panel + 34, h - 34], outline=theme["fg"])
    if rng.random() < 0.5:
        draw.line([panel + 22, h - 41, panel + 27, h - 36, panel + 33, h - 47], fill=accent,
                  width=2)
    draw.rounded_rectangle([w - 130, h - 52, w - 30, h - 22], radius=6, fill=accent)
    draw.text((w - 110, h - 45), "OK", font=_font(14), fill=(255, 255, 255))


_DRAW = {"code": _code, "prose": _prose, "chart": _chart, "ui": _ui}


def antialiased(seed: int) -> bool:
    """Whether :func:`render_screen` draws the text of the screen of ``seed`` anti-aliased
    (hundreds of colours) rather than aliased (its theme's few): its first draw."""
    return random.Random(seed).choice(["L", "1"]) == "L"


def render_screen(seed: int, size: tuple[int, int] = (512, 768), kind: str | None = None,
                  text: str | None = None) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 screen image of ``size`` (height, width) from ``seed``; its
    text rendered as ``text`` (one of :data:`TEXT`), by default as the seed draws it."""
    rng = random.Random(seed)
    kind = kind or KINDS[seed % len(KINDS)]
    if kind not in _DRAW:
        raise ValueError(f"unknown screen kind {kind!r}; expected one of {KINDS}")
    if text is not None and text not in TEXT:
        raise ValueError(f"unknown text rendering {text!r}; expected one of {TEXT}")
    h, w = size
    image = Image.new("RGB", (w, h))
    # anti-aliased or aliased text (antialiased()): drawn whatever ``text``, so that the
    # layout drawn next from ``rng`` is the seed's under every rendering
    mode = rng.choice(["L", "1"])
    if text == "subpixel":
        draw = _SubpixelText(image)
    else:
        draw = ImageDraw.Draw(image)
        draw.fontmode = {"aliased": "1", "grayscale": "L"}.get(text, mode)
    _DRAW[kind](draw, (w, h), rng)
    return np.asarray(image)


def write_screens(out: str | os.PathLike, count: int, seed: int = 0,
                  size: tuple[int, int] = (512, 768), text: str | None = None) -> list[Path]:
    """Write ``count`` screens as PNG files ``screen-<seed>.png`` into ``out``; their text
    rendered as ``text`` (see :func:`render_screen`; then named ``screen-<text>-<seed>``)."""
    return write_rendered(out, "screen" if text is None else f"screen-{text}", count, seed,
                          lambda i: render_screen(i, size, text=text))
