"""The residual (flag bit 5): its block in the container, the decoder's correction, and the
encoder's choice of the corrected blocks and the step (``slimcodec.residual``)."""

import struct
import zlib

import numpy as np
import pytest

from slimcodec.api import codec_for
from slimcodec.bitstream import Bitstream, Header, pack, unpack
from slimcodec.bitstream.rate import rd_loss
from slimcodec.domains.screen import render_screen
from slimcodec.errors import CorruptBitstreamError, TruncatedBitstreamError
from slimcodec.index_map import BLOCK
from slimcodec.residual import MIN_STEP, add, plan, steps
from slimcodec.utils.metrics import psnr


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image (values 40..215, so that a level off never clips) and a decoder's output of
    it: exact in the blocks of the right half, off by noise of σ 20 in the left half's
    (as the transforms blur text)."""
    rng = np.random.default_rng(seed)
    original = rng.integers(40, 216, (40, 70, 3)).astype(np.uint8)  # 3 × 5 blocks, cut
    noise = np.clip(rng.normal(0, 20, original.shape), -35, 35)
    noise[:, 2 * BLOCK:] = 0
    return original, (original + np.rint(noise)).astype(np.uint8)


def test_the_decoder_adds_what_the_encoder_planned_within_half_a_step():
    original, decoded = _pair()
    lmbda = 0.2
    step = steps(lmbda)[0]
    data, image = plan(original, decoded, lmbda, step)
    assert data[0] == step
    assert (add(decoded, data) == image).all()
    assert (image[:, 2 * BLOCK:] == decoded[:, 2 * BLOCK:]).all()  # nothing to mend there
    left = np.abs(image[:, :2 * BLOCK].astype(int) - original[:, :2 * BLOCK])
    assert left.max() <= step / 2
    assert psnr(original, image) > psnr(original, decoded) + 10
    # the symbols' contexts never read the decoder's output: one a level off decodes the
    # same correction, and its image is a level off
    assert (add(decoded + 1, data).astype(int) - image == 1).all()


def test_a_block_is_corrected_only_where_its_bits_cost_less_than_its_error():
    original, decoded = _pair(1)
    noise = np.random.default_rng(5).normal(0, 4, (BLOCK, BLOCK, 3))  # a block a little off
    decoded[:BLOCK, :BLOCK] = np.clip(original[:BLOCK, :BLOCK] + np.rint(noise), 0, 255)

    def corrected(lmbda: float) -> np.ndarray | None:
        planned = plan(original, decoded, lmbda, 5)
        if planned is None:
            return None
        data, image = planned
        assert rd_loss(original, image, len(data), lmbda) < rd_loss(original, decoded, 0,
                                                                      lmbda)
        changed = (image != decoded)[:2 * BLOCK, :3 * BLOCK]  # the first 2 × 3 blocks
        return changed.reshape(2, BLOCK, 3, BLOCK, 3).any(axis=(1, 3, 4))

    assert corrected(0.01) is None  # every block's bits cost more than its error
    left = np.array([[0, 1, 0], [1, 1, 0]], bool)
    assert (corrected(0.3) == left).all()  # the blocks far off, not the one a little off
    assert (corrected(3.0) == left | np.eye(2, 3, dtype=bool)).all()  # and at a higher λ


def test_the_steps_tried_are_the_high_rate_optimum_within_bounds():
    for lmbda in (0.001, 0.01, 0.1, 1.0):
        best = (18 / (lmbda * np.log(2))) ** 0.5
        assert steps(lmbda)[0] == round(best) and steps(lmbda)[1] == round(best * 2**0.5)
    assert steps(1e-9) == (255,) and steps(100.0) == (MIN_STEP,)
    with pytest.raises(ValueError, match="at least 3"):
        plan(*_pair(), 0.2, 2)


def test_a_damaged_residual_is_refused_typed():
    original, decoded = _pair()
    data, _ = plan(original, decoded, 0.2, 9)
    flags = 1 + 2  # the step, then 15 blocks' flags in two bytes
    red = struct.unpack_from("<I", data, 1 + flags - 1)[0]
    bad = {
        "its block flags alone need 3": data[:2],
        "no step": b"",
        "a step of 2": b"\x02" + data[1:],
        "bits set beyond the last block": data[:2] + bytes([data[2] | 1]) + data[3:],
        "no corrected block": data[:1] + b"\0\0" + data[3:],
        "the red channel cut": data[:flags + 2],
        "the green channel cut": data[:flags + 4 + red + 2],
        "bytes after the blue channel": data + b"\0",
        "the red channel: a context's table is not of symbols ascending, -29 to 29":
            data[:flags + 5] + struct.pack("<b", 99) + data[flags + 6:],
    }
    for what, forged in bad.items():
        with pytest.raises(CorruptBitstreamError, match=what):
            add(decoded, forged)
    with pytest.raises(CorruptBitstreamError):  # a residual for an image of another size
        add(decoded[:, :40], data)


def test_a_residual_block_round_trips_and_a_bad_one_is_refused():
    header = Header(b"\x01" * 8, 16, (20, 30), residual=b"\x07res")
    data = pack(Bitstream(header, (b"ab",)))
    assert unpack(data).header == header and data[5] == 0x20
    # with a palette and an index map before it
    both = Header(b"\x01" * 8, 16, (20, 30), palette=((0, 0, 0), (9, 9, 9)),
                  palette_reach=3, index_map=b"map", residual=b"\x07res")
    assert unpack(pack(Bitstream(both, (b"ab",)))).header == both
    empty = bytearray(pack(Bitstream(Header(b"\x01" * 8, 16, (20, 30)), (b"ab",))))
    empty[5] |= 0x20
    empty[32:32] = struct.pack("<I", 0)
    empty[-4:] = struct.pack("<I", zlib.crc32(bytes(empty[:-4])))
    with pytest.raises(CorruptBitstreamError, match="an empty residual"):
        unpack(bytes(empty))
    with pytest.raises(TruncatedBitstreamError, match="residual cut"):
        unpack(data[:33])


@pytest.fixture(scope="module")
def codec():
    """The default model (the tests' small models decode text too poorly to tell)."""
    return codec_for("slimcae-hpc")


def test_subpixel_text_is_sent_with_a_residual_at_the_top_of_the_range(codec, monkeypatch):
    """A crop of a screen with subpixel (ClearType-like) text, whose fringes the palette
    cannot hold: at the top λ the encoder adds a residual, and the file decodes to what
    the encoder measured, far better than without one, at a lower RD loss; never with
    ``palette=False`` (``--no-palette``)."""
    rgb = np.ascontiguousarray(render_screen(1001, (512, 768), text="subpixel")[32:96, 16:144])
    width, lmbda = 192, codec.lambda_range(192)[1]
    report = {"psnr": 0.0}
    data = codec.encode_rgb(rgb, width, lmbda=lmbda, report=report)
    decoded, header = codec.decode_rgb(data)
    assert report["residual"] == len(header.residual) > 0
    assert psnr(rgb, decoded) == pytest.approx(report["psnr"])
    monkeypatch.setattr("slimcodec.residual.SPREAD", ())
    without = codec.encode_rgb(rgb, width, lmbda=lmbda)
    assert not unpack(without).header.residual
    plain = codec.decode_rgb(without)[0]
    assert psnr(rgb, decoded) > psnr(rgb, plain) + 6
    weight = codec.rd_weight(width, lmbda)
    assert rd_loss(rgb, decoded, len(data), weight) < rd_loss(rgb, plain, len(without), weight)
    monkeypatch.undo()
    assert not unpack(codec.encode_rgb(rgb, width, lmbda=lmbda, palette=False)).header.residual


def test_a_residual_that_costs_more_than_it_mends_is_not_sent(codec, monkeypatch):
    """The encoder weighs the residual as it is sent: one planned as if λ were far higher
    (every block corrected, at a step far too fine) costs more bits at the bottom of the
    range than its error is worth there, and the file goes without it."""
    rgb = np.ascontiguousarray(render_screen(1001, (512, 768), text="subpixel")[32:96, 16:144])
    width, lmbda = 192, codec.lambda_range(192)[0]
    monkeypatch.setattr("slimcodec.residual.plan",
                        lambda original, decoded, _, step: plan(original, decoded, 1e4, 3))
    assert not unpack(codec.encode_rgb(rgb, width, lmbda=lmbda)).header.residual
    # (where the same residual pays: at the top λ it is sent)
    assert unpack(codec.encode_rgb(rgb, width, lmbda=codec.lambda_range(192)[1])).header.residual
