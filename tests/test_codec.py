import numpy as np
import pytest
import torch
from helpers import SMALL_WIDTHS, aux_trained, natural_like
from PIL import Image

import slimcodec
from slimcodec.bitstream import Bitstream, Header, RateKind, pack, unpack
from slimcodec.codec import Codec
from slimcodec.errors import (
    CorruptBitstreamError,
    ModelFileError,
    ModelMismatchError,
    UnknownModelError,
)
from slimcodec.models import SlimCAE
from slimcodec.zoo import (
    create_model,
    find_by_fingerprint,
    fingerprint,
    list_models,
    load_model_file,
    model_meta,
    save_model_file,
)


@pytest.fixture
def codec(small_model):
    return Codec(small_model, "small")


def test_fingerprint_tracks_weights_and_config(small_model):
    fp = fingerprint(small_model)
    assert len(fp) == 8 and fingerprint(small_model) == fp
    with torch.no_grad():
        small_model.g_s[1].bias[0] += 1e-3
    assert fingerprint(small_model) != fp
    torch.manual_seed(0)
    other_gdn = SlimCAE(SMALL_WIDTHS, gdn="slim")
    assert fingerprint(other_gdn) != fp


def test_model_file_round_trip(tmp_path, small_model):
    path = tmp_path / "m.pt"
    fp = save_model_file(small_model, path, meta={"note": "x"})
    loaded = load_model_file(path)
    assert fingerprint(loaded) == fp and loaded.config == small_model.config
    img = natural_like(20, 30)
    assert Codec(loaded).encode_rgb(img, 8) == Codec(small_model).encode_rgb(img, 8)


def test_codec_load_reads_the_model_file_once(tmp_path, small_model, monkeypatch):
    """The model and its metadata (the training λ a codec weighs refinement with) come from
    one read of the file: reading 47 MB twice was a third of the default's load time."""
    path = tmp_path / "m.pt"
    save_model_file(small_model, path, meta={"lambdas": [0.01, 0.002]})
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a) or real_load(*a, **k))
    codec = Codec.load(path)
    assert len(reads) == 1
    assert codec.rd_lambdas == [0.01, 0.002] == codec.model.file_meta["lambdas"]


def test_model_files_store_byte_planes_and_version_1_still_loads(tmp_path, small_model):
    """Version 2 stores large tensors as byte planes (the same bits: same fingerprint);
    a version 1 file, values interleaved, loads to the same model."""
    from slimcodec.zoo.checkpoint import _from_planes

    path = tmp_path / "m.pt"
    fp = save_model_file(small_model, path)
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == 2 and "g_a.0.weight" in payload["planes"]
    state = {**payload["state_dict"],
             **{k: _from_planes(v) for k, v in payload["planes"].items()}}
    v1 = {k: v for k, v in payload.items() if k != "planes"}
    torch.save(dict(v1, version=1, state_dict=state), tmp_path / "v1.pt")
    assert fingerprint(load_model_file(tmp_path / "v1.pt")) == fp == fingerprint(
        load_model_file(path))


def test_damaged_model_files(tmp_path, small_model):
    path = tmp_path / "m.pt"
    save_model_file(small_model, path)
    payload = torch.load(path, weights_only=True)
    payload["planes"]["g_a.0.weight"]["bytes"][-1, 0] ^= 1  # one value's top byte
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="fingerprint"):
        load_model_file(path)
    payload["meta"] = ["not", "a", "dict"]
    torch.save(payload, path)
    for read in (load_model_file, model_meta):
        with pytest.raises(ModelFileError, match="no valid 'meta'"):
            read(path)
    payload["planes"]["g_a.0.weight"]["shape"] = [3]
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="bad byte planes"):
        load_model_file(path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelFileError):
        load_model_file(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ModelFileError, match="not a slimcodec model file"):
        load_model_file(tmp_path / "foreign.pt")


def test_registry():
    assert "slimcae" in list_models() and "slimcae" in list_models(pretrained=True)
    model = create_model("slimcae", widths=(32, 16), gdn="switch")
    assert model.widths == (32, 16) and model.gdn == "switch"
    with pytest.raises(UnknownModelError, match="unknown model"):
        create_model("nope")
    with pytest.raises(ValueError, match="fixed config"):
        create_model("slimcae", pretrained=True, widths=(8,))
    pretrained = create_model("slimcae", pretrained=True)
    assert pretrained.widths == (192, 144, 96, 72, 48)
    assert find_by_fingerprint(fingerprint(pretrained)) == "slimcae"
    assert find_by_fingerprint(bytes(8)) is None


def test_codec_rejects_files_of_another_model(codec):
    data = codec.encode(natural_like(20, 20), 12)
    torch.manual_seed(1)
    other = Codec(aux_trained(SlimCAE(SMALL_WIDTHS)), "other")
    with pytest.raises(ModelMismatchError, match="not by other"):
        other.decode(data)


def test_codec_rejects_headers_it_cannot_serve(codec):
    def container(**fields):
        h = Header(codec.fingerprint, fields.pop("width", 16), (16, 16), **fields)
        return pack(Bitstream(h, (b"\x00\x00\x00\x00",)))

    with pytest.raises(CorruptBitstreamError, match="no width 10"):
        codec.decode(container(width=10))
    with pytest.raises(ModelMismatchError, match="single-rate"):
        codec.decode(container(rate_kind=RateKind.LAMBDA, rate=0.01))
    with pytest.raises(ModelMismatchError, match=r"adapter of domain id 2, which .* does not hold"):
        codec.decode(container(domain=2))


def test_grayscale_source_decodes_to_grayscale(codec):
    gray = Image.fromarray(natural_like(24, 40)[..., 1], "L")
    data = codec.encode(gray, 16)
    assert unpack(data).header.grayscale
    out = codec.decode(data)
    assert out.mode == "L" and out.size == (40, 24)


def test_the_synthesis_runs_on_channels_last_tensors(codec):
    """oneDNN's own layout, faster on a CPU (benchmarks/coding_speed.py); the encoder's
    analysis is left as it was, so files keep their bytes."""
    layouts = []
    hook = codec.model.g_s[0].register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        codec.decode(codec.encode(natural_like(40, 56), 16))
    finally:
        hook.remove()
    assert layouts and all(layouts)


def test_codec_rejects_bad_width_and_giant_images(codec):
    with pytest.raises(slimcodec.WidthError, match=r"width 10 is not one of small's: \[16"):
        codec.encode(natural_like(8, 8), 10)
    big = np.zeros((1, 40000, 3), np.uint8)
    with pytest.raises(slimcodec.ImageError, match="each side"):
        codec.encode(big)


def test_public_api_with_pretrained_default(tmp_path):
    img = natural_like(40, 56)
    data = slimcodec.compress(img, width=48)
    header = slimcodec.read_header(data)
    assert header.width == 48 and header.image_size == (40, 56)
    out = slimcodec.decompress(data)  # model found from the fingerprint
    assert out.size == (56, 40) and out.mode == "RGB"
    path = tmp_path / "img.png"
    Image.fromarray(img).save(path)
    assert slimcodec.compress(path, width=48) == data


def test_public_api_unregistered_writer(small_model):
    data = Codec(small_model).encode(natural_like(16, 16))
    with pytest.raises(UnknownModelError, match="not registered"):
        slimcodec.decompress(data)
    assert slimcodec.decompress(data, model=Codec(small_model)).size == (16, 16)


def test_set_width_then_encode_codes_at_that_width(codec):
    img = natural_like(24, 24)
    codec.model.set_width(12)
    try:
        assert unpack(codec.encode(img)).header.width == 12
        assert unpack(codec.encode(img, 16)).header.width == 16
        assert codec.model.width == 12  # an explicit width does not move the model's
    finally:
        codec.model.set_width(16)
    assert unpack(codec.encode(img)).header.width == 16


def test_an_untrained_model_does_not_code_silently():
    model = create_model("slimcae", widths=(16, 8))
    with pytest.raises(slimcodec.UntrainedModelError, match="untrained weights"):
        Codec(model)
    data = Codec(model, allow_untrained=True).encode(natural_like(16, 16))
    assert unpack(data).header.width == 16
    assert Codec(aux_trained(model)).encode(natural_like(16, 16))  # one aux step suffices


def test_public_api_quality_targets_and_paths(tmp_path):
    img = natural_like(64, 96, seed=4)
    low = slimcodec.compress(img, quality=10)
    high = slimcodec.compress(img, quality=90)
    assert len(low) < len(high)
    assert slimcodec.read_header(low).width == 192  # the default model's widest
    data = slimcodec.compress(img, target_bpp=0.5, width=96)
    bpp = 8 * len(data) / (64 * 96)
    assert abs(bpp - 0.5) <= 0.01 and slimcodec.read_header(data).width == 96
    with pytest.raises(slimcodec.RateError, match=r"width 96 reaches at most 0\.8"):
        slimcodec.compress(img, target_bpp=1.5, width=96, scale=1)
    upsampled = slimcodec.compress(img, target_bpp=1.5, width=96)  # the scale, unless told
    assert slimcodec.read_header(upsampled).coded_size is not None
    assert abs(8 * len(upsampled) / (64 * 96) - 1.5) <= 0.015
    sharp = slimcodec.compress(img, target_psnr=26.0, width=144)
    assert slimcodec.read_header(sharp).width == 144
    path = tmp_path / "x.slc"
    path.write_bytes(data)
    assert np.array_equal(np.asarray(slimcodec.decompress(path)),
                          np.asarray(slimcodec.decompress(str(path))))
    assert slimcodec.decompress(path).size == (96, 64)
    with pytest.raises(slimcodec.RateError,
                       match=r"quality \(--quality\) and target_bpp \(--target-bpp\)"):
        slimcodec.compress(img, quality=50, target_bpp=0.5)


def test_half_storage_loads_back_bit_for_bit(tmp_path, small_model):
    """A model rounded to float16 values and saved with ``half=True``: about half the file,
    the same fingerprint and files; tensors that are not float16-exact stay float32."""
    from slimcodec.zoo.checkpoint import read_model_file, round_to_half

    full = tmp_path / "full.pt"
    save_model_file(small_model, full)
    round_to_half(small_model)
    half = tmp_path / "half.pt"
    fp = save_model_file(small_model, half, half=True)
    assert fp == fingerprint(small_model)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    stored = read_model_file(half)["state_dict"]
    assert any(t.dtype == torch.float16 for t in stored.values())
    for key, value in small_model.state_dict().items():
        if stored[key].dtype == torch.float16:
            assert torch.equal(stored[key].float(), value), key
        else:
            assert torch.equal(stored[key], value), key
    loaded = load_model_file(half)
    assert fingerprint(loaded) == fp
    img = natural_like(24, 40)
    assert Codec(loaded).encode_rgb(img, 8) == Codec(small_model).encode_rgb(img, 8)


def test_the_catalog_describes_the_shipped_weights():
    """slimcodec.zoo.catalog (what the light commands read, without torch) against the
    registry: the same models, fingerprints, widths and kinds; the default among them."""
    from slimcodec.models import HyperpriorSlimCAE, ModulatedSlimCAE
    from slimcodec.zoo.catalog import DEFAULT_MODEL, SHIPPED

    assert set(SHIPPED) == set(list_models(pretrained=True)) and DEFAULT_MODEL in SHIPPED
    for name, entry in SHIPPED.items():
        model = create_model(name, pretrained=True)
        assert fingerprint(model).hex() == entry["fingerprint"], name
        assert find_by_fingerprint(fingerprint(model)) == name
        assert list(model.widths) == entry["widths"]
        kind = ("mean-scale hyperprior" if isinstance(model, HyperpriorSlimCAE) else
                "factorized prior, variable" if isinstance(model, ModulatedSlimCAE) else
                "factorized prior, one rate")
        assert entry["kind"].startswith(kind), name


def test_eval_times_are_medians_over_repeats(codec, monkeypatch):
    """`evaluate(..., repeats=3)`: each point's encode and decode times are the medians of
    three runs (a clock that makes the first run slow: the mean would show it)."""
    import itertools

    from slimcodec import evaluate as ev

    # per run: start, end of encoding, end of decoding; runs of 9 s, 1 s, 2 s encoding
    ticks = itertools.chain([0, 9, 10, 20, 21, 21.5, 30, 32, 33.5])
    monkeypatch.setattr(ev.time, "perf_counter", lambda: next(ticks))
    result = ev.evaluate(codec, [natural_like(16, 16)], [16], progress=False, repeats=3)
    point = result["points"][0]
    assert point["enc_ms"] == 2000 and point["dec_ms"] == 1000 and result["repeats"] == 3
    with pytest.raises(ValueError, match="repeats"):
        ev.evaluate(codec, [natural_like(16, 16)], [16], progress=False, repeats=0)
