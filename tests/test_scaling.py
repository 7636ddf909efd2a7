"""Coding at a higher resolution than the image's (``scale``): the container's coded size,
the codec's encode and decode around it, rate control and the command line."""

import struct
import zlib

import numpy as np
import pytest
from helpers import natural_like, record_argument

from slimcodec.api import codec_for
from slimcodec.bitstream import Bitstream, Header, RateKind, pack, unpack
from slimcodec.bitstream.container import MAX_CODING_SCALE, RESAMPLING
from slimcodec.bitstream.rate import rd_loss
from slimcodec.cli import main
from slimcodec.errors import CorruptBitstreamError, LatentError, ResourceLimitError
from slimcodec.rate_control import encode_with_rate
from slimcodec.scaling import candidate_name, coded_size
from slimcodec.utils.metrics import psnr
from slimcodec.zoo import DEFAULT_MODEL

FP = bytes(range(8))


def _file(coded: tuple[int, int] | None, image=(37, 50), resampling: int = 0) -> bytes:
    return pack(Bitstream(Header(FP, 96, image, rate_kind=RateKind.LAMBDA, rate=0.01,
                                 coded_size=coded, resampling=resampling), (b"\x01" * 8,)))


def _with_coded(data: bytes, coded: tuple[int, int], resampling: int = 0) -> bytes:
    """``data`` (a file with a coded size) with another coded size and filter, and a valid
    CRC: what a buggy or hostile writer makes."""
    body = bytearray(data[:-4])
    body[32:41] = struct.pack("<IIB", *coded, resampling)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def test_the_coded_size_round_trips_and_costs_nine_bytes_only_where_written():
    plain, scaled = _file(None), _file((74, 100), resampling=1)
    assert unpack(plain).header.coded_size is None and unpack(plain).header.coded == (37, 50)
    header = unpack(scaled).header
    assert header.coded_size == (74, 100) and header.coded == (74, 100)
    assert header.image_size == (37, 50) and header.resampling == 1
    assert len(scaled) == len(plain) + 9
    assert scaled[5] & 0x04 and not plain[5] & 0x04  # the flag; bytes 32..41 the block


@pytest.mark.parametrize("coded, resampling, why", [
    ((36, 50), 0, "each side"), ((37, 49), 0, "each side"),
    ((37 * MAX_CODING_SCALE + 1, 50), 0, "each side"), ((37, 50), 0, "equal to the image's"),
    ((74, 100), len(RESAMPLING), "unknown")])
def test_a_coded_size_no_encoder_writes_is_refused(coded, resampling, why):
    with pytest.raises(ValueError, match=why):
        _file(coded, resampling=resampling)
    with pytest.raises(CorruptBitstreamError, match=why):
        unpack(_with_coded(_file((74, 100)), coded, resampling))
    with pytest.raises(ValueError, match="without a coded size"):
        _file(None, resampling=1)


def test_coded_size_rounds_each_side_and_refuses_what_no_container_holds():
    assert coded_size(37, 50, 1.5) == (56, 75) and coded_size(37, 50, 1) == (37, 50)
    for bad in (0.5, MAX_CODING_SCALE + 0.5, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            coded_size(37, 50, bad)
    with pytest.raises(ResourceLimitError):
        coded_size(20000, 10, 2)


@pytest.fixture(scope="module")
def codec():
    return codec_for(DEFAULT_MODEL)


def test_a_scaled_file_decodes_to_the_image_at_higher_quality(codec):
    """Coded at 2×, a file decodes to the image's size, through both halves too; at the
    top of the range it reaches more than the model at the image's own size can."""
    rgb = natural_like(40, 52, seed=4)
    width = max(codec.widths)
    top = codec.lambda_range(width)[1]
    alone = codec.encode_rgb(rgb, width, lmbda=top)
    data = codec.encode_rgb(rgb, width, lmbda=top, scale=2)
    header = unpack(data).header
    assert header.image_size == (40, 52) and header.coded_size == (80, 104)
    decoded, _ = codec.decode_rgb(data)
    assert decoded.shape == (40, 52, 3)
    assert psnr(rgb, decoded) > psnr(rgb, codec.decode_rgb(alone)[0]) + 1
    y_hat, _ = codec.decode_latent(data)
    assert y_hat.shape == (width, 5, 7)  # the coded size's latent, not the image's (3, 4)
    assert np.array_equal(codec.synthesize_rgb(y_hat, header), decoded)
    with pytest.raises(LatentError):
        codec.synthesize_rgb(codec.decode_latent(alone)[0], header)
    assert codec.encode_rgb(rgb, width, lmbda=top, scale=1) == alone


def test_rate_control_measures_the_original_at_a_scale(codec):
    """A target's rate counts the image's pixels and its PSNR the image's, not the coded
    image's: the search lands on the target as it does at scale 1."""
    rgb = natural_like(48, 64, seed=5)
    data, search = encode_with_rate(codec, rgb, target_bpp=1.2, scale=1.5)
    assert unpack(data).header.coded_size == (72, 96)
    assert abs(8 * len(data) / (48 * 64) / 1.2 - 1) < 0.03 and search.bpp == pytest.approx(
        8 * len(data) / (48 * 64))
    data, search = encode_with_rate(codec, rgb, target_psnr=26, scale=1.5, domain="auto")
    assert search.psnr == pytest.approx(psnr(rgb, codec.decode_rgb(data)[0]))


def test_the_coded_size_counts_against_the_pixel_limit(codec):
    rgb = natural_like(40, 52)
    small = codec_for(DEFAULT_MODEL, max_pixels=40 * 52 * 2)
    small.encode_rgb(rgb, 48, scale=1.2)
    with pytest.raises(ResourceLimitError):
        small.encode_rgb(rgb, 48, scale=2)
    data = codec.encode_rgb(rgb, 48, scale=2)
    with pytest.raises(ResourceLimitError):
        small.decode_rgb(data)


def test_the_command_line_codes_at_a_scale(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(natural_like(37, 50)).save(tmp_path / "p.png")
    slc = tmp_path / "p.slc"
    assert main(["compress", str(tmp_path / "p.png"), "-o", str(slc), "--scale", "2",
                 "--width", "48"]) == 0
    assert "50x37 (coded at 100x74)" in capsys.readouterr().out
    assert main(["decompress", str(slc), "-o", str(tmp_path / "d.png")]) == 0
    assert Image.open(tmp_path / "d.png").size == (50, 37)
    capsys.readouterr()
    assert main(["info", str(slc), "--json"]) == 0
    info = capsys.readouterr().out
    assert '"coded_height": 74' in info and '"resampling": "lanczos"' in info
    # refused once, before any work, however many files
    Image.fromarray(natural_like(20, 24)).save(tmp_path / "q.png")
    assert main(["compress", str(tmp_path / "p.png"), str(tmp_path / "q.png"), "-o",
                 str(tmp_path), "--scale", "9"]) == 2
    assert capsys.readouterr().err == "slimcodec: error: scale 9 is outside 1..4\n"


def test_eval_codes_at_a_scale_as_compress_does(tmp_path, capsys):
    import json

    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.fromarray(natural_like(37, 50)).save(tmp_path / "images" / "p.png")
    rd = tmp_path / "rd.json"
    assert main(["eval", str(tmp_path / "images"), "--widths", "48", "--scale", "2",
                 "--json", str(rd), "-q"]) == 0
    assert "coded at scale 2" in capsys.readouterr().out
    result = json.loads(rd.read_text())
    assert result["scale"] == 2
    point = result["points"][0]
    assert main(["compress", str(tmp_path / "images" / "p.png"), "-o", str(tmp_path / "p.slc"),
                 "--width", "48", "--lmbda", repr(point["lmbda"]), "--scale", "2"]) == 0
    assert point["bpp"] == 8 * (tmp_path / "p.slc").stat().st_size / (37 * 50)


def test_lanczos_upsampling_is_back_projected_so_the_decoder_gets_the_image_back():
    """Lanczos down after Lanczos up is a low-pass filter: the encoder's upsampling is
    corrected (back-projection) so that the decoder's resizing returns the image, at ×2
    and at ×1.5, far closer than the plain upsampling; ``box`` needs no correction."""
    from PIL import Image

    from slimcodec.scaling import BACK_PROJECTIONS, FILTERS, resample, upsample

    rgb = natural_like(48, 64, seed=7)
    for size in ((96, 128), (72, 96)):
        plain = psnr(rgb, resample(resample(rgb, size, Image.LANCZOS), (48, 64), Image.LANCZOS))
        corrected = upsample(rgb, size, "lanczos")
        assert corrected.shape == (*size, 3) and corrected.dtype == np.uint8
        back = psnr(rgb, resample(corrected, (48, 64), FILTERS["lanczos"][1]))
        assert back > max(plain + 8, 48), (size, plain, back)
        assert np.array_equal(upsample(rgb, size, "lanczos", steps=0),
                              resample(rgb, size, Image.LANCZOS))
    assert BACK_PROJECTIONS["box"] == 0
    assert np.array_equal(upsample(rgb, (96, 128), "box"),
                          resample(rgb, (96, 128), FILTERS["box"][0]))


def test_a_file_coded_upsampled_with_lanczos_is_coded_from_the_corrected_image(codec,
                                                                              monkeypatch):
    """The encoder codes the back-projected upsampling (its strings are those of the
    corrected image coded at its own size, not the plain upsampling's); and
    :func:`~slimcodec.scaling.choose_scale` weighs its candidates on the plain one (the
    rule it was measured with) but never returns a probe's file coded from it."""
    from slimcodec import scaling

    rgb = natural_like(48, 64, seed=5)
    width = max(codec.widths)
    top = codec.lambda_range(width)[1]
    corrected = codec.encode_rgb(rgb, width, lmbda=top, scale=2)
    with monkeypatch.context() as patch:
        patch.setitem(scaling.BACK_PROJECTIONS, "lanczos", 0)
        plain = codec.encode_rgb(rgb, width, lmbda=top, scale=2)
    direct = codec.encode_rgb(scaling.upsample(rgb, (96, 128), "lanczos"), width, lmbda=top)
    assert unpack(corrected).strings == unpack(direct).strings != unpack(plain).strings

    steps = []
    upsample = scaling.upsample

    def counted(*args, **kwargs):
        steps.append(args[3] if len(args) > 3 else None)
        return upsample(*args, **kwargs)

    monkeypatch.setattr(scaling, "upsample", counted)
    report: dict = {}
    auto = codec.encode_rgb(rgb, width, lmbda=top, scale="auto", report=report)  # its probe
    header = unpack(auto).header
    assert header.coded_size is not None and RESAMPLING[header.resampling] == "lanczos"
    # every candidate weighed on the corrected upsampling it would be coded from; the plain
    # one only beside box, at the scale with two filters
    assert steps.count(0) == ("2:box" in report["scale_losses"]) and steps[-1] is None
    scale = header.coded_size[0] / 48
    lmbda = scaling.coding_lambda(top, scale, codec.lambda_range(width)[0])
    assert lmbda == top / scale**2 and header.rate == pytest.approx(lmbda, rel=1e-6)
    assert auto == codec.encode_rgb(rgb, width, lmbda=lmbda, scale=scale)


def test_auto_codes_each_scale_at_the_same_trade_off_per_image_pixel(codec):
    """At scale s a model's λ weighs its bits per coded pixel, s² per image pixel: ``auto``
    codes a candidate at λ/s² (not below the width's range), and the gate weighs a file's
    loss per image pixel (λ·s²), so that files at two scales compare."""
    from slimcodec.scaling import coding_lambda

    assert coding_lambda(0.8, 2.0, 0.002) == 0.2
    assert coding_lambda(0.004, 2.0, 0.002) == 0.002  # the width's lowest
    assert coding_lambda(0.04, 1.0, 0.002) == 0.04
    rgb = natural_like(48, 64, seed=3)
    width = max(codec.widths)
    lmbda = codec.default_lambda(width)
    report: dict = {}
    data = codec._gate(rgb, width, False, lmbda, 0, report, 2.0)
    assert unpack(data).header.coded_size == (96, 128)
    decoded = codec.decode_rgb(data)[0]
    assert report["gate"][report["domain"] or "source"] == pytest.approx(
        rd_loss(rgb, decoded, len(data), 4 * unpack(data).header.rate))


def test_box_resampling_undoes_an_integer_scale_and_keeps_text_sharper(codec, monkeypatch):
    """``box`` upsamples by repeating pixels and the decoder averages them back: the file
    says so, and on a screen (thin strokes) the top λ decodes closer than ``lanczos``
    upsampled plainly (back-projection, which corrects Lanczos's blur, left out)."""
    from slimcodec import scaling
    from slimcodec.domains import render_screen
    from slimcodec.scaling import FILTERS, resample

    monkeypatch.setitem(scaling.BACK_PROJECTIONS, "lanczos", 0)

    rgb = render_screen(3, (64, 96))
    up = resample(rgb, (128, 192), FILTERS["box"][0])
    assert np.array_equal(resample(up, (64, 96), FILTERS["box"][1]), rgb)
    width = max(codec.widths)
    top = codec.lambda_range(width)[1]
    quality = {}
    for resampling in ("lanczos", "box"):
        data = codec.encode_rgb(rgb, width, lmbda=top, scale=2, resampling=resampling,
                                palette=False)  # (the palette's blocks would paint both)
        assert unpack(data).header.resampling == RESAMPLING.index(resampling)
        quality[resampling] = psnr(rgb, codec.decode_rgb(data)[0])
    assert quality["box"] > quality["lanczos"] + 1, quality
    for scale in (2, 1):
        with pytest.raises(ValueError, match="resampling 'cubic'"):
            codec.encode_rgb(rgb, width, scale=scale, resampling="cubic")


def test_auto_keeps_the_candidate_of_the_lowest_rd_loss(codec):
    """``scale="auto"`` on an image that is its own probe: the file is the one the chosen
    (scale, filter) codes, its RD loss the lowest of every candidate's tried, measured here
    anew; the image's own size at the bottom of the range (where ×1.5 does not lower the
    loss, so ×2 is not tried), an upsampling at the top, where ×3 ``box`` is not tried
    since ``box`` did not lead at ×2."""
    from slimcodec.scaling import AUTO, CANDIDATES, coding_lambda, probe_of

    rgb = natural_like(48, 64, seed=6)
    assert probe_of(rgb) is None
    width = max(codec.widths)
    low, high = codec.lambda_range(width)
    chosen = {}
    for lmbda in (low, high):
        report = {}
        data = codec.encode_rgb(rgb, width, lmbda=lmbda, scale=AUTO, report=report)
        tried = set(report["scale_losses"])
        files = {(s, f): codec.encode_rgb(rgb, width, lmbda=coding_lambda(lmbda, s, low),
                                          scale=s, resampling=f)
                 for s, f in CANDIDATES if candidate_name(s, f) in tried}
        losses = {c: rd_loss(rgb, codec.decode_rgb(d)[0], len(d), lmbda)
                  for c, d in files.items()}
        best = min(losses, key=losses.__getitem__)
        assert (report["scale"], report["resampling"]) == best
        assert data == files[best]
        assert codec.encode_rgb(rgb, width, lmbda=lmbda, scale=AUTO) == data  # no report
        chosen[lmbda] = best, tried
    assert chosen[low] == ((1, "lanczos"), {"1", "1.5"}), chosen
    assert chosen[high] == ((2, "lanczos"), {"1", "1.5", "2", "2:box"}), chosen


def test_auto_goes_on_to_three_times_box_where_box_leads_at_two(codec):
    """Text at the top of the widest width's range: ×2 ``box`` leads the plainly upsampled
    ×2 Lanczos (though not the back-projected one), so ×3 ``box`` is tried, and its lower
    loss chosen (screens' top quality), the file at λ/9; a photo-like image at the same λ,
    where Lanczos leads at ×2, is spared ×3 (the test above)."""
    from slimcodec.domains.screen import render_screen
    from slimcodec.scaling import AUTO

    rgb = render_screen(3, (64, 96))
    width = max(codec.widths)
    lmbda = codec.lambda_range(width)[1]
    report = {}
    # without the palette, whose exact blocks paint this text best at the image's own size
    data = codec.encode_rgb(rgb, width, lmbda=lmbda, scale=AUTO, report=report,
                            palette=False)
    losses = report["scale_losses"]
    assert min(losses, key=losses.__getitem__) == "3:box", losses
    assert unpack(data).header.coded_size == (192, 288)
    assert data == codec.encode_rgb(rgb, width, lmbda=lmbda / 9, scale=3, resampling="box",
                                    palette=False)


def test_auto_never_chooses_a_scale_the_pixel_limit_refuses(codec, monkeypatch):
    """Where the probe fits the pixel limit at a scale but the image does not, that scale
    is not tried: the image is coded at the best scale it can be (a larger image at a high
    rate would otherwise be refused, though it fits at its own size). Nor is the plain ×2
    Lanczos probe coded then: it only judges whether ×3 ``box`` is tried."""
    from slimcodec import scaling
    from slimcodec.domains.screen import render_screen
    from slimcodec.scaling import AUTO, PROBE_TILE

    rgb = render_screen(3, (272, 304))
    width = max(codec.widths)
    lmbda = codec.lambda_range(width)[1]
    report = {}
    steps = record_argument(monkeypatch, scaling, "upsample", "steps")
    # (without the palette, which makes ×2 enough for this screen: test_palette.py)
    codec.encode_rgb(rgb, width, lmbda=lmbda, scale=AUTO, report=report, palette=False)
    assert report["scale"] == 3, report["scale_losses"]
    assert steps.count(0) == 1  # the plain ×2 Lanczos, beside ×2 box
    steps.clear()
    limit = (3 * 2 * PROBE_TILE) ** 2  # the probe fits at ×3, the image does not
    small = codec_for(DEFAULT_MODEL, max_pixels=limit)
    report = {}
    data = small.encode_rgb(rgb, width, lmbda=lmbda, scale=AUTO, report=report,
                            palette=False)
    # (×2 box leads plain ×2 Lanczos, but the back-projected one codes text better)
    assert (report["scale"], report["resampling"]) == (2, "lanczos"), report["scale_losses"]
    assert "2:box" in report["scale_losses"] and "3:box" not in report["scale_losses"]
    assert small.decode_rgb(data)[0].shape == rgb.shape
    assert steps and 0 not in steps, steps


def test_auto_chooses_on_a_mosaic_of_a_larger_image(codec):
    """An image larger than the probe is chosen for by four tiles from across it, then
    coded once, whole, at the choice."""
    from slimcodec.scaling import AUTO, PROBE_TILE, probe_of

    rgb = natural_like(272, 304, seed=7)
    probe = probe_of(rgb)
    t = PROBE_TILE
    assert probe.shape == (2 * t, 2 * t, 3)
    # centred on the quarter points, on the 16-pixel grid: 272/4 - 64 = 4 -> 0, 204 - 64 -> 128
    assert np.array_equal(probe[:t, :t], rgb[0:t, 0:t])
    assert np.array_equal(probe[t:, :t], rgb[128:128 + t, 0:t])
    assert np.array_equal(probe[t:, t:], rgb[128:128 + t, 160:160 + t])
    strip = natural_like(100, 600, seed=8)  # shorter than two tiles: its whole height
    assert np.array_equal(probe_of(strip), np.concatenate(
        [strip[:, 80:80 + t], strip[:, 384:384 + t]], axis=1))  # 600/4 - 64 = 86 -> 80
    assert probe_of(natural_like(256, 256)) is None  # the mosaic would be the image
    top = codec.lambda_range(48)[1]
    report = {}
    data = codec.encode_rgb(rgb, 48, lmbda=top, scale=AUTO, report=report)
    losses = report["scale_losses"]
    assert losses[min(losses, key=losses.__getitem__)] == min(losses.values())
    best = min(losses, key=losses.__getitem__)
    assert candidate_name(report["scale"], report["resampling"]) == best
    assert data == codec.encode_rgb(rgb, 48, lmbda=top / report["scale"] ** 2,
                                    scale=report["scale"], resampling=report["resampling"])


def test_with_the_gate_auto_chooses_the_scale_alone_then_the_domain_on_the_probe(
        codec, monkeypatch):
    """With the gate (``domain="auto"``, the shipped default), the scale is the model
    alone's choice, the gate codes the probe alone, at that scale, each candidate's loss
    measured on the probe's own pixels, and the image is coded once, with the domain of the
    probe's lowest loss: the file that domain codes at that scale. At a given scale the
    gate's losses are the image's own pixels' too."""
    from slimcodec.codec import Codec
    from slimcodec.domains.screen import render_screen
    from slimcodec.scaling import AUTO, coding_lambda, gate_auto, probe_of

    rgb = render_screen(3, (272, 304))
    width = min(codec.widths)
    lmbda = codec.lambda_range(width)[1]
    gated = record_argument(monkeypatch, Codec, "_gate", "rgb")
    report = {}
    # without the palette, whose exact blocks paint this text best at the image's own size
    data = codec.encode_rgb(rgb, width, lmbda=lmbda, domain="auto", scale=AUTO, report=report,
                            palette=False)
    probe = probe_of(rgb)
    assert 1 <= len(gated) <= 2 and all(np.array_equal(g, probe) for g in gated)
    monkeypatch.undo()
    alone = {}
    codec.encode_rgb(rgb, width, lmbda=lmbda, domain="source", scale=AUTO, report=alone,
                     palette=False)
    at = report["scale"], report["resampling"]
    assert at == (alone["scale"], alone["resampling"]) and at[0] > 1
    assert report["scale_losses"] == alone["scale_losses"]
    assert set(report["gate"]) == {"source", *(a.domain for a in codec.adapters.values())}
    coded = coding_lambda(lmbda, at[0], codec.lambda_range(width)[0])
    for domain, loss in report["gate"].items():
        assert loss == codec.rd_loss(probe, codec.encode_rgb(  # (as the gate codes: no
            probe, width, lmbda=coded, domain=domain, scale=at[0], resampling=at[1],
            palette=False))  # palette, chosen for the file alone)
    chosen = min(report["gate"], key=report["gate"].__getitem__)
    assert (report["domain"] or "source") == chosen
    assert data == codec.encode_rgb(rgb, width, lmbda=coded, domain=chosen, scale=at[0],
                                    resampling=at[1], palette=False)
    with pytest.raises(ValueError, match="chooses the filter too"):
        codec.encode_rgb(rgb, width, lmbda=lmbda, domain="auto", scale=AUTO,
                         resampling="box")
    # where the gate at the image's own size beats it at the upsampling, the former is kept
    for own, wins in ((0.5, (1.0, "lanczos")), (2.0, at)):
        settled = []
        # (the encoder's own calls pass a coder without the palette, whose exact blocks
        # are planned for the file as sent, at the image's size: one with it is refused)
        if own == 0.5:
            with pytest.raises(ValueError, match="without the palette"):
                gate_auto(lambda coded: codec.encode_rgb(coded, width, lmbda=lmbda),
                          lambda *_: None, lambda *_: None, codec.decode_rgb, rgb, lmbda,
                          codec.max_pixels, None)
        gate_auto(lambda coded: codec.encode_rgb(coded, width, lmbda=lmbda, palette=False),
                  lambda image, s, f, r, own=own: r.update(
                      gate={"source": own if s == 1 else 1.0}, domain=None),
                  lambda *how, settled=settled: settled.append(how), codec.decode_rgb, rgb,
                  lmbda, codec.max_pixels, None)
        assert settled == [("source", *wins)]
    small = rgb[:40, :56]
    report = {}
    codec.encode_rgb(small, width, lmbda=lmbda, domain="auto", scale=2, report=report)
    for domain, loss in report["gate"].items():
        assert loss == codec.rd_loss(small, codec.encode_rgb(small, width, lmbda=lmbda,
                                                             domain=domain, scale=2,
                                                             palette=False))


def test_a_target_with_auto_searches_the_smallest_scale_that_reaches_it_first(
        codec, monkeypatch):
    from slimcodec.errors import RateError
    from slimcodec.scaling import AUTO

    rgb = natural_like(48, 64, seed=5)
    width = max(codec.widths)
    low, top = (8 * len(codec.encode_rgb(rgb, width, lmbda=lmbda)) / (48 * 64)
                for lmbda in codec.lambda_range(width))
    data, _ = encode_with_rate(codec, rgb, target_bpp=low * 1.2, scale=AUTO)
    assert unpack(data).header.coded_size is None  # the image's own size reaches it, best
    # near the top of its own size's reach, a larger scale codes the same rate better
    data, search = encode_with_rate(codec, rgb, width=width, target_bpp=top * 0.8, scale=AUTO)
    own, _ = encode_with_rate(codec, rgb, width=width, target_bpp=top * 0.8, scale=1)
    assert unpack(data).header.coded_size is not None and abs(search.bpp / (top * 0.8) - 1) < 0.01
    assert psnr(rgb, codec.decode_rgb(data)[0]) > psnr(rgb, codec.decode_rgb(own)[0]) + 0.1
    data, search = encode_with_rate(codec, rgb, target_bpp=top * 1.3, scale=AUTO)
    assert unpack(data).header.coded_size is not None
    assert abs(search.bpp / (top * 1.3) - 1) < 0.01
    with pytest.raises(RateError, match="up to scale 3 reaches at most"):
        encode_with_rate(codec, rgb, target_bpp=100, scale=AUTO)
    small = codec_for(DEFAULT_MODEL, max_pixels=72 * 96)  # ×1.5 fits the limit, ×2 not
    with pytest.raises(RateError, match=r"up to scale 1\.5 reaches at most"):
        encode_with_rate(small, rgb, target_bpp=100, scale=AUTO)
    with pytest.raises(ResourceLimitError):  # too large at its own size: refused as ever
        encode_with_rate(codec_for(DEFAULT_MODEL, max_pixels=48 * 63), rgb, target_bpp=1,
                         scale=AUTO)
    scales = []
    encode = codec.encode_rgb
    monkeypatch.setattr(codec, "encode_rgb", lambda *a, **k: (
        scales.append(k.get("scale", 1)), encode(*a, **k))[1])
    with pytest.raises(RateError, match="at least"):
        encode_with_rate(codec, rgb, target_bpp=0.001, scale=AUTO)
    assert set(scales) == {1}  # below the image's own size's reach: no larger scale is tried
    with pytest.raises(ValueError, match="chooses the filter too"):
        encode_with_rate(codec, rgb, target_bpp=1, scale=AUTO, resampling="box")


@pytest.mark.parametrize("preferred, at, wins", [((1.0, "lanczos"), "top", 1.0),
                                                  ((1.5, "lanczos"), "top", 1.5),
                                                  ((1.5, "lanczos"), "low", 1.0)])
def test_a_target_with_auto_keeps_the_better_of_the_first_scale_and_the_probes(
        codec, monkeypatch, preferred, at, wins):
    """A target the image's own size reaches is searched again at the scale the encoder's
    probe prefers at the λ found, where that is a larger one, and the file of the higher
    PSNR at the target is kept (near the top of the own size's reach, the larger scale's;
    at a low rate, the own size's); where the probe prefers the image's own size, nothing
    else is coded."""
    import slimcodec.rate_control as rc
    from slimcodec.scaling import AUTO

    rgb = natural_like(48, 64, seed=5)
    width = max(codec.widths)
    low, top = (8 * len(codec.encode_rgb(rgb, width, lmbda=lmbda)) / (48 * 64)
                for lmbda in codec.lambda_range(width))
    target = top * 0.8 if at == "top" else low * 1.2
    own, found = encode_with_rate(codec, rgb, width=width, target_bpp=target, scale=1)
    asked = []
    monkeypatch.setattr(rc, "choose_scale", lambda encode, decode, image, weight, *_: (
        asked.append(weight), (preferred, None, {}))[1])
    scales = []
    encode = codec.encode_rgb
    monkeypatch.setattr(codec, "encode_rgb", lambda *a, **k: (
        scales.append(k.get("scale", 1)), encode(*a, **k))[1])
    data, search = encode_with_rate(codec, rgb, width=width, target_bpp=target, scale=AUTO)
    assert asked == [found.lmbda]  # one probe, at the λ the image's own size reached it with
    assert set(scales) == {1, *preferred[:1]}
    header = unpack(data).header
    assert (header.coded_size is None, header.coded_size) == (
        (True, None) if wins == 1 else (False, coded_size(48, 64, wins)))
    assert abs(search.bpp / target - 1) < 0.01
    if wins == 1:
        assert data == own
    else:  # the larger scale's file, at the target, and sharper
        assert search.psnr == psnr(rgb, codec.decode_rgb(data)[0])
        assert search.psnr > psnr(rgb, codec.decode_rgb(own)[0])


def test_a_targets_second_search_predicts_its_first_end_from_the_probe(codec, monkeypatch):
    """Where the probe coded both candidates, the second search does not code the λ the
    first found at the larger scale: the rate there is predicted from the found file's by
    the probe's ratio, and its first pass is the step below it. The file still meets the
    target."""
    import slimcodec.rate_control as rc
    from slimcodec.scaling import AUTO, encode_at_scale

    rgb = natural_like(48, 64, seed=5)
    width = max(codec.widths)
    target = 0.8 * 8 * len(codec.encode_rgb(rgb, width, lmbda=codec.lambda_range(width)[1])
                           ) / (48 * 64)

    def probe(encode, decode, image, weight, limit, lowest, measured, colours=None):
        for scale in (1.0, 1.5):  # the image is its own probe
            data = encode_at_scale(encode, decode, image, scale, limit)
            measured[candidate_name(scale, "lanczos")] = (
                8 * len(data) / (48 * 64), psnr(image, decode(data)[0]))
        return (1.5, "lanczos"), None, {}

    monkeypatch.setattr(rc, "choose_scale", probe)
    coded = []
    encode = codec.encode_rgb
    monkeypatch.setattr(codec, "encode_rgb", lambda *a, **k: (
        coded.append((k.get("scale", 1), a[3])), encode(*a, **k))[1])
    _, found = encode_with_rate(codec, rgb, width=width, target_bpp=target, scale=1)
    coded.clear()
    data, search = encode_with_rate(codec, rgb, width=width, target_bpp=target, scale=AUTO)
    larger = [lmbda for scale, lmbda in coded if scale == 1.5]
    assert larger and found.lmbda not in larger, coded
    assert unpack(data).header.coded_size == coded_size(48, 64, 1.5)  # sharper there
    assert abs(search.bpp / target - 1) < 0.01


@pytest.mark.parametrize("by_psnr, other, kept", [
    (False, (2.0, 0.5), "other"),   # sharper, at the target rate
    (False, (8.0, 0.5), "own"),     # blurrier
    (False, (2.0, 0.6), "own"),     # sharper, but off the target rate
    (True, (b"o" * 90, 30.0), "other"),   # at the target PSNR, fewer bytes
    (True, (b"o" * 110, 30.0), "own"),    # more bytes
    (True, (b"o" * 90, 31.0), "own")])    # fewer bytes, off the target PSNR
def test_a_targets_second_scale_wins_only_on_target_and_better(monkeypatch, by_psnr, other,
                                                                 kept):
    """What :func:`_better_scale` keeps of the two files a target with ``auto`` searched:
    the probe's scale's only where it meets the target and is better there."""
    import slimcodec.rate_control as rc
    from slimcodec.rate_control import RateSearch

    rgb = natural_like(48, 64, seed=1)
    noise = np.random.default_rng(0).standard_normal(rgb.shape)
    own = b"s" * 100
    if by_psnr:
        other_data, other_search = other[0], RateSearch(192, 0.005, 0.4, other[1], 6)
        target, tol, decoded = 30.0, 0.02, {}
    else:
        other_data, other_search = b"o" * 100, RateSearch(192, 0.005, other[1], None, 6)
        target, tol = 0.5, 0.01
        decoded = {own: 4.0, other_data: other[0]}  # noise levels: lower is sharper

    class Codec:
        max_pixels = 10**9

        def decode_rgb(self, data):
            return np.clip(rgb + decoded[data] * noise, 0, 255).astype(np.uint8), None

    monkeypatch.setattr(rc, "choose_scale", lambda *a: ((1.5, "lanczos"), None, {}))
    steps = [(1.0, "lanczos"), (1.5, "lanczos")]
    data, search = rc._better_scale(
        Codec(), rgb, False, (own, RateSearch(192, 0.01, 0.5, 30.0, 5)), steps[0], steps,
        lambda step, widths, below, start: (other_data, other_search), by_psnr, target, tol)
    assert data == (own if kept == "own" else other_data) and search.passes == 11


def test_a_quality_target_on_text_reaches_through_box():
    """A PSNR target above what every Lanczos scale reaches on text is searched on at ×2
    and ×3 ``box``, whose edges reach it (auto's candidates, the cheapest first)."""
    from slimcodec.domains.screen import render_screen
    from slimcodec.scaling import AUTO

    codec = codec_for(DEFAULT_MODEL)
    rgb = render_screen(3, (64, 96))
    data, search = encode_with_rate(codec, rgb, target_psnr=35.5, scale=AUTO, palette=False)
    header = unpack(data).header
    assert header.coded_size == (192, 288) and RESAMPLING[header.resampling] == "box"
    assert abs(psnr(rgb, codec.decode_rgb(data)[0]) - 35.5) <= 0.02 * 35.5, search
    # with the palette (the default) every pass is snapped onto the screen's colours: a
    # smaller scale reaches the target, in fewer bytes
    snapped, search = encode_with_rate(codec, rgb, target_psnr=35.5, scale=AUTO)
    header = unpack(snapped).header
    assert header.palette and header.coded[0] < 192 and len(snapped) < len(data)
    assert abs(psnr(rgb, codec.decode_rgb(snapped)[0]) - 35.5) <= 0.02 * 35.5, search


def test_compress_chooses_the_scale_unless_told(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(natural_like(37, 50)).save(tmp_path / "p.png")
    slc, top = tmp_path / "p.slc", ["--quality", "100", "--width", "48"]
    assert main(["compress", str(tmp_path / "p.png"), "-o", str(slc), *top]) == 0
    assert "(coded at" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "p.png"), "-o", str(slc), *top,
                 "--scale", "1"]) == 0
    assert "(coded at" not in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "p.png"), "-o", str(slc), *top,
                 "--resampling", "box"]) == 2
    assert "chooses the filter too" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error, as for any malformed option
        main(["compress", str(tmp_path / "p.png"), "-o", str(slc), "--scale", "big"])
    assert "neither 'auto' nor a number" in capsys.readouterr().err
