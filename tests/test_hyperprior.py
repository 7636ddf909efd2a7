"""The mean-scale hyperprior model kind (issue 28): coding, determinism, refusals, training."""

import copy
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from helpers import (
    aux_trained,
    natural_like,
    record_argument,
    sliced_slimcae,
    tiny_hyperprior,
    tiny_variable_rate,
)
from PIL import Image

from slimcodec.bitstream import Bitstream, pack, unpack
from slimcodec.codec import Codec
from slimcodec.errors import CorruptBitstreamError, ModelMismatchError, StaleBundleWarning
from slimcodec.integer_scales import ACTIVATION_MAX, INPUT_BOUND, IntegerScaleNet
from slimcodec.models import HyperpriorSlimCAE, ModulatedSlimCAE
from slimcodec.models.hyperprior import SCALE_TABLE
from slimcodec.training.trainer import init_from
from slimcodec.utils.metrics import psnr
from slimcodec.utils.tensors import to_tensor
from slimcodec.zoo import load_model_file, save_model_file

WIDTHS = (16, 8)
RANGES = ((0.002, 0.2), (0.001, 0.05))


def _model(seed: int = 0) -> HyperpriorSlimCAE:
    """A tiny hyperprior with trained transforms (cut from the shipped slimcae) whose hyper
    networks predict varied means and scales."""
    return tiny_hyperprior(WIDTHS, RANGES, seed)


@pytest.fixture(scope="module")
def codec():
    return Codec(_model(), "tiny-hp")


def test_round_trip_every_width_and_several_lambdas_on_odd_sizes(codec):
    for size in ((37, 53), (17, 80), (64, 31)):
        rgb = natural_like(*size, seed=sum(size))
        for width in WIDTHS:
            lo, hi = codec.lambda_range(width)
            for lmbda in (lo, (lo * hi) ** 0.5, hi):
                data = codec.encode_rgb(rgb, width, lmbda=lmbda)
                bitstream = unpack(data)
                assert len(bitstream.strings) == 2  # z, then y
                decoded, header = codec.decode_rgb(data)
                assert decoded.shape == (*size, 3) and header.width == width
                # the decoder's latent is the encoder's: ŷ = round(y - μ) + μ, exactly
                with codec.operating_point(width, header.rate):
                    coder = codec.model.latent_coder()
                    y = codec.model.analysis(torch.from_numpy(
                        _padded(rgb)[None])).numpy()[0]
                    strings = coder.encode(y)
                    assert strings == bitstream.strings
                    np.testing.assert_array_equal(coder.decode(strings, y.shape[1:]),
                                                  _expected_latent(coder, y))


def _padded(rgb):
    h, w = (-(-s // 16) * 16 for s in rgb.shape[:2])
    r = np.minimum(np.arange(h), rgb.shape[0] - 1)
    c = np.minimum(np.arange(w), rgb.shape[1] - 1)
    return np.ascontiguousarray(rgb[r[:, None], c[None, :]].transpose(2, 0, 1),
                                dtype=np.float32) / 255


def _expected_latent(coder, y):
    from slimcodec.latent import _pad

    zh, zw = coder.z_size(y.shape[1:])
    z = coder._z().quantize(coder.hyper_analysis(_pad(y, (4 * zh, 4 * zw))))
    _, means = coder._conditionals(z, y.shape[1:])
    return (np.rint(y - means) + means).astype(np.float32)


def test_rate_control_reaches_a_target(codec):
    from slimcodec.rate_control import encode_to_target

    rgb = natural_like(64, 64, seed=3)
    sizes = [len(codec.encode_rgb(rgb, 16, lmbda=lmbda)) for lmbda in (0.002, 0.2)]
    assert sizes[0] < sizes[1]
    target = 0.5 * (sizes[0] + sizes[1]) * 8 / (64 * 64)
    data, _ = encode_to_target(codec, rgb, target_bpp=target, width=16, tolerance=0.05)
    assert abs(len(data) * 8 / (64 * 64) / target - 1) <= 0.05
    assert codec.decode_rgb(data)[0].shape == rgb.shape


# -- the integer scale path ----------------------------------------------------------------


def _reference_indexes(net: IntegerScaleNet, symbols: np.ndarray) -> np.ndarray:
    """The same network in exact int64 arithmetic, one tap at a time (no BLAS)."""
    x = np.clip(symbols.astype(np.int64), -INPUT_BOUND, INPUT_BOUND)
    for i, layer in enumerate(net.layers):
        w = layer.weight.astype(np.int64)
        cout, cin, k, _ = w.shape
        p = k // 2
        _, h, wd = x.shape
        if layer.stride == 1:
            padded = np.zeros((cin, h + 2 * p, wd + 2 * p), np.int64)
            padded[:, p:p + h, p:p + wd] = x
            acc = np.zeros((cout, h, wd), np.int64)
            for ky in range(k):
                for kx in range(k):
                    acc += np.einsum("oi,ihw->ohw", w[:, :, ky, kx],
                                     padded[:, ky:ky + h, kx:kx + wd])
        else:
            s = layer.stride
            full = np.zeros((cout, s * (h - 1) + k, s * (wd - 1) + k), np.int64)
            for ky in range(k):
                for kx in range(k):
                    full[:, ky:ky + s * h:s, kx:kx + s * wd:s] += np.einsum(
                        "oi,ihw->ohw", w[:, :, ky, kx], x)
            acc = full[:, p:p + s * h, p:p + s * wd]
        acc = acc + layer.bias.astype(np.int64)[:, None, None]
        scaled = acc.astype(np.float64) * layer.multiplier[:, None, None]
        if i < len(net.layers) - 1:
            x = np.clip(np.floor(scaled + 0.5), 0, ACTIVATION_MAX).astype(np.int64)
        else:
            return np.clip(np.floor(scaled + net.offset), 0, net.levels - 1).astype(np.int32)
    raise AssertionError("unreachable")


def test_integer_scales_are_exact_integer_arithmetic():
    """The float64 BLAS evaluation equals exact int64 arithmetic, element for element, so
    no summation order, blocking or thread count can change an index."""
    model = _model(1)
    rng = np.random.default_rng(0)
    for width in WIDTHS:
        model.set_width(width)
        net = model.scale_net()
        symbols = rng.integers(-40, 41, size=(width, 5, 7))
        symbols[0, 0, 0] = 10**6  # beyond the input bound: clipped the same way by both
        np.testing.assert_array_equal(net.indexes(symbols), _reference_indexes(net, symbols))


def test_integer_scales_same_from_float32_float64_and_int_inputs_near_boundaries():
    model = _model(2)
    net = model.scale_net()
    rng = np.random.default_rng(1)
    symbols = rng.integers(-30, 31, size=(16, 6, 6))
    expected = net.indexes(symbols.astype(np.int32))
    for dtype in (np.int64, np.float32, np.float64):
        np.testing.assert_array_equal(net.indexes(symbols.astype(dtype)), expected)
    # On table boundaries: with a last multiplier of 1/4 and no offset, every accumulator
    # divisible by 4 lands exactly on an index step, where one ulp of float error in either
    # direction would change the index. The exact path agrees with int64 arithmetic there.
    last = net.layers[-1]
    quarter = type(last)(last.weight, last.bias, np.full_like(last.multiplier, 0.25),
                         last.stride)
    edge = IntegerScaleNet((*net.layers[:-1], quarter), 0.0, 1 << 20)
    t = quarter.accumulate(_hidden(edge, symbols)) * 0.25
    assert np.mean(t == np.floor(t)) > 0.2
    for dtype in (np.int32, np.float32, np.float64):
        np.testing.assert_array_equal(edge.indexes(symbols.astype(dtype)),
                                      _reference_indexes(edge, symbols))


def _hidden(net, symbols):
    x = np.clip(symbols.astype(np.float64), -INPUT_BOUND, INPUT_BOUND)
    for layer in net.layers[:-1]:
        x = np.clip(np.floor(layer.accumulate(x) * layer.multiplier[:, None, None] + 0.5),
                    0, ACTIVATION_MAX)
    return x


def test_integer_scales_same_at_one_and_two_threads(tmp_path):
    """The indexes computed by a child process with one BLAS thread and by one with two."""
    model = _model(3)
    net = model.scale_net()
    np.savez(tmp_path / "net.npz", **net.arrays())
    rng = np.random.default_rng(2)
    np.save(tmp_path / "z.npy", rng.integers(-50, 51, size=(16, 12, 12)))
    script = ("import sys, numpy as np\n"
              "from slimcodec.integer_scales import IntegerScaleNet\n"
              "net = IntegerScaleNet.from_arrays(dict(np.load(sys.argv[1])))\n"
              "np.save(sys.argv[3], net.indexes(np.load(sys.argv[2])))\n")
    results = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        out = tmp_path / f"idx{threads}.npy"
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "net.npz"),
                        str(tmp_path / "z.npy"), str(out)], env=env, check=True)
        results.append(np.load(out))
    np.testing.assert_array_equal(*results)
    np.testing.assert_array_equal(results[0], net.indexes(np.load(tmp_path / "z.npy")))


def test_integer_scales_follow_the_float_network():
    """On the shipped model, the integer network picks the table scale nearest the float
    prediction almost everywhere, and never one further than the next (an untrained net's
    random weights stray further in 8 bits; benchmarks/hyperprior.py measures the rate the
    integer path costs)."""
    from slimcodec.api import codec_for

    codec = codec_for("slimcae-hp")
    rgb = natural_like(128, 192, seed=8)
    for width in (192, 48):
        with codec.operating_point(width, codec.default_lambda(width)) as model:
            coder = model.latent_coder()
            y = model.analysis(torch.from_numpy(_padded(rgb)[None])).numpy()[0]
            z = coder._z().quantize(coder.hyper_analysis(_pad_for(y)))
            log_sigma = model.h_scale(torch.from_numpy(z[None].astype(np.float32)))[0]
            integer = model.scale_net().indexes(z)
        nearest = np.abs(np.log(SCALE_TABLE)[:, None, None, None]
                         - log_sigma.double().numpy()).argmin(0)
        diff = np.abs(integer - nearest)
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.95, (width, np.mean(diff == 0))


def test_integer_net_refuses_what_it_cannot_compute_exactly():
    layer = _model().scale_net().layers[0]
    with pytest.raises(ValueError, match="integers"):
        type(layer)(layer.weight + 0.5, layer.bias, layer.multiplier, layer.stride)
    with pytest.raises(ValueError, match="exact"):
        type(layer)(np.full((1, 200_000, 5, 5), 1.0), np.zeros(1), np.ones(1), 2)


# -- refusals and hostile files --------------------------------------------------------------


def test_factorized_and_hyperprior_files_refuse_each_other(codec):
    factorized = Codec(aux_trained(ModulatedSlimCAE(widths=WIDTHS, lambda_ranges=RANGES)).eval(),
                       "tiny-vr")
    rgb = natural_like(32, 32)
    hp_file = codec.encode_rgb(rgb, 16)
    vr_file = factorized.encode_rgb(rgb, 16)
    with pytest.raises(ModelMismatchError, match="not by tiny-vr"):
        factorized.decode_rgb(hp_file)
    with pytest.raises(ModelMismatchError, match="not by tiny-hp"):
        codec.decode_rgb(vr_file)
    # a file of the right model with the other kind's number of strings
    one = unpack(hp_file)
    forged = pack(Bitstream(one.header, one.strings[1:]))
    with pytest.raises(CorruptBitstreamError, match="1 strings, this model kind writes 2"):
        codec.decode_rgb(forged)


def test_hostile_z_strings_are_refused(codec):
    rgb = natural_like(48, 48, seed=5)
    good = unpack(codec.encode_rgb(rgb, 16))
    rng = np.random.default_rng(4)
    z, y = good.strings
    hostile = [z[:-4], z[4:], z + z[-4:], b"", bytes(8), b"\xff" * 16]
    for _ in range(60):
        flipped = bytearray(z)
        i = int(rng.integers(len(flipped)))
        flipped[i] ^= 1 << int(rng.integers(8))
        hostile.append(bytes(flipped))
        hostile.append(rng.integers(0, 256, int(rng.integers(8, 64)), dtype=np.uint8).tobytes())
    refused = 0
    for s in hostile:
        data = pack(Bitstream(good.header, (s, y)))
        try:
            codec.decode_rgb(data)
        except CorruptBitstreamError:
            refused += 1
    # a changed z gives other scales for y, whose string then fails its checks
    assert refused == len(hostile)


def test_refine_refines_y_and_z_and_never_makes_a_file_worse(codec):
    rgb = natural_like(40, 56, seed=11)
    report: dict = {}
    data = codec.encode_rgb(rgb, 16, lmbda=0.02, refine=12, report=report)
    assert report["loss_refined"] is not None and report["chosen"] in ("plain", "refined")
    plain = codec.encode_rgb(rgb, 16, lmbda=0.02)
    assert codec.rd_loss(rgb, data) <= codec.rd_loss(rgb, plain) + 1e-9
    decoded, _ = codec.decode_rgb(data)
    assert decoded.shape == rgb.shape
    # the refinement itself moves both latents
    from slimcodec.refine import refine_hyperprior

    with codec.operating_point(16, 0.02) as model:
        y = model.analysis(torch.from_numpy(_padded(rgb)[None])).numpy()[0]
        y_ref, z_ref = refine_hyperprior(model, rgb, 0.02, 12, y)
        z_plain = model.latent_coder()._z().quantize(
            model.latent_coder().hyper_analysis(y[:, :4, :4]))
    assert not np.array_equal(y_ref, y) and z_ref.shape == z_plain.shape


def test_hyperprior_refinement_takes_its_own_step_size(codec, monkeypatch):
    import slimcodec.refine

    seen = record_argument(monkeypatch, slimcodec.refine, "_optimise", "lr")
    rgb = natural_like(40, 56, seed=11)
    long = slimcodec.refine.SHORT_RUN_STEPS + 1  # where a factorized run would step 0.01
    codec.encode_rgb(rgb, 16, lmbda=0.02, refine=long)
    Codec(codec.model, refine_lr=0.25).encode_rgb(rgb, 16, lmbda=0.02, refine=2)
    assert seen == [slimcodec.refine.HYPERPRIOR_LR, 0.25]
    assert slimcodec.refine.step_size(long) != slimcodec.refine.HYPERPRIOR_LR


# -- model files and training ----------------------------------------------------------------


def test_model_file_round_trip_keeps_the_integer_scales(tmp_path, codec):
    path = tmp_path / "hp.pt"
    fp = save_model_file(codec.model, path)
    loaded = load_model_file(path)
    assert Codec(loaded).fingerprint == fp == codec.fingerprint
    for width in WIDTHS:
        loaded.set_width(width)
        codec.model.set_width(width)
        for a, b in zip(loaded.scale_net().layers, codec.model.scale_net().layers, strict=True):
            np.testing.assert_array_equal(a.weight, b.weight)
            np.testing.assert_array_equal(a.multiplier, b.multiplier)
    data = codec.encode_rgb(natural_like(40, 40), 8)
    np.testing.assert_array_equal(Codec(loaded).decode_rgb(data)[0], codec.decode_rgb(data)[0])


def test_init_from_variable_rate_copies_transforms_and_counts_z_bits():
    source = ModulatedSlimCAE(widths=WIDTHS, lambda_ranges=RANGES, rate_anchors=1,
                              latent_gain=True)
    model = HyperpriorSlimCAE(widths=WIDTHS, lambda_ranges=RANGES)
    init_from(model, source)
    for key, value in source.state_dict().items():
        if key.startswith(("g_a.", "g_s.", "modulation_", "latent_gain")):
            torch.testing.assert_close(model.state_dict()[key], value)
    with pytest.raises(ValueError, match="slimcae-vr model with a latent gain"):
        init_from(HyperpriorSlimCAE(widths=WIDTHS, lambda_ranges=RANGES),
                  sliced_slimcae(WIDTHS))
    from slimcodec.training.loss import MultiWidthRDLoss

    model.train()
    out = MultiWidthRDLoss(model, [0.01, 0.01])(torch.rand(2, 3, 64, 64))
    with torch.no_grad():
        model.set_width(16)
        parts = model(torch.rand(2, 3, 64, 64))["likelihoods"]
    assert set(parts) == {"y", "z"} and torch.isfinite(out["loss"])


@pytest.fixture(scope="module")
def bundle(codec, tmp_path_factory):
    from slimcodec_edge.onnx_export import export_bundle

    root = tmp_path_factory.mktemp("hp") / "bundle"
    export_bundle(codec.model, root, "tiny-hp")
    return root


def test_edge_and_slimcodec_cross_decode_hyperprior_files_at_every_width(codec, bundle):
    from slimcodec_edge.edge import EdgeCodec

    edge = EdgeCodec(bundle)
    assert edge.bundle.latent_kind == "hyperprior"
    rgb = natural_like(45, 70, seed=9)
    for width in WIDTHS:
        for lmbda in codec.lambda_range(width):
            for writer, reader in ((codec, edge), (edge, codec)):
                data = writer.encode_rgb(rgb, width, lmbda=lmbda)
                assert len(unpack(data).strings) == 2
                ours, _ = reader.decode_rgb(data)
                theirs, _ = writer.decode_rgb(data)
                diff = np.abs(ours.astype(int) - theirs.astype(int))
                assert diff.max() <= 1 and (diff > 0).mean() < 0.01
            # the same symbols and scale indexes: the latents differ only by the means'
            # float arithmetic, a tiny fraction of a level
            y_edge, _ = edge.decode_latent(data)
            with codec.operating_point(width, lmbda) as m:
                y_torch = m.latent_coder().decode(unpack(data).strings, y_edge.shape[1:])
            assert np.abs(y_edge - y_torch).max() < 1e-3


def test_int8_hyperprior_bundle_quantises_the_coder_and_shares_its_weights(codec, tmp_path):
    """--int8: the coder's networks get int8 graphs too, h_μ's with float activations so that
    files of the float graphs decode with the int8 ones around nearly the very means they
    were coded around; a narrower width's quantised weights are slices of the widest's (so
    the lean pool stores them once), and the int8-only bundle writes the files the full
    bundle's int8 graphs write, with no float graph left."""
    import onnx
    from onnx import numpy_helper
    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.onnx_export import export_bundle
    from slimcodec_edge.quantize import _int8_weights

    (tmp_path / "cal").mkdir()
    held_out = natural_like(64, 80, seed=3)
    Image.fromarray(natural_like(64, 80)).save(tmp_path / "cal" / "a.png")
    Image.fromarray(held_out).save(tmp_path / "cal" / "b.png")  # not calibrated on
    export_bundle(codec.model, tmp_path / "b", "tiny-hp", calibration=tmp_path / "cal",
                  calibration_images=1)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["int8"]["measured_on"] == {"images": 1, "held_out": True}
    for w in WIDTHS:
        cost = manifest["int8"]["widths"][str(w)]
        top = cost["top"]  # and at the top of the width's λ range, where the latent is largest
        assert top["lmbda"] > cost["lmbda"]
        for point in (cost, top):
            assert abs(point["psnr_cross"] - point["psnr_float"]) < 0.5

    def weights(w: int, kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
        graph = onnx.load(str(tmp_path / "b" / manifest["graphs"][str(w)][f"{kind}_int8"]
                              ["file"]))
        return [tuple(numpy_helper.to_array(t) for t in q[:2])
                for q in _int8_weights(graph)]

    for kind in ("analysis", "synthesis", "hyper_analysis", "hyper_mean"):
        wide, narrow = (weights(w, kind) for w in WIDTHS)
        assert wide and len(wide) == len(narrow)
        for (wq, ws), (nq, ns) in zip(wide, narrow, strict=True):
            assert np.array_equal(nq, wq[tuple(slice(0, n) for n in nq.shape)]), kind
            assert np.array_equal(ns, ws[: len(ns)]), kind
    floats, ints = EdgeCodec(tmp_path / "b"), EdgeCodec(tmp_path / "b", int8=True)
    # The report measured the image it was not calibrated on.
    cost = manifest["int8"]["widths"]["8"]
    data = floats.encode_rgb(held_out, 8, lmbda=cost["lmbda"])
    assert cost["bpp_float"] == 8 * len(data) / held_out[..., 0].size
    assert cost["psnr_float"] == pytest.approx(psnr(held_out, floats.decode_rgb(data)[0]))
    rgb = natural_like(45, 70, seed=9)
    for lmbda in codec.lambda_range(8):
        data = floats.encode_rgb(rgb, 8, lmbda=lmbda)
        # The same symbols around nearly the same means.
        y_int8, y_float = ints.decode_latent(data)[0], floats.decode_latent(data)[0]
        assert np.abs(y_int8 - y_float).max() < 0.01
        crossed, _ = ints.decode_rgb(data)
        assert np.abs(crossed.astype(int) - floats.decode_rgb(data)[0].astype(int)).mean() < 2
    # h_μ's means follow the float ones however far beyond the calibration an image takes
    # them: its activations are float, nothing clips them at the ranges it reached.
    hyper = np.random.default_rng(0).normal(0, 1, (1, 8, 3, 4)).astype(np.float32)
    for scale in (1, 1000):
        means = [codec.session(8, "hyper_mean").run(None, {"input": scale * hyper})[0]
                 for codec in (floats, ints)]
        assert np.abs(means[1] - means[0]).max() < 0.02 * np.abs(means[0]).max()
    export_bundle(codec.model, tmp_path / "c", "tiny-hp", calibration=tmp_path / "cal",
                  calibration_images=1, int8_only=True)
    only = EdgeCodec(tmp_path / "c")
    for kind in ("analysis", "synthesis", "hyper_analysis", "hyper_mean"):
        assert not (tmp_path / "c" / f"{kind}-8.onnx").exists()
    assert only.encode_rgb(rgb, 8) == ints.encode_rgb(rgb, 8)
    assert only.decode_rgb(data)[0].tobytes() == crossed.tobytes()
    sizes = {b: sum(f.stat().st_size for f in (tmp_path / b).iterdir()) for b in "bc"}
    assert sizes["c"] < sizes["b"]
    # A 0.5.0 int8 bundle (h_μ's activations quantised; its manifest says nothing of it)
    # still decodes, with a warning that names the fault, and only where int8 graphs run.
    for name in "bc":
        stale = tmp_path / f"{name}-0.5.0"
        shutil.copytree(tmp_path / name, stale)
        old = json.loads((stale / "manifest.json").read_text())
        del old["int8"]["weights_only"]
        (stale / "manifest.json").write_text(json.dumps(old))
        with pytest.warns(StaleBundleWarning, match="h_μ clips the means.*export the bundle"):
            assert EdgeCodec(stale, int8=name == "b").decode_rgb(data)[0].tobytes() == \
                crossed.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EdgeCodec(tmp_path / "b-0.5.0"), EdgeCodec(tmp_path / "b", int8=True)
        EdgeCodec(tmp_path / "c")


def test_factorized_bundle_refuses_hyperprior_files_and_the_reverse(codec, bundle, tmp_path):
    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.onnx_export import export_bundle

    factorized = Codec(aux_trained(ModulatedSlimCAE(widths=WIDTHS, lambda_ranges=RANGES)).eval(),
                       "tiny-vr")
    export_bundle(factorized.model, tmp_path / "vr", "tiny-vr")
    rgb = natural_like(32, 32)
    with pytest.raises(ModelMismatchError, match="not by tiny-vr"):
        EdgeCodec(tmp_path / "vr").decode_rgb(codec.encode_rgb(rgb, 16))
    with pytest.raises(ModelMismatchError, match="not by tiny-hp"):
        EdgeCodec(bundle).decode_rgb(factorized.encode_rgb(rgb, 16))


def test_adapters_with_their_own_z_densities_code_and_cross_decode(codec, tmp_path):
    """An ``adapters`` adapter with its own entropy models (for a hyperprior: the densities
    of z; the hyper networks stay the source's) codes, decodes in both runtimes, and leaves
    the source's files bit for bit as they were."""
    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.onnx_export import export_bundle

    from slimcodec.adaptation import adapt

    data_dir = tmp_path / "screens"
    data_dir.mkdir()
    for i in range(3):
        Image.fromarray(natural_like(64, 64, seed=20 + i)).save(data_dir / f"{i}.png")
    source_before = codec.encode_rgb(natural_like(40, 40, seed=1), 16)
    result = adapt(codec.model, data_dir, "adapters", "screen", steps=3, patch=32, batch=2,
                   entropy_models=True, progress=False)
    adapter = result.adapter
    assert len(adapter.bottlenecks) == len(WIDTHS)
    adapted = Codec(codec.model, "tiny-hp", adapters=[adapter])
    assert adapted.encode_rgb(natural_like(40, 40, seed=1), 16) == source_before
    rgb = natural_like(48, 40, seed=2)
    root = export_bundle(codec.model, tmp_path / "bundle", "tiny-hp", adapters=[adapter])
    edge = EdgeCodec(root)
    for width in WIDTHS:
        for writer, reader in ((adapted, edge), (edge, adapted)):
            data = writer.encode_rgb(rgb, width, domain="screen")
            assert unpack(data).header.domain == adapter.domain_id
            ours, _ = reader.decode_rgb(data)
            theirs, _ = writer.decode_rgb(data)
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # the gates that pick (auto) or weigh (mix) the adapters, decoded by the other runtime
    for gate in ("auto", "mix"):
        data = adapted.encode_rgb(rgb, 16, domain=gate)
        ours, _ = edge.decode_rgb(data)
        theirs, _ = adapted.decode_rgb(data)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # int8: the adapter's graphs, its coder networks included, quantised and calibrated too
    Image.fromarray(natural_like(64, 80)).save(tmp_path / "cal.png")
    root = export_bundle(codec.model, tmp_path / "int8", "tiny-hp", adapters=[adapter],
                         calibration=tmp_path / "cal.png", calibration_images=1)
    graphs = json.loads((root / "manifest.json").read_text())["domains"][
        str(adapter.domain_id)]["graphs"]
    assert all("hyper_analysis_int8" in graphs[str(w)] for w in WIDTHS)
    ints = EdgeCodec(root, int8=True)
    data = ints.encode_rgb(rgb, 8, domain="screen")
    decoded, _ = ints.decode_rgb(data)
    assert np.abs(decoded.astype(int) - adapted.decode_rgb(data)[0].astype(int)).mean() < 3


def test_profile_counts_the_hyper_networks(codec, bundle):
    from slimcodec_edge.profile import profile_model

    result = profile_model(codec.model, "tiny-hp", size=(64, 96), repeats=1, bundle=bundle)
    w16 = result["widths"][0]
    latent = (4, 6)
    with codec.model.using_width(16):
        integer = codec.model.coder_integer_macs(latent)
    # the integer h_σ: 16·16·25 MACs per z position (1x2), 16·16·25 per position after one
    # upsampling (2x4), 16·16·9 per latent position (4x8)
    assert integer == 16 * 16 * 25 * 2 + 16 * 16 * 25 * 8 + 16 * 16 * 9 * 32
    assert w16["decoder"]["coder_macs"] > integer
    assert w16["encoder"]["coder_macs"] > w16["decoder"]["coder_macs"]  # h_a runs there


def test_hostile_hyperprior_files_end_in_typed_errors_in_both_runtimes(codec, bundle, tmp_path):
    """Quick fuzz (the long run: benchmarks/fuzz.py --model): hostile z and y strings and
    headers, every one a typed error or an image, in slimcodec and in the edge runtime."""
    from helpers import assert_hostile_files_typed

    assert_hostile_files_typed(codec, bundle, tmp_path, seed=2)


def test_hyper_transforms_in_row_bands_give_the_whole_images_result(codec):
    """Bands of 2 rows of z (a tall image): the same indexes, bit for bit, and the same
    strings as one pass over the whole latent."""
    from dataclasses import replace

    rgb = natural_like(400, 48, seed=4)
    with codec.operating_point(16, 0.05) as model:
        whole = replace(model.latent_coder(), band=1 << 30)
        banded = replace(whole, band=2)
        y = model.analysis(torch.from_numpy(_padded(rgb)[None])).numpy()[0]
        z = whole._z().quantize(whole.hyper_analysis(_pad_for(y)))
        np.testing.assert_array_equal(banded.scale_net.indexes(z),
                                      whole.scale_net.indexes(z))
        a, b = whole._conditionals(z, y.shape[1:]), banded._conditionals(z, y.shape[1:])
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], atol=1e-4)
        assert whole.encode(y)[0] == banded.encode(y)[0]  # z's symbols
        strings = banded.encode(y)
        np.testing.assert_allclose(whole.decode(strings, y.shape[1:]),
                                   banded.decode(strings, y.shape[1:]), atol=1e-4)


def _pad_for(y):
    from slimcodec.latent import _pad

    return _pad(y, tuple(-(-s // 4) * 4 for s in y.shape[1:]))


def _stage_run(tmp_path, init, stage: str, seed: int, **options):
    """``init`` trained for 3 steps of ``slimcodec train --stage STAGE`` (``options``: more
    of its settings) on two images, and the same run's model at step 0: (start, trained)."""
    from dataclasses import replace

    from slimcodec.training import TrainConfig, train

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(natural_like(64, 64, seed=seed + i)).save(data / f"{i}.png")
    save_model_file(init, tmp_path / "init.pt")
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), arch="slimcae-hp",
                      init=str(tmp_path / "init.pt"), widths=list(WIDTHS),
                      lambda_ranges=[v for r in RANGES for v in r], patch=64, batch=2,
                      steps=3, lr=1e-3, checkpoint_every=1000, stage=stage, **options)
    trained = load_model_file(train(cfg).export({})).eval()
    start = load_model_file(train(replace(cfg, out=str(tmp_path / "run0"), steps=0))
                            .export({})).eval()
    return start, trained


def test_entropy_stage_trains_the_hyperprior_alone(tmp_path):
    from slimcodec.training import TrainConfig

    vr = tiny_variable_rate(WIDTHS, RANGES)
    start, trained = _stage_run(tmp_path, vr, "entropy", seed=30)
    before, after = start.state_dict(), trained.state_dict()
    for key, value in before.items():
        if key.startswith(("g_a.", "g_s.", "modulation_", "latent_gain")):
            torch.testing.assert_close(after[key], value)
            torch.testing.assert_close(value, vr.state_dict()[key])
    for key in ("h_scale.layers.0.weight", "h_mean.0.weight", "h_a.0.weight"):
        assert not torch.equal(after[key], before[key]), key
    with pytest.raises(ValueError, match="--stage entropy trains a hyperprior"):
        TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "x"), arch="slimcae-vr",
                    stage="entropy")


def test_encoder_stage_trains_the_encoder_alone_and_old_strings_decode_the_same(tmp_path):
    start, trained = _stage_run(tmp_path, _model(), "encoder", seed=40,
                                rate_quantizer="ste", lambda_per="image")
    encoder = HyperpriorSlimCAE.ENCODER_PARAMETERS
    before, after = start.state_dict(), trained.state_dict()
    for key, value in before.items():
        if not key.startswith(encoder):
            assert torch.equal(after[key], value), key
    for key in ("g_a.0.weight", "modulation_a.0.out.weight", "h_a.0.weight"):
        assert not torch.equal(after[key], before[key]), key
    x = to_tensor(natural_like(48, 64, seed=42))
    for width in WIDTHS:
        for model in (start, trained):
            model.set_width(width)
            model.set_lambda(model.lambda_range(width)[0])
        old = start.compress(x)
        assert torch.equal(trained.decompress(**old)["x_hat"], start.decompress(**old)["x_hat"])
        assert not torch.equal(trained.analysis(x), start.analysis(x))  # the encoder did change


def test_decoder_stage_trains_the_decoder_alone_and_writes_the_same_strings(tmp_path):
    from slimcodec.training import TrainConfig

    start, trained = _stage_run(tmp_path, _model(), "decoder", seed=50,
                                rate_quantizer="ste", lambda_per="image")
    before, after = start.state_dict(), trained.state_dict()
    for key, value in before.items():  # the synthesis alone: not even the latent gain
        if not key.startswith(("g_s.", "modulation_s.")):
            assert torch.equal(after[key], value), key
    for key in ("g_s.1.weight", "modulation_s.0.out.weight"):
        assert not torch.equal(after[key], before[key]), key
    x = to_tensor(natural_like(48, 64, seed=52))
    for width in WIDTHS:
        for model in (start, trained):
            model.set_width(width)
            model.set_lambda(model.lambda_range(width)[-1])
        old = start.compress(x)
        assert trained.compress(x)["strings"] == old["strings"]
        assert not torch.equal(trained.decompress(**old)["x_hat"],
                               start.decompress(**old)["x_hat"])
    for wrong in ({"rate_quantizer": "noise"}, {"decoder_quantizer": "noise"}):
        with pytest.raises(ValueError, match="--stage decoder trains on the latent"):
            TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "x"),
                        arch="slimcae-hp", stage="decoder",
                        **{"rate_quantizer": "ste", **wrong})


def test_command_line_with_a_hyperprior_model_file(codec, tmp_path, capsys):
    from slimcodec.cli import main

    save_model_file(codec.model, tmp_path / "hp.pt")
    Image.fromarray(natural_like(37, 53, seed=6)).save(tmp_path / "in.png")
    model = str(tmp_path / "hp.pt")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.slc"),
                 "--model", model, "--quality", "60", "--width", "8"]) == 0
    assert main(["decompress", str(tmp_path / "a.slc"), "-o", str(tmp_path / "a.png"),
                 "--model", model]) == 0
    assert Image.open(tmp_path / "a.png").size == (53, 37)
    capsys.readouterr()
    assert main(["info", str(tmp_path / "a.slc"), "--json"]) == 0
    import json

    assert len(json.loads(capsys.readouterr().out)["string_bytes"]) == 2  # z, then y
    assert main(["eval", str(tmp_path / "in.png"), "--model", model, "--widths", "8",
                 "--quiet"]) == 0


def test_narrow_hyper_syntheses_code_save_and_cross_decode(codec, tmp_path):
    """``hyper_hidden=0.5``: h_μ and h_σ have half the width's channels inside, their
    integer net counts those MACs, and the model codes, saves and exports like any other."""
    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.onnx_export import export_bundle

    model = HyperpriorSlimCAE(widths=WIDTHS, lambda_ranges=RANGES, hyper_hidden=0.5)
    init_from(model, codec.model)  # transforms, h_a and z's densities; new syntheses
    for key, value in codec.model.state_dict().items():
        if key.startswith(("g_a.", "g_s.", "h_a.", "entropy_bottlenecks.")):
            torch.testing.assert_close(model.state_dict()[key], value)
    with torch.no_grad():
        for p in (*model.h_scale.parameters(), *model.h_mean.parameters()):
            p.normal_(0, 0.15)
    model.update(force=True)
    model.eval()
    with model.using_width(8):
        shapes = [layer.weight.shape for layer in model.scale_net().layers]
        assert shapes == [(4, 8, 5, 5), (4, 4, 5, 5), (8, 4, 3, 3)]
        assert model.coder_integer_macs((4, 6)) == 4 * 8 * 25 * 2 + 4 * 4 * 25 * 8 + 8 * 4 * 9 * 32
    narrow = Codec(model, "narrow-hp")
    rgb = natural_like(37, 45, seed=3)
    path = tmp_path / "narrow.pt"
    save_model_file(model, path)
    loaded = Codec(load_model_file(path))
    assert loaded.model.hyper_hidden == 0.5 and loaded.fingerprint == narrow.fingerprint
    export_bundle(model, tmp_path / "bundle", "narrow-hp")
    edge = EdgeCodec(tmp_path / "bundle")
    for width in WIDTHS:
        data = narrow.encode_rgb(rgb, width)
        ours, _ = narrow.decode_rgb(data)
        np.testing.assert_array_equal(loaded.decode_rgb(data)[0], ours)
        theirs, _ = edge.decode_rgb(data)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert "hyper_hidden" not in codec.model.config  # models written before it: unchanged


def test_lean_bundle_stores_the_scale_networks_once(tmp_path):
    """A lean bundle's narrower widths read their integer scale networks (and the Gaussian
    tables) as slices of the widest's, and code as a full bundle does."""
    from test_edge import lean_and_full_code_alike

    manifest = lean_and_full_code_alike(_model(), tmp_path)
    sliced = manifest["table_slices"]
    assert any(k.endswith("scales_0.weight") for k in sliced)
    assert any(k.endswith("y_cdfs") for k in sliced)


def test_ste_rate_prices_the_symbols_the_coder_sends():
    """In training with ``ste_rate``, ŷ's likelihoods are the ones the coder uses (eval's:
    ẑ and ŷ rounded), not the noisy relaxation's, and the rate still trains every hyper
    network through the rounding."""
    model = _model(seed=3)
    x = torch.from_numpy(natural_like(64, 96, seed=5).transpose(2, 0, 1)[None] / 255.0).float()
    model.set_width(WIDTHS[0])
    model.set_lambda(0.02)
    with torch.no_grad():
        coded = model(x)["likelihoods"]["y"]
    model.train()
    model.h_scale.momentum = 0.0  # leave the integer network's calibration as it is
    noisy = model(x)["likelihoods"]["y"]
    assert not torch.allclose(noisy, coded, atol=1e-3)  # the relaxation prices otherwise
    model.ste_rate = True
    try:
        out = model(x)
        torch.testing.assert_close(out["likelihoods"]["y"], coded, atol=1e-5, rtol=1e-4)
        model.zero_grad()
        (-torch.log2(out["likelihoods"]["y"]).sum()).backward()
        # (the hyper-syntheses' last layers: ẑ's symbols, their first layers' inputs, may
        # all be 0 in a model this small)
        for name in ("h_a.0.weight", "h_mean.4.weight", "h_scale.layers.4.weight"):
            grad = model.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, name
    finally:
        model.ste_rate = False
        model.eval()


def test_rate_quantizer_is_checked_and_kept_across_resume(tmp_path):
    from slimcodec.training import TrainConfig, train

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(natural_like(64, 64, seed=31)).save(data / "0.png")
    base = dict(data=str(data), out=str(tmp_path / "run"), arch="slimcae-hp",
                widths=list(WIDTHS), lambda_ranges=[v for r in RANGES for v in r], patch=64,
                batch=2, lr=1e-3, checkpoint_every=2)
    assert train(TrainConfig(steps=2, rate_quantizer="ste", **base)).model.ste_rate
    with pytest.raises(ValueError, match="cannot resume: rate_quantizer"):
        train(TrainConfig(steps=4, **base), resume=True)
    with pytest.raises(ValueError, match="--rate-quantizer ste prices a hyperprior"):
        TrainConfig(**{**base, "arch": "slimcae-vr", "rate_anchors": 1}, rate_quantizer="ste")


def _with_modulations(model: HyperpriorSlimCAE) -> HyperpriorSlimCAE:
    """``model`` with modulations that vary with λ (a new one's are the identity)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for modulation in (*model.modulation_a, *model.modulation_s):
            modulation.out.weight.normal_(0, 0.3)
    return model


def test_moved_lambda_bounds_compute_what_the_old_ones_did():
    """``move_lambda_bounds`` (training a higher top from a trained model) rewrites the
    modulations so that every λ of the old bounds gives the same latent and image."""
    model = _with_modulations(_model()).eval()
    moved = copy.deepcopy(model)
    lo, hi = model.lambda_bounds
    moved.move_lambda_bounds((lo * hi / 0.8, 0.8))
    assert moved.lambda_bounds == (lo * hi / 0.8, 0.8)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    # float32 rounding apart (the rewritten modulations reach the same values by another
    # sum: 1.5e-5 on one CPU's kernels), the same latent and image
    close = {"rtol": 1e-4, "atol": 1e-4}
    with torch.no_grad():
        for width in WIDTHS:
            model.set_width(width)
            moved.set_width(width)
            for lmbda in (*model.lambda_range(width), 0.01):
                lam = torch.tensor([lmbda])
                y = model.analysis(x, lam)
                torch.testing.assert_close(moved.analysis(x, lam), y, **close)
                y_hat = torch.round(y)
                torch.testing.assert_close(moved.synthesis(y_hat, lam),
                                           model.synthesis(y_hat, lam), **close)
    with pytest.raises(ValueError, match="keep the middle"):
        copy.deepcopy(model).move_lambda_bounds((lo, 0.8))
    with pytest.raises(ValueError, match="contain every width's range"):
        copy.deepcopy(model).move_lambda_bounds((0.01, 0.02))


def test_init_with_other_lambda_ranges_needs_and_moves_to_other_bounds():
    source = _with_modulations(_model())
    wider = ((0.002, 0.8), (0.001, 0.05))
    lo, hi = source.lambda_bounds
    with pytest.raises(ValueError, match="λ ranges"):  # the same bounds: ranges must match
        init_from(HyperpriorSlimCAE(widths=WIDTHS, lambda_ranges=((0.002, 0.1), RANGES[1]),
                                    lambda_bounds=(lo, hi)), source)
    with pytest.raises(ValueError, match="keep the middle"):  # bounds from the ranges alone
        init_from(HyperpriorSlimCAE(widths=WIDTHS, lambda_ranges=wider), source)
    model = HyperpriorSlimCAE(widths=WIDTHS, lambda_ranges=wider,
                              lambda_bounds=(lo * hi / 0.8, 0.8))
    init_from(model, source)
    assert source.lambda_bounds == (lo, hi)  # the source is left as it was
    model.update(force=True)
    source.eval().update(force=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for m in (model.eval(), source):
            m.set_width(WIDTHS[0])
            m.set_lambda(0.05)
        torch.testing.assert_close(model(x)["x_hat"], source(x)["x_hat"], rtol=1e-4, atol=1e-4)
