"""Every shipped model keeps decoding the files it wrote (tools/make_golden.py made them)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import slimcodec
from slimcodec.bitstream import unpack
from slimcodec.zoo import find_by_fingerprint, list_models
from slimcodec.zoo.catalog import shipped_adapters

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.json"))


@pytest.mark.parametrize("meta", CASES, ids=[c.stem for c in CASES])
def test_golden_file_decodes_to_its_image(meta):
    info = json.loads(meta.read_text())
    data = meta.with_suffix(".slc").read_bytes()
    assert find_by_fingerprint(bytes.fromhex(info["fingerprint"])) == info["model"]
    # a shipped adapter's file: the domain the model's codec must find among its own adapters
    assert unpack(data).header.domain == info.get("domain_id", 0)
    # a file coded upsampled (--scale): its coded size, resampled back to the image's
    header = unpack(data).header
    assert header.coded_size == (tuple(info["coded_size"]) if "coded_size" in info else None)
    assert header.resampling == info.get("resampling", 0)
    # a file with a palette (a screen's): its colours, onto which the decoder snaps
    assert len(header.palette) == info.get("palette", 0)
    assert header.palette_reach == info.get("palette_reach", 0)
    # a file with exact blocks (a screen's): the index map the decoder paints them from
    assert len(header.index_map) == info.get("index_map_bytes", 0)
    # a file with a residual (subpixel text's): the correction the decoder adds
    assert len(header.residual) == info.get("residual_bytes", 0)
    decoded = np.asarray(slimcodec.decompress(data))  # the writer found by fingerprint
    expected = np.asarray(Image.open(meta.with_suffix(".png")))
    assert decoded.shape == expected.shape
    # The entropy symbols are exact; the transforms' float arithmetic may differ by a
    # rounding between machines, never more than one level on a pixel.
    diff = np.abs(decoded.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_every_shipped_model_and_adapter_has_a_golden_file():
    golden = {(info["model"], info.get("domain")) for info in
              (json.loads(c.read_text()) for c in CASES)}
    models = list_models(pretrained=True)
    assert {(m, None) for m in models} <= golden
    assert {(m, a["domain"]) for m in models for a in shipped_adapters(m)} <= golden


RETIRED_FILES = sorted((GOLDEN / "retired").glob("*.slc"))


@pytest.mark.parametrize("path", RETIRED_FILES, ids=[p.stem for p in RETIRED_FILES])
def test_a_retired_models_file_is_refused_in_one_line_naming_it(path, tmp_path, capsys):
    """The golden files of the models retired after 0.1.0: refused by the API, by a codec
    of another model and by the command line, naming the model and its last release."""
    from slimcodec.api import codec_for
    from slimcodec.cli import main
    from slimcodec.errors import RetiredModelError
    from slimcodec.zoo import RETIRED

    name = path.stem
    assert name in {n for n, _ in RETIRED.values()} and name not in list_models(pretrained=True)
    expected = f"{name}, a research model retired from the package: slimcodec 0.1.0"
    with pytest.raises(RetiredModelError, match=expected):
        slimcodec.decompress(path)
    with pytest.raises(RetiredModelError, match=expected):
        codec_for("slimcae-vr5").decode(path.read_bytes())
    assert main(["decompress", str(path), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and not (tmp_path / "x.png").exists()
    assert main(["info", str(path)]) == 0
    assert f"model: {name} (retired: slimcodec 0.1.0 decodes it)" in capsys.readouterr().out
    with pytest.raises(RetiredModelError, match=re.escape("pip install 'slimcodec==0.1.0'")):
        slimcodec.create_model(name, pretrained=True)
