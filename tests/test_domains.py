"""The domain generators (issue 13's domain data): screen content and illustrations."""

import numpy as np
import pytest
from PIL import Image

from slimcodec.cli import main
from slimcodec.domains import illustration, screen
from slimcodec.domains.screen import KINDS, antialiased, render_screen, write_screens


def test_screens_are_deterministic_and_varied(tmp_path):
    a, b = render_screen(7, (128, 192)), render_screen(7, (128, 192))
    assert a.shape == (128, 192, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(render_screen(8, (128, 192)), a)
    paths = write_screens(tmp_path, 4, seed=100, size=(64, 96))
    assert [p.name for p in paths] == [f"screen-{i:05d}.png" for i in range(100, 104)]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_screen_like(kind):
    """Flat colours and sharp edges: few distinct colours, most pixels in flat runs."""
    image = render_screen(3, (256, 384), kind)
    colors = np.unique(image.reshape(-1, 3), axis=0)
    assert 2 < len(colors) < 5000
    flat = (np.abs(np.diff(image.astype(int), axis=1)).sum(-1) == 0).mean()
    assert flat > 0.6
    with pytest.raises(ValueError, match="unknown screen kind"):
        render_screen(0, kind="photo")


def test_antialiased_says_which_screens_draw_their_text_in_many_colours():
    """What benchmarks/screen_text.py splits the screens by: aliased text is drawn in a
    theme's few colours, anti-aliased text blends them into many."""
    seeds = range(1000, 1012)
    colours = {s: len(np.unique(render_screen(s, (128, 192)).reshape(-1, 3), axis=0))
               for s in seeds}
    assert {antialiased(s) for s in seeds} == {True, False}
    assert max(colours[s] for s in seeds if not antialiased(s)) < 40
    assert min(colours[s] for s in seeds if antialiased(s)) > 60


def test_illustrations_are_deterministic_and_varied(tmp_path):
    a = illustration.render_illustration(5, (96, 144))
    assert a.shape == (96, 144, 3) and a.dtype == np.uint8
    assert np.array_equal(a, illustration.render_illustration(5, (96, 144)))
    assert not np.array_equal(illustration.render_illustration(9, (96, 144)), a)  # same kind
    paths = illustration.write_illustrations(tmp_path, 3, seed=40, size=(48, 64))
    assert [p.name for p in paths] == [f"illustration-{i:05d}.png" for i in range(40, 43)]


@pytest.mark.parametrize("kind", illustration.KINDS)
def test_every_illustration_kind_is_smooth_with_edges(kind):
    """Vector-style art: mostly smooth (small steps between neighbours, unlike noise), yet
    with edges (some large steps, unlike a plain gradient), and not one flat colour."""
    steps = [np.abs(np.diff(illustration.render_illustration(seed, (128, 192), kind)
                            .astype(int), axis=1)).max(-1) for seed in range(3)]
    steps = np.concatenate([s.ravel() for s in steps])
    assert (steps <= 4).mean() > 0.5  # noise: 0; small hexagons: 0.55
    assert (steps >= 24).mean() > 0.0005
    assert steps.std() > 1
    with pytest.raises(ValueError, match="unknown illustration kind"):
        illustration.render_illustration(0, kind="photo")


@pytest.mark.parametrize("domain,prefix", [("screen", "screen"), ("illustration", "illustration"),
                                           ("screen-subpixel", "screen-subpixel")])
def test_generate_writes_a_folder_to_adapt_on(tmp_path, capsys, domain, prefix):
    out = tmp_path / "data"
    assert main(["generate", domain, "-o", str(out), "--count", "2", "--seed", "3",
                 "--size", "80x48"]) == 0
    assert "2 " + domain in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{prefix}-00003.png", f"{prefix}-00004.png"]
    assert Image.open(out / names[0]).size == (80, 48)
    if domain == "screen-subpixel":  # the screens' layouts with subpixel text
        assert np.array_equal(np.asarray(Image.open(out / names[0])),
                              render_screen(3, (48, 80), text="subpixel"))


@pytest.mark.parametrize("argv,words", [(["--size", "80by48"], "expected WIDTHxHEIGHT"),
                                        (["--size", "0x48"], "must be positive"),
                                        (["--count", "0"], "at least 1"),
                                        (["--size", "4000x4000"], "at most 4194304 pixels")])
def test_generate_refuses_bad_options_in_one_line(tmp_path, capsys, argv, words):
    assert main(["generate", "screen", "-o", str(tmp_path / "d"), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_subpixel_text_keeps_the_layout_and_gives_stems_coloured_fringes():
    """ClearType-like text (benchmarks/screen_text.py's third group): the seed's layout,
    and blends off the line between ink and paper, in LCD order: a dark stem on white
    takes its left neighbour's blue third (that pixel turns yellow-orange) and its right
    neighbour's red third (turning it cyan-blue)."""
    seed = next(s for s in range(1000, 1100) if s % 4 == 1 and antialiased(s))  # prose
    grey, lcd = (render_screen(seed, (128, 192), text=t) for t in ("grayscale", "subpixel"))
    assert np.array_equal(lcd, render_screen(seed, (128, 192), text="subpixel"))
    assert (grey == lcd).all(-1).mean() > 0.8  # backgrounds and sidebar: the same pixels
    spread = lambda im: (im.max(-1).astype(int) - im.min(-1)).ravel()  # noqa: E731
    flat = grey.reshape(-1, 3)
    ink, paper = flat[flat.sum(-1).argmin()], flat[flat.sum(-1).argmax()]
    assert spread(np.stack([ink, paper])).max() < 8  # this seed: grey ink on grey paper
    assert (spread(grey) > 24).sum() == 0 and (spread(lcd) > 24).sum() > 100

    image = Image.new("RGB", (40, 40), (255, 255, 255))
    screen._SubpixelText(image).text((15.0, 5.0), "l", font=screen._font(24), fill=(0, 0, 0))
    rgb = np.asarray(image).astype(int)
    stem = rgb[15:25].sum(-1).min(0).argmin()  # darkest column: the stem
    left, right = rgb[15:25, stem - 1].mean(0), rgb[15:25, stem + 1].mean(0)
    assert left[0] > left[2] + 20 and right[2] > right[0] + 20
    with pytest.raises(ValueError, match="unknown text rendering"):
        render_screen(0, text="cleartype")
    assert set(screen.TEXT) == {"aliased", "grayscale", "subpixel"}
