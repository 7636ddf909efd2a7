"""The palette (flag bit 3): its block in the container, the decoder's snap, and the
encoder's choice of it (``slimcodec.palette``)."""

import numpy as np
import pytest
from helpers import few_colours, natural_like

from slimcodec.api import codec_for
from slimcodec.bitstream import Bitstream, Header, pack, unpack
from slimcodec.bitstream.container import PALETTE_FULL_REACH
from slimcodec.bitstream.rate import rd_loss
from slimcodec.errors import CorruptBitstreamError, TruncatedBitstreamError
from slimcodec.palette import snap
from slimcodec.utils.metrics import psnr

HEADER = Header(b"\x01" * 8, 16, (20, 30))


def test_a_palette_block_round_trips_and_a_bad_one_is_refused():
    palette = ((0, 0, 0), (255, 255, 255), (10, 200, 30))
    header = Header(b"\x01" * 8, 16, (20, 30), coded_size=(40, 60), resampling=1,
                    palette=palette, palette_reach=768)
    data = pack(Bitstream(header, (b"ab", b"c")))
    assert unpack(data).header == header and unpack(data).strings == (b"ab", b"c")
    plain = pack(Bitstream(HEADER, (b"ab",)))
    assert len(pack(Bitstream(Header(b"\x01" * 8, 16, (20, 30), palette=palette,
                                     palette_reach=1), (b"ab",)))) == len(plain) + 5 + 9
    bad = [dict(palette=palette, palette_reach=0),
           dict(palette=palette, palette_reach=PALETTE_FULL_REACH + 1),
           dict(palette_reach=768),  # a reach without a palette
           dict(palette=((1, 2, 3), (1, 2, 3)), palette_reach=768),
           dict(palette=((1, 2, 256),), palette_reach=768),
           dict(palette=((1, 2),), palette_reach=768),
           dict(palette=tuple((i // 256, i % 256, 0) for i in range(257)), palette_reach=1)]
    for fields in bad:
        with pytest.raises(ValueError):
            Header(b"\x01" * 8, 16, (20, 30), **fields)
    # a writer that forges one past the header's checks: the reader refuses it, typed
    body = bytearray(data[:-4])
    block = 32 + 9  # after the coded-size block
    body[block + 1:block + 5] = (0).to_bytes(4, "little")  # reach 0
    import zlib
    forged = bytes(body) + zlib.crc32(body).to_bytes(4, "little")
    with pytest.raises(CorruptBitstreamError, match="palette reach"):
        unpack(forged)
    with pytest.raises(TruncatedBitstreamError):
        unpack(data[:block + 3])


def _reference(rgb, colours, reach):
    """The snap as docs/bitstream.md says it, in int64, pixel by pixel."""
    out = rgb.copy()
    pal = np.asarray(colours, np.int64)
    for y in range(rgb.shape[0]):
        for x in range(rgb.shape[1]):
            d = ((pal - rgb[y, x].astype(np.int64)) ** 2).sum(1)
            if d.min() <= reach:
                out[y, x] = pal[int(np.argmin(d))]  # the first of the nearest
    return out


def test_the_palette_is_the_most_frequent_colours_each_separation_from_those_before():
    """Anti-aliased blends of two colours, a level apart: the palette keeps the most
    frequent, then only blends at least ``separation`` levels (in some channel) from every
    colour kept before them."""
    from slimcodec.palette import frequent_colours

    rng = np.random.default_rng(0)
    levels = np.concatenate([[255] * 4000, [40] * 2000, rng.integers(41, 255, 3000)])
    rgb = np.repeat(levels.astype(np.uint8)[:, None], 3, 1).reshape(100, 90, 3)
    kept = frequent_colours(rgb, 16, separation=8)[:, 0].astype(int)
    assert list(kept[:2]) == [255, 40]
    assert 8 < len(kept) <= 16
    gaps = np.abs(kept[:, None] - kept[None])
    assert gaps[~np.eye(len(kept), dtype=bool)].min() >= 8
    values, counts = np.unique(levels, return_counts=True)
    by_count = values[np.lexsort((values, -counts))]
    for later in by_count[:list(by_count).index(kept[-1])]:  # each skipped: near one kept
        assert later in kept or np.abs(kept - later).min() < 8
    assert len(frequent_colours(rgb, 16)) == 16  # without: the 16 most frequent


def test_a_common_colour_is_kept_near_a_more_frequent_one_where_both_stay_stable():
    """Zebra rows #FAFAFA on #FFFFFF, 5 levels apart: a share of ``common`` or more keeps
    a colour nearer than ``separation`` where a decoder two levels off still reads each
    as its own nearest (Σ|δ|(|δ| − 4) > 0); a rarer one (a blend), or a common one too
    near (2 levels: unstable), is still skipped."""
    from slimcodec.palette import COMMON, frequent_colours

    counts = {255: 5000, 250: 3000, 253: 600, 40: 1200, 247: 30, 100: 100, 140: 70}
    levels = np.concatenate([[v] * n for v, n in counts.items()])
    rgb = np.repeat(levels.astype(np.uint8)[:, None], 3, 1).reshape(-1, 100, 3)
    assert 30 / len(levels) < COMMON <= 600 / len(levels)
    kept = frequent_colours(rgb, 16, separation=8, common=COMMON)[:, 0].tolist()
    assert kept == [255, 250, 40, 100, 140]  # not 253 (unstable), nor 247 (rare, near 250)
    assert frequent_colours(rgb, 16, separation=8)[:, 0].tolist() == [255, 40, 100, 140, 247]


def test_zebra_rows_five_levels_apart_decode_as_their_own_colour(codec):
    """End to end: a table of aliased text on zebra rows #FAFAFA and #FFFFFF. Without the
    common-colour rule the rarer of the two is left out of the palette and every one of
    its pixels decodes as the other, 5 levels off, at every rate; with it, at the top of
    the range, both decode exactly."""
    import random

    from PIL import Image, ImageDraw

    from slimcodec.domains.screen import _font, _word

    rng = random.Random(0)
    image = Image.new("RGB", (192, 132), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    for row, y in enumerate(range(0, 132, 22)):
        if row % 2:
            draw.rectangle([0, y, 192, y + 21], fill=(250, 250, 250))
        for x in (6, 70, 134):
            draw.text((x, y + 4), _word(rng)[:7], font=_font(13), fill=(36, 41, 46))
    rgb = np.asarray(image).copy()
    width = max(codec.widths)
    data = codec.encode_rgb(rgb, width, lmbda=codec.lambda_range(width)[1], scale=1)
    assert {(250, 250, 250), (255, 255, 255)} <= set(unpack(data).header.palette)
    decoded = codec.decode_rgb(data)[0]
    for grey in (250, 255):
        assert (rgb == grey).all(-1).mean() > 0.3
        assert (decoded[(rgb == grey).all(-1)] == grey).all()


def test_snap_replaces_each_pixel_within_reach_by_its_first_nearest_colour():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    rgb[0, 0] = (10, 10, 10)  # exactly at the reach of (0, 10, 10) and (20, 10, 10): a tie
    rgb[0, 1] = (11, 10, 10)  # just beyond (0, 10, 10), within (20, 10, 10)
    colours = [tuple(int(v) for v in c) for c in rng.integers(0, 256, (7, 3))]
    colours = [(0, 10, 10), (20, 10, 10), *colours]
    for reach in (100, 3000, PALETTE_FULL_REACH):
        header = Header(b"\x01" * 8, 16, (23, 31), palette=tuple(colours), palette_reach=reach)
        assert (snap(rgb, header) == _reference(rgb, colours, reach)).all()
    header = Header(b"\x01" * 8, 16, (23, 31), palette=tuple(colours), palette_reach=100)
    assert tuple(snap(rgb, header)[0, 0]) == (0, 10, 10)
    assert tuple(snap(rgb, header)[0, 1]) == (20, 10, 10)
    assert snap(rgb, HEADER) is rgb  # no palette: the decoder's output itself


@pytest.fixture(scope="module")
def codec():
    """The default model (the tests' small models decode these images too poorly for
    their colours to tell)."""
    return codec_for("slimcae-hpc")


def test_the_encoder_sends_a_palette_where_it_lowers_the_rd_loss(codec):
    rgb = few_colours(64, 96, seed=1)
    width, lmbda = codec.widths[0], 0.05
    report = {}
    data = codec.encode_rgb(rgb, width, lmbda=lmbda, report=report)
    plain = codec.encode_rgb(rgb, width, lmbda=lmbda, palette=False)
    header = unpack(data).header
    assert header.palette and report["palette"] == len(header.palette)
    assert unpack(data).strings == unpack(plain).strings  # the latent is the same
    # the image's own colours, the most frequent first
    keys, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    assert header.palette[0] == tuple(int(v) for v in keys[counts.argmax()])
    assert set(header.palette) <= {tuple(int(v) for v in k) for k in keys}
    decoded = codec.decode_rgb(data)[0]
    unsnapped = codec.decode_rgb(plain)[0]
    assert (decoded == snap(unsnapped, header)).all()
    assert rd_loss(rgb, decoded, len(data), lmbda) < rd_loss(rgb, unsnapped, len(plain), lmbda)
    assert psnr(rgb, decoded) > psnr(rgb, unsnapped)


def test_a_photo_is_coded_as_without_a_palette_and_not_decoded_for_it(codec, monkeypatch):
    rgb = natural_like(64, 96, seed=3)
    width = codec.widths[0]
    plain = codec.encode_rgb(rgb, width, lmbda=0.05, palette=False)
    decodes = []
    real = codec.decode_rgb
    monkeypatch.setattr(codec, "decode_rgb", lambda data: decodes.append(1) or real(data))
    report = {}
    assert codec.encode_rgb(rgb, width, lmbda=0.05, report=report) == plain
    assert report["palette"] == 0 and not decodes  # its colours are too many to try


def test_no_palette_where_every_one_tried_costs(codec, monkeypatch):
    """A flat panel over a photo: enough of the image in few colours to try a palette, but
    snapping every pixel (the only reach left to try) ruins the photo: the file is sent
    without one."""
    rgb = natural_like(64, 96, seed=4)
    rgb[:40] = (250, 250, 245)
    monkeypatch.setattr("slimcodec.palette.REACHES", (PALETTE_FULL_REACH,))
    monkeypatch.setattr("slimcodec.residual.SPREAD", ())  # (the untrained photo's would pay)
    report = {}
    data = codec.encode_rgb(rgb, codec.widths[0], lmbda=0.05, report=report)
    assert data == codec.encode_rgb(rgb, codec.widths[0], lmbda=0.05, palette=False)
    assert report["palette"] == 0
    monkeypatch.setattr("slimcodec.palette.REACHES", (3 * 8**2,))  # the panel alone
    assert unpack(codec.encode_rgb(rgb, codec.widths[0], lmbda=0.05)).header.palette


def test_auto_weighs_each_scale_as_the_file_is_sent_with_its_palette(codec):
    """``scale="auto"`` with the palette weighs each candidate on the probe with the
    palette of its lowest loss, as the file is then sent: every loss at most the one
    without, and on this screen, at the top of the range, a smaller scale than ×3 ``box``
    is enough."""
    from slimcodec.domains.screen import render_screen
    from slimcodec.scaling import AUTO

    rgb = render_screen(3, (272, 304))
    width = max(codec.widths)
    lmbda = codec.lambda_range(width)[1]
    sent, plain = {}, {}
    data = codec.encode_rgb(rgb, width, lmbda=lmbda, scale=AUTO, report=sent)
    codec.encode_rgb(rgb, width, lmbda=lmbda, scale=AUTO, report=plain, palette=False)
    assert plain["scale"] == 3 and sent["scale"] < 3
    tried = set(sent["scale_losses"]) & set(plain["scale_losses"])
    assert all(sent["scale_losses"][k] < plain["scale_losses"][k] for k in tried)
    assert unpack(data).header.palette
