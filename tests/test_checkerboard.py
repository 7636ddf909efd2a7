"""The checkerboard mean context (slimcae-hpc): coding, what the context may read, the edge
runtime, refinement and its training stage."""

import numpy as np
import pytest
import torch
from helpers import natural_like, tiny_checkerboard, tiny_hyperprior
from PIL import Image

from slimcodec.bitstream import unpack
from slimcodec.codec import Codec
from slimcodec.latent import anchors
from slimcodec.models import CheckerboardSlimCAE
from slimcodec.models.checkerboard import anchor_mask
from slimcodec.utils.tensors import to_tensor
from slimcodec.zoo import load_model_file, save_model_file

WIDTHS = (16, 8)
RANGES = ((0.002, 0.2), (0.001, 0.05))


def _model(context: float | None = 0.3, seed: int = 0) -> CheckerboardSlimCAE:
    """A tiny checkerboard model around :func:`tiny_hyperprior`'s, its context's last layer
    drawn with this spread (None: as constructed, untrained)."""
    return tiny_checkerboard(WIDTHS, RANGES, context, seed)


@pytest.fixture(scope="module")
def codec():
    return Codec(_model(), "tiny-hpc")


def _latent(model, rgb):
    h, w = (-(-s // 16) * 16 for s in rgb.shape[:2])
    padded = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
    return model.analysis(to_tensor(padded)).detach()


def test_an_untrained_context_codes_as_its_hyperprior():
    plain = tiny_hyperprior(WIDTHS, RANGES, 0)
    model = _model(context=None)
    rgb = natural_like(40, 56, seed=3)
    for width in WIDTHS:
        for lmbda in RANGES[WIDTHS.index(width)]:
            files = [Codec(m).encode_rgb(rgb, width, lmbda=lmbda) for m in (plain, model)]
            assert unpack(files[0]).strings == unpack(files[1]).strings


def test_the_coder_rounds_where_the_model_does_at_every_width(codec):
    """The numpy coder's decoded latent is the model's own (torch) quantised latent: anchors
    rounded around the hyper means, the others around their context means."""
    model = codec.model
    for size in ((37, 53), (64, 31)):
        rgb = natural_like(*size, seed=sum(size))
        for width in WIDTHS:
            hi = codec.lambda_range(width)[-1]
            data = codec.encode_rgb(rgb, width, lmbda=hi)
            decoded, header = codec.decode_rgb(data)
            assert decoded.shape == (*size, 3) and header.width == width
            with codec.operating_point(width, hi):
                coder = model.latent_coder()
                y = _latent(model, rgb)
                assert coder.encode(y[0].numpy()) == unpack(data).strings
                got = coder.decode(unpack(data).strings, tuple(y.shape[-2:]))
                with torch.no_grad():
                    means, _ = _conditionals(model, y)
                    want, corrected = model.latent_means(
                        means, lambda mu, y=y: torch.round(y - mu) + mu)
                np.testing.assert_allclose(got, want[0].numpy(), atol=1e-4)
                # the context did move the non-anchors' means
                moved = (corrected - means).abs()[0] > 1e-3
                assert moved[:, ~anchor_mask(tuple(y.shape[-2:]))].any()


def _conditionals(model, y):
    import torch.nn.functional as F

    h, w = y.shape[-2:]
    z = model.hyper_analysis(F.pad(y, (0, -w % 4, 0, -h % 4), mode="replicate"))
    q = torch.round(z - model.entropy_bottleneck._get_medians())
    return model.conditionals(q, (h, w))


def test_non_anchor_means_read_only_the_anchors(codec):
    """What makes the file decodable: the context sees the anchors, never the elements it
    predicts, and leaves the anchors' own means alone."""
    model = codec.model
    model.set_width(WIDTHS[0])
    coder = model.latent_coder()
    rng = np.random.default_rng(0)
    means = rng.normal(0, 1, (WIDTHS[0], 6, 7)).astype(np.float32)
    y_hat = rng.normal(0, 3, means.shape).astype(np.float32)
    anchors = anchor_mask((6, 7)).numpy()
    base = coder._context_means(y_hat, means)
    np.testing.assert_array_equal(base[:, anchors], means[:, anchors])
    other = y_hat.copy()
    other[:, ~anchors] += 5.0
    np.testing.assert_array_equal(coder._context_means(other, means), base)
    other = y_hat.copy()
    other[:, anchors] += 5.0
    assert not np.allclose(coder._context_means(other, means)[:, ~anchors], base[:, ~anchors])
    # the torch side, as training and refinement see it
    with torch.no_grad():
        mu, y = torch.from_numpy(means)[None], torch.from_numpy(y_hat)[None]
        _, corrected = model.latent_means(mu, lambda m: y)
        _, again = model.latent_means(mu, lambda m: torch.where(
            torch.from_numpy(anchors), y, y + 5.0))
    torch.testing.assert_close(corrected, again)


def test_context_in_row_bands_codes_as_one_pass_over_the_whole_latent(codec):
    """A latent of 25 rows in bands of 4 (``band=1`` row of z): the context never sees more
    than a band and its halo, bands start on rows of both parities, and the strings and the
    decoded latent are those of one pass over the whole latent."""
    from dataclasses import replace

    from slimcodec.latent import CONTEXT_HALO

    model = codec.model
    rgb = natural_like(400, 48, seed=5)
    with codec.operating_point(WIDTHS[0], RANGES[0][1]):
        whole = replace(model.latent_coder(), band=1 << 30)
        seen = []

        def context(x):
            seen.append(x.shape[1])
            return whole.mean_context(x)

        banded = replace(whole, band=1, mean_context=context)
        y = _latent(model, rgb)[0].numpy()
        strings = whole.encode(y)
        assert banded.encode(y) == strings
        np.testing.assert_array_equal(banded.decode(strings, y.shape[1:]),
                                      whole.decode(strings, y.shape[1:]))
        assert max(seen) <= 4 + 2 * CONTEXT_HALO and len(seen) >= 2 * (y.shape[1] // 4)


def test_a_context_wider_than_the_bands_halo_is_refused():
    with pytest.raises(ValueError, match="context_kernel 9"):
        CheckerboardSlimCAE(widths=WIDTHS, lambda_ranges=RANGES, context_kernel=9)


def test_edge_runtime_cross_decodes_checkerboard_files(codec, tmp_path):
    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.onnx_export import export_bundle

    export_bundle(codec.model, tmp_path / "bundle", "tiny-hpc")
    edge = EdgeCodec(tmp_path / "bundle")
    assert edge.bundle.latent_kind == "checkerboard"
    rgb = natural_like(45, 70, seed=9)
    for width in WIDTHS:
        lmbda = codec.lambda_range(width)[-1]
        for writer, reader in ((codec, edge), (edge, codec)):
            data = writer.encode_rgb(rgb, width, lmbda=lmbda)
            ours, _ = reader.decode_rgb(data)
            theirs, _ = writer.decode_rgb(data)
            diff = np.abs(ours.astype(int) - theirs.astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    # the coder's networks, run on bands as wide as the image, keep no arena between runs;
    # the tiled transforms do
    arenas = {kind: edge.session(WIDTHS[0], kind).get_session_options().enable_cpu_mem_arena
              for kind in ("analysis", "synthesis", *edge.bundle.coder_graphs)}
    assert arenas == {"analysis": True, "synthesis": True, "hyper_analysis": False,
                      "hyper_mean": False, "mean_context": False}


def test_hostile_checkerboard_files_end_in_typed_errors_in_both_runtimes(codec, tmp_path):
    """Quick fuzz of the default model's kind (the long run: benchmarks/fuzz.py --model
    slimcae-hpc [--edge]): hostile strings and headers of checkerboard files, every one a
    typed error or an image, in slimcodec and in the edge runtime."""
    from helpers import assert_hostile_files_typed
    from slimcodec_edge.onnx_export import export_bundle

    export_bundle(codec.model, tmp_path / "bundle", "tiny-hpc")
    assert_hostile_files_typed(codec, tmp_path / "bundle", tmp_path, seed=3)


def test_refinement_codes_checkerboard_files_no_worse(codec):
    state = {k: v.clone() for k, v in codec.model.state_dict().items()}
    rgb = natural_like(40, 56, seed=11)
    plain = codec.encode_rgb(rgb, 16, lmbda=0.02)
    refined = codec.encode_rgb(rgb, 16, lmbda=0.02, refine=8)
    assert codec.rd_loss(rgb, refined) <= codec.rd_loss(rgb, plain) + 1e-9
    assert codec.decode_rgb(refined)[0].shape == rgb.shape
    # (after the edge test's export too) the model itself is untouched
    after = codec.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())


def test_model_file_keeps_the_context(codec, tmp_path):
    save_model_file(codec.model, tmp_path / "m.pt")
    loaded = load_model_file(tmp_path / "m.pt").eval()
    assert isinstance(loaded, CheckerboardSlimCAE)
    rgb = natural_like(32, 48, seed=4)
    assert Codec(loaded).encode_rgb(rgb, 8, lmbda=0.01) == codec.encode_rgb(rgb, 8, lmbda=0.01)


def test_context_stage_trains_the_context_alone(tmp_path):
    from dataclasses import replace

    from slimcodec.training import TrainConfig, train

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(natural_like(64, 64, seed=60 + i)).save(data / f"{i}.png")
    save_model_file(tiny_hyperprior(WIDTHS, RANGES, 0), tmp_path / "init.pt")
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), arch="slimcae-hpc",
                      init=str(tmp_path / "init.pt"), widths=list(WIDTHS),
                      lambda_ranges=[v for r in RANGES for v in r], patch=64, batch=2,
                      steps=3, lr=1e-2, checkpoint_every=1000, stage="context")
    trained = load_model_file(train(cfg).export({})).eval()
    start = load_model_file(train(replace(cfg, out=str(tmp_path / "run0"), steps=0))
                            .export({})).eval()
    before, after = start.state_dict(), trained.state_dict()
    for key, value in before.items():
        if not key.startswith("mean_context."):
            assert torch.equal(after[key], value), key
    assert not torch.equal(after["mean_context.layers.4.weight"],
                           before["mean_context.layers.4.weight"])
    with pytest.raises(ValueError, match="--stage context trains a checkerboard context"):
        TrainConfig(data=str(data), out=str(tmp_path / "x"), arch="slimcae-hp",
                    stage="context")


def test_int8_bundle_quantises_the_context_and_decodes_float_files(codec, tmp_path):
    """--int8: the context gets an int8 graph like the hyperprior's networks; a file of the
    float graphs decodes with the int8 ones (the same symbols, means off by a little)."""
    import json

    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.onnx_export import export_bundle

    Image.fromarray(natural_like(64, 80)).save(tmp_path / "cal.png")
    export_bundle(codec.model, tmp_path / "b", "tiny-hpc", calibration=tmp_path / "cal.png",
                  calibration_images=1)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    for w in WIDTHS:
        assert "mean_context_int8" in manifest["graphs"][str(w)]
    floats, ints = EdgeCodec(tmp_path / "b"), EdgeCodec(tmp_path / "b", int8=True)
    data = floats.encode_rgb(natural_like(45, 70, seed=9), 8)
    y_int8, y_float = ints.decode_latent(data)[0], floats.decode_latent(data)[0]
    assert 0 < np.abs(y_int8 - y_float).max() < 0.25


@pytest.mark.parametrize("size", [(1, 1), (6, 7), (7, 6), (32, 48)])
def test_the_model_s_anchor_mask_is_the_coder_s(size):
    np.testing.assert_array_equal(anchor_mask(size).numpy(), anchors(size))
