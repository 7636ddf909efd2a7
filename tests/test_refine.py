"""Content-adaptive encoding (issue 14): refined latents, unchanged decoders."""

import numpy as np
import pytest
import torch
from helpers import natural_like, record_argument
from PIL import Image
from test_edge import tiny

import slimcodec.refine
from slimcodec.api import codec_for
from slimcodec.cli import main, sample_image
from slimcodec.codec import Codec
from slimcodec.refine import refine_latent, sga_round, steps_for_effort
from slimcodec.utils.image import load_rgb
from slimcodec.utils.metrics import psnr

WIDTHS = (72, 48)  # the shipped model's narrow widths: trained, and cheap on a tiny image


@pytest.fixture(scope="module")
def codec():
    return codec_for("slimcae")


@pytest.fixture(scope="module")
def image():
    rgb, _ = load_rgb(sample_image())
    return np.ascontiguousarray(rgb[100:164, 200:264])


def test_refinement_never_raises_the_rd_loss(codec, image):
    for width in WIDTHS:
        lmbda = codec.rd_lambdas[codec.widths.index(width)]
        with codec.operating_point(width, None) as model:
            result = refine_latent(model, image, lmbda, steps=15)
        assert result.loss_refined <= result.loss_plain
        report = {}
        data = codec.encode_rgb(image, width, refine=15, report=report)
        assert report["loss_refined"] <= report["loss_plain"] or report["chosen"] == "plain"
        plain = codec.encode_rgb(image, width)
        out, _ = codec.decode_rgb(data)
        plain_out, _ = codec.decode_rgb(plain)

        def loss(d, o, lmbda=lmbda):
            mse = np.mean((o.astype(float) - image) ** 2) / 255**2
            return lmbda * 255**2 * mse + 8 * (len(d) - 44) / image[..., 0].size

        assert loss(data, out) <= loss(plain, plain_out) + 1e-9


def test_refined_file_decodes_with_the_plain_decoder_as_predicted(codec, image, tmp_path):
    report = {}
    data = codec.encode_rgb(image, 48, refine=20, report=report)
    out, header = codec.decode_rgb(data)  # an ordinary file
    assert header.width == 48
    assert psnr(image, out) == pytest.approx(report["psnr_predicted"], abs=1e-9)
    assert report["chosen"] == "refined"  # the tiny model does gain, or the test is moot
    assert codec.encode_rgb(image, 48, refine=20) == data  # seeded: the same file again


def test_the_codec_passes_its_relaxation_to_refinement(codec, image):
    report_sga, report_ste = {}, {}
    codec.encode_rgb(image, 48, refine=20, report=report_sga)
    ste = Codec(codec.model, rd_lambdas=codec.rd_lambdas, refine_relaxation="ste")
    ste.encode_rgb(image, 48, refine=20, report=report_ste)
    assert report_ste["loss_refined"] != report_sga["loss_refined"]  # another relaxation ran
    wrong = Codec(codec.model, rd_lambdas=codec.rd_lambdas, refine_relaxation="nearest")
    with pytest.raises(ValueError, match="relaxation"):
        wrong.encode_rgb(image, 48, refine=2)


def test_the_codec_passes_its_step_size_to_refinement(codec, image, monkeypatch):
    seen = record_argument(monkeypatch, slimcodec.refine, "_optimise", "lr")
    short, long = slimcodec.refine.SHORT_RUN_STEPS, slimcodec.refine.SHORT_RUN_STEPS + 1
    codec.encode_rgb(image, 48, refine=short)  # the factorized refinement's own defaults
    assert set(seen) == {slimcodec.refine.SHORT_RUN_LR}
    seen.clear()
    codec.encode_rgb(image, 48, refine=long)
    assert set(seen) == {slimcodec.refine.DEFAULT_LR}
    seen.clear()
    Codec(codec.model, rd_lambdas=codec.rd_lambdas, refine_lr=0.25).encode_rgb(
        image, 48, refine=2)
    assert set(seen) == {0.25}
    assert slimcodec.refine.SHORT_RUN_LR != slimcodec.refine.DEFAULT_LR


def test_step_bound_is_respected(codec, image):
    calls = []
    big = natural_like(80, 70)  # with tile=2: 3x3 tiles of the 5x5 latent
    small_tiles = Codec(codec.model, rd_lambdas=codec.rd_lambdas, tile=2)
    small_tiles.encode_rgb(big, 48, refine=7, progress=calls.append)
    assert sum(calls) == 7 * 9


def test_refinement_composes_with_every_width_and_lambda():
    image = natural_like(48, 64, seed=2)
    model = tiny("slimcae-vr")
    codec = Codec(model)
    for width in codec.widths:
        for lmbda in codec.lambda_range(width):
            report = {}
            data = codec.encode_rgb(image, width, lmbda=lmbda, refine=5, report=report)
            assert report["lmbda"] == pytest.approx(lmbda, rel=1e-6)
            out, header = codec.decode_rgb(data)
            assert header.rate == pytest.approx(lmbda, rel=1e-6)
            assert psnr(image, out) == pytest.approx(report["psnr_predicted"], abs=1e-9)


def test_effort_levels_and_interrupted_refinement(tmp_path, monkeypatch, capsys, codec, image):
    assert [steps_for_effort(e) for e in (0, 4, 6)] == [0, 100, 500]
    with pytest.raises(ValueError):
        steps_for_effort(7)
    Image.fromarray(image).save(tmp_path / "in.png")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(slimcodec.refine, "refine_latent", interrupted)
    code = main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.slc"),
                 "--model", "slimcae", "--width", "48", "--refine", "5"])
    assert code == 130 and not (tmp_path / "x.slc").exists()
    capsys.readouterr()


def test_sga_rounds_between_neighbours_and_hardens_as_it_anneals():
    torch.manual_seed(0)
    v = torch.randn(4000) * 3
    soft = sga_round(v, 0.5)
    assert torch.all((soft >= torch.floor(v)) & (soft <= torch.floor(v) + 1))
    clear = (v - torch.floor(v) - 0.5).abs() > 0.05  # not a near tie
    assert torch.equal(sga_round(v, 1e-4)[clear], torch.round(v)[clear])  # τ → 0: rounding
    # the nearer integer is the likelier: the error to round(v) shrinks on average
    assert (soft - torch.round(v)).abs().mean() < (soft - torch.floor(v) - 0.5).abs().mean()
    with pytest.raises(ValueError, match="relaxation"):
        refine_latent(tiny("slimcae"), natural_like(16, 16), 0.01, 1, relaxation="bogus")
