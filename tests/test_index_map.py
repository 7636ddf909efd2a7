"""The palette's index map (flag bit 4): its block in the container, the decoder's paint,
and the encoder's choice of the exact blocks (``slimcodec.index_map``)."""

import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from helpers import few_colours, natural_like

from slimcodec import index_map
from slimcodec.api import codec_for
from slimcodec.bitstream import Bitstream, Header, pack, rans, tables, unpack
from slimcodec.bitstream.rate import rd_loss
from slimcodec.errors import CorruptBitstreamError, RateError
from slimcodec.index_map import BLOCK, contexts, paint, plan
from slimcodec.palette import snap
from slimcodec.rate_control import encode_with_rate
from slimcodec.utils.metrics import MEAN_PSNR_CEILING, mean_psnr, psnr

COLOURS = np.array([[250, 250, 245], [20, 20, 30], [200, 40, 40], [30, 90, 200],
                    [240, 200, 60]], np.uint8)


def _blurred(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """``rgb`` as a decoder might return it: a little noise everywhere, and one pixel in
    twenty pulled most of the way to another of :data:`COLOURS` (its nearest colour is
    then wrong, as on a blurred edge, but not near a tie)."""
    rng = np.random.default_rng(seed)
    out = rgb.astype(np.float64) + rng.normal(0, 2, rgb.shape)
    wrong = rng.random(rgb.shape[:2]) < 0.05
    pulled = COLOURS[rng.integers(0, len(COLOURS), wrong.sum())]
    out[wrong] = 0.1 * out[wrong] + 0.9 * pulled
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_symbol_0_is_sent_only_where_the_nearest_colour_survives_a_level_off():
    """``_stable``: the nearest colour (the first of the nearest), and whether it stays so
    for every pixel value up to a tolerance of levels off in each channel, checked against
    every one (27 for a level, 125 for two)."""
    rng = np.random.default_rng(0)
    colours = np.concatenate([[[0, 10, 10], [20, 10, 10]],
                              rng.integers(0, 256, (4, 3))]).astype(np.uint8)
    pixels = np.concatenate([rng.integers(1, 255, (400, 3)),
                             [[10, 10, 10], [9, 10, 10], [11, 10, 10], [12, 10, 10]]])
    c = colours.astype(np.int64)
    for tolerance in (1, 2):
        nearest, stable = index_map._stable(pixels.astype(np.uint8), colours, tolerance)
        steps = range(-tolerance, tolerance + 1)
        offsets = np.stack(np.meshgrid(steps, steps, steps), -1).reshape(-1, 3)
        for p, i, ok in zip(pixels, nearest, stable, strict=True):
            around = [int(((c - (p + o)) ** 2).sum(1).argmin()) for o in offsets]
            assert around[len(offsets) // 2] == i  # the offset (0, 0, 0): the pixel itself
            assert ok == all(a == i for a in around), p
        assert stable.sum() > 300
    assert list(index_map._stable(pixels[-4:].astype(np.uint8), colours, 1)[1]) == [
        False, True, False, True]
    assert (index_map.nearest_colours(pixels.astype(np.uint8), colours) == nearest).all()


def test_exact_blocks_round_trip_and_a_block_off_the_palette_is_never_exact():
    rgb = few_colours(72, 88, seed=2)  # not multiples of the block: cut blocks at the edges
    rgb[40, 70] = (1, 2, 3)  # one pixel off the palette: its block cannot be exact
    colours = COLOURS
    decoded = _blurred(rgb)
    planned = plan(rgb, decoded, colours, lmbda=1.0)
    assert planned is not None
    data, painted = planned
    assert (paint(decoded, colours, data) == painted).all()
    exact = (painted == rgb).all(-1)
    cols = -(-88 // BLOCK)
    flags = np.unpackbits(np.frombuffer(data, np.uint8, -(-(5 * cols) // 8)))[:5 * cols]
    for b, flag in enumerate(flags):
        y, x = b // cols * BLOCK, b % cols * BLOCK
        block = (slice(y, y + BLOCK), slice(x, x + BLOCK))
        assert not flag or exact[block].all()
        if flag:  # painted there; elsewhere the decoder's pixels, untouched
            continue
        assert (painted[block] == decoded[block]).all()
    assert not flags[(40 // BLOCK) * cols + 70 // BLOCK]
    assert flags.sum() > len(flags) // 2
    assert psnr(rgb, painted) > psnr(rgb, decoded) + 3


def test_a_block_of_blends_is_painted_in_their_nearest_colours_within_near():
    """Anti-aliased text: pixels a few levels off the palette's colours (blends it does not
    hold) are painted in their nearest colours where that pays; a block with a pixel
    farther than :data:`NEAR` from every colour is never painted."""
    rgb = few_colours(64, 96, seed=4)
    rng = np.random.default_rng(4)
    blended = np.clip(rgb.astype(int) + rng.integers(-6, 7, rgb.shape)
                      * (rng.random(rgb.shape[:2]) < 0.3)[..., None], 0, 255).astype(np.uint8)
    far = (20, 70)
    blended[far] = COLOURS[0].astype(int) - 12  # 12 levels off in each channel: beyond NEAR
    decoded = _blurred(blended, seed=4)
    data, painted = plan(blended, decoded, COLOURS, lmbda=1.0)
    exact = _exact_blocks(data, rgb.shape[:2])
    assert exact.mean() > 0.5
    assert not exact[far]
    on_palette = (painted[exact][:, None] == COLOURS[None]).all(-1).any(-1)
    assert on_palette.all()  # painted in palette colours, each the nearest of its original
    assert (painted[exact] == rgb[exact]).all()
    assert (((painted.astype(int) - blended) ** 2).sum(-1)[exact] <= index_map.NEAR).all()
    assert (painted[~exact] == decoded[~exact]).all()
    assert psnr(blended, painted) > psnr(blended, decoded) + 3
    assert (paint(decoded, COLOURS, data) == painted).all()
    # decoded a level off the blends: painting them would add more error than it takes
    close = np.clip(blended.astype(int) + rng.integers(-1, 2, rgb.shape), 0, 255)
    assert plan(blended, close.astype(np.uint8), COLOURS, lmbda=1.0) is None


def test_a_context_is_the_nearest_colour_and_its_count_of_other_neighbours():
    """``contexts`` against docs/bitstream.md, pixel by pixel: nearest × 4 + 0 for no
    neighbour of another nearest colour, 1 for 1-2, 2 for 3-4, 3 for 5-8, the image's
    edge repeated beyond it."""
    nearest = np.random.default_rng(1).integers(0, 3, (9, 13)).astype(np.uint8)
    nearest[:4, :5] = 2  # a flat patch: bucket 0 inside it
    got = contexts(nearest).reshape(nearest.shape)
    h, w = nearest.shape
    for y in range(h):
        for x in range(w):
            others = sum(nearest[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
                         != nearest[y, x] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
            bucket = 0 if others == 0 else 1 if others <= 2 else 2 if others <= 4 else 3
            assert got[y, x] == 4 * nearest[y, x] + bucket, (y, x)
    assert got[1, 1] == 4 * 2


def _exact_blocks(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The pixels of the blocks an index map flags, ``(H, W)`` bool."""
    rows, cols = -(-shape[0] // BLOCK), -(-shape[1] // BLOCK)
    flags = np.unpackbits(np.frombuffer(data, np.uint8, -(-(rows * cols) // 8)))
    grid = flags[:rows * cols].reshape(rows, cols).astype(bool)
    return grid.repeat(BLOCK, 0).repeat(BLOCK, 1)[:shape[0], :shape[1]]


def test_a_decoder_up_to_two_levels_off_paints_the_same_exact_blocks():
    """The contexts and symbol 0 read the decoder's output, which another machine or
    runtime may make a level off: a block with a pixel near a tie between two colours,
    or beside one, is never exact, and every other block decodes exactly, whatever the
    output's every value is within :data:`TOLERANCE` levels."""
    rgb = few_colours(64, 96, seed=5)
    decoded = _blurred(rgb, seed=5)
    rng = np.random.default_rng(5)
    pairs = [(i, j) for i in range(5) for j in range(i)]
    i, j = next((i, j) for i, j in pairs  # a level off reads another nearest colour
                if not index_map._stable(((COLOURS[i].astype(int) + COLOURS[j]) // 2)[None]
                                         .astype(np.uint8), COLOURS, 1)[1][0])
    middle = (COLOURS[i].astype(int) + COLOURS[j]) // 2
    towards = np.sign(COLOURS[i].astype(int) - COLOURS[j])
    # nearly a tie: stable a level off, not two (the tolerance's second level matters)
    near = next(middle + t * towards for t in range(1, 40)
                if index_map._stable((middle + t * towards)[None].astype(np.uint8),
                                     COLOURS, 1)[1][0])
    assert not index_map._stable(near[None].astype(np.uint8), COLOURS, 2)[1][0]
    # at the last row and column of blocks, so that the ring reaches into the next ones
    ties = [(15, 40), (31, 47), (40, 15), (50, 79), (int(rng.integers(0, 64)), 60)]
    for n, (y, x) in enumerate(ties):
        decoded[y, x] = middle if n % 2 else near
    data, _ = plan(rgb, decoded, COLOURS, lmbda=1.0)
    exact = _exact_blocks(data, rgb.shape[:2])
    assert exact.mean() > 0.3
    for y, x in ties:  # the tie's block, and the blocks of the ring around it
        assert not exact[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any()
    t = index_map.TOLERANCE
    offsets = [rng.integers(-t, t + 1, rgb.shape) for _ in range(6)]
    offsets += [np.broadcast_to(sign * t * towards, rgb.shape) for sign in (-1, 1)]
    for off in offsets:
        other = np.clip(decoded.astype(int) + off, 0, 255).astype(np.uint8)
        assert (paint(other, COLOURS, data)[exact] == rgb[exact]).all()


def test_a_block_is_exact_only_where_its_bits_are_worth_its_error():
    rgb = few_colours(64, 96, seed=3)
    decoded = _blurred(rgb)
    assert plan(rgb, decoded, COLOURS, lmbda=1e-6) is None  # bits weigh all
    assert plan(rgb, rgb, COLOURS, lmbda=1.0) is None  # no error to mend
    data, painted = plan(rgb, decoded, COLOURS, lmbda=1.0)
    assert (painted == rgb).all()  # every block pays at a high λ
    low = plan(rgb, decoded, COLOURS, lmbda=3e-4)  # some blocks pay, not all
    assert 0 < (low[1] == rgb).all(-1).mean() < 1
    # the choice is the RD loss's: the map at a high λ lowers it
    assert rd_loss(rgb, painted, 1000 + len(data), 1.0) < rd_loss(rgb, decoded, 1000, 1.0)


def test_a_damaged_index_map_is_refused_typed():
    rgb = few_colours(48, 64, seed=4)
    decoded = _blurred(rgb)
    data, _ = plan(rgb, decoded, COLOURS, lmbda=1.0)
    head = -(-(3 * 4) // 8)
    bad = {
        "block flags alone": data[:1],
        "beyond the last block": bytes([data[0], data[1] | 1]) + data[2:],
        "no exact block": bytes(head) + data[head:],
        "table cut": data[:head + 2],
        "symbols ascending": data[:head] + struct.pack("<BBHBH", 1, 3, 5, 3, 5)
        + data[head + 7:],
        "0 to 5": data[:head] + struct.pack("<BBH", 0, 6, 65535)
        + data[head + 4:],
        "32-bit": data[:-1],
    }
    for what, forged in bad.items():
        with pytest.raises(CorruptBitstreamError, match=what):
            paint(decoded, COLOURS, forged)
    with pytest.raises(CorruptBitstreamError):  # a map for another palette
        paint(decoded, COLOURS[:2], data)
    # a string that codes a rank beyond the table (the coder's escape)
    flat = np.full((16, 16, 3), 250, np.uint8)  # one block
    ranks = np.zeros((1, 1, 256), np.int32)
    table, one = tables._cdfs([np.array([65535])]), np.zeros_like(ranks)  # one context
    whole = b"\x80" + struct.pack("<BBH", 0, 3, 65535)  # one symbol: colour 2, named
    assert (paint(flat, COLOURS, whole + rans.encode(ranks, table, one)) == COLOURS[2]).all()
    ranks[0, 0, 7] = 1
    with pytest.raises(CorruptBitstreamError, match="outside its context's table"):
        paint(flat, COLOURS, whole + rans.encode(ranks, table, one))


def test_an_index_map_block_round_trips_and_a_bad_one_is_refused():
    palette = tuple(map(tuple, COLOURS.tolist()))
    header = Header(b"\x01" * 8, 16, (20, 30), palette=palette, palette_reach=768,
                    index_map=b"\x07map")
    data = pack(Bitstream(header, (b"ab",)))
    assert unpack(data).header == header and unpack(data).strings == (b"ab",)
    no_map = pack(Bitstream(Header(b"\x01" * 8, 16, (20, 30), palette=palette,
                                   palette_reach=768), (b"ab",)))
    assert len(data) == len(no_map) + 4 + 4
    with pytest.raises(ValueError, match="without a palette"):
        Header(b"\x01" * 8, 16, (20, 30), index_map=b"x")
    body = bytearray(data[:-4])
    start = 32 + 5 + 3 * len(palette)
    body[start:start + 8] = struct.pack("<I", 0)  # the flag set, the map empty
    with pytest.raises(CorruptBitstreamError, match="empty index map"):
        unpack(bytes(body) + struct.pack("<I", zlib.crc32(body)))


@pytest.fixture(scope="module")
def codec():
    return codec_for("slimcae-hpc")


def test_the_encoder_sends_exact_blocks_where_they_pay_and_every_decoder_paints_them(codec):
    rgb = few_colours(64, 96, seed=1)
    width = codec.widths[0]
    report = {}
    data = codec.encode_rgb(rgb, width, lmbda=0.2, report=report)
    header = unpack(data).header
    assert header.palette and header.index_map and report["index_map"] == len(header.index_map)
    decoded = codec.decode_rgb(data)[0]
    snapped_only = codec.decode_rgb(pack(Bitstream(replace(header, index_map=b""),
                                                   unpack(data).strings)))[0]
    assert psnr(rgb, decoded) > psnr(rgb, snapped_only)
    assert (decoded == snap(codec.decode_rgb(codec.encode_rgb(
        rgb, width, lmbda=0.2, palette=False))[0], header)).all()
    assert rd_loss(rgb, decoded, len(data), 0.2) < rd_loss(
        rgb, snapped_only, len(data) - 4 - len(header.index_map), 0.2)
    # a photo: no palette, so no map
    assert not unpack(codec.encode_rgb(natural_like(64, 96, seed=3), width,
                                       lmbda=0.2)).header.index_map


def test_anti_aliased_text_is_painted_in_a_palette_of_its_blends_far_apart(codec):
    """A screen whose text is anti-aliased (hundreds of blends): the palette holds blends
    :data:`~slimcodec.palette.SEPARATION` apart, and blocks of text are painted in them."""
    from slimcodec.domains.screen import antialiased, render_screen
    from slimcodec.palette import SEPARATION

    seed = next(s for s in range(1000, 1100) if antialiased(s))
    rgb = render_screen(seed, (512, 768))[64:192, 192:384]
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 100
    report = {}
    data = codec.encode_rgb(rgb, codec.widths[0], lmbda=0.2, report=report)
    header = unpack(data).header
    assert report["index_map"] > 0
    colours = np.asarray(header.palette, np.uint8)
    apart = np.abs(colours[:, None].astype(int) - colours[None]).max(-1)
    assert apart[~np.eye(len(colours), dtype=bool)].min() >= SEPARATION
    # so each colour, snapped onto, stays its own nearest for a decoder two levels off
    assert index_map._stable(colours, colours)[1].all()
    painted = _exact_blocks(header.index_map, rgb.shape[:2])
    on_palette = (rgb[..., None, :] == colours).all(-1).any(-1)
    assert (painted & ~on_palette).sum() > 100  # blends painted in their nearest colours
    plain = codec.encode_rgb(rgb, codec.widths[0], lmbda=0.2, palette=False)
    assert rd_loss(rgb, codec.decode_rgb(data)[0], len(data), 0.2) < rd_loss(
        rgb, codec.decode_rgb(plain)[0], len(plain), 0.2)


def test_a_mean_of_psnrs_counts_an_exact_image_at_the_ceiling():
    assert mean_psnr([float("inf"), 30.0]) == (MEAN_PSNR_CEILING + 30) / 2
    assert mean_psnr([70.0, 40.0]) == (MEAN_PSNR_CEILING + 40) / 2
    assert mean_psnr([35.0, 45.0]) == 40.0
    with pytest.raises(ValueError):
        mean_psnr([])
    assert psnr(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8)) == float("inf")
    assert index_map.BLOCK == 16


def test_a_psnr_target_search_counts_an_exact_file_at_the_ceiling():
    """Exact blocks can make a file lossless (an infinite PSNR) from some λ up: the
    ``--target-psnr`` search counts such a pass at 60 dB, so that its secant and its
    bracket stay finite, and lands on a target below it."""
    import math

    from slimcodec.rate_control import _search

    class Codec:
        def lambda_range(self, width):
            return 1e-3, 1.0

    def measure(width, lmbda):  # 30 dB at the bottom, 10 dB per decade, exact from 0.3 up
        quality = math.inf if lmbda >= 0.3 else 30 + 10 * math.log10(lmbda / 1e-3)
        return b"x", 8 * lmbda, quality

    for target in (40.0, 50.0, 54.0):
        found = _search(Codec(), 192, target, 0.05, 12, True, measure,
                        lambda bpp, quality: quality, [])
        assert found is not None and abs(found[3] - target) <= 0.05, (target, found)


def test_a_psnr_target_on_an_image_every_file_decodes_exactly_says_so(codec):
    rgb = few_colours(64, 96, seed=1)
    width = max(codec.widths)
    lowest = codec.encode_rgb(rgb, width, lmbda=codec.lambda_range(width)[0])
    assert psnr(rgb, codec.decode_rgb(lowest)[0]) == float("inf")  # lossless from the bottom
    with pytest.raises(RateError, match=r"exactly .* give a rate target"):
        encode_with_rate(codec, rgb, width=width, target_psnr=40)
