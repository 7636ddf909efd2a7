import numpy as np
import pytest
import torch
from helpers import SMALL_WIDTHS, natural_like
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


def test_damaged_model_files(tmp_path, small_model):
    path = tmp_path / "m.pt"
    save_model_file(small_model, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["g_a.0.weight"][0, 0, 0, 0] += 1.0
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="fingerprint"):
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
    other = Codec(SlimCAE(SMALL_WIDTHS), "other")
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


def test_codec_rejects_bad_width_and_giant_images(codec):
    with pytest.raises(ValueError, match="not one of"):
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
