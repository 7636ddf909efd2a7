"""Every shipped model keeps decoding the files it wrote (tools/make_golden.py made them)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import slimcodec
from slimcodec.zoo import find_by_fingerprint, list_models

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.json"))


@pytest.mark.parametrize("meta", CASES, ids=[c.stem for c in CASES])
def test_golden_file_decodes_to_its_image(meta):
    info = json.loads(meta.read_text())
    data = meta.with_suffix(".slc").read_bytes()
    assert find_by_fingerprint(bytes.fromhex(info["fingerprint"])) == info["model"]
    decoded = np.asarray(slimcodec.decompress(data))  # the writer found by fingerprint
    expected = np.asarray(Image.open(meta.with_suffix(".png")))
    assert decoded.shape == expected.shape
    # The entropy symbols are exact; the transforms' float arithmetic may differ by a
    # rounding between machines, never more than one level on a pixel.
    diff = np.abs(decoded.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_every_shipped_model_has_a_golden_file():
    golden = {json.loads(c.read_text())["model"] for c in CASES}
    assert set(list_models(pretrained=True)) <= golden
