"""Quick fuzz: hostile containers with valid CRCs reach the field checks and the entropy
decoder, and every one ends in a typed error or a decoded image, never a crash.

The decoder runs in a child process, so that a crash fails this test instead of killing
the test run. ``benchmarks/fuzz.py`` is the long run.
"""

from pathlib import Path

import torch
from helpers import SMALL_WIDTHS, aux_trained, decode_outcomes, natural_like

from slimcodec.bitstream.hostile import KINDS, hostile_files
from slimcodec.codec import Codec
from slimcodec.models import SlimCAE
from slimcodec.zoo import save_model_file


def test_hostile_files_end_in_typed_errors(tmp_path: Path):
    torch.manual_seed(0)
    model = aux_trained(SlimCAE(SMALL_WIDTHS)).eval()
    save_model_file(model, tmp_path / "model.pt")
    codec = Codec(model)
    valid = [codec.encode_rgb(natural_like(h, w, seed=h), width)
             for h, w in [(16, 16), (33, 47), (64, 20)] for width in SMALL_WIDTHS]
    files = tmp_path / "files"
    files.mkdir()
    for i, (_, data) in enumerate(hostile_files(valid, 60 * len(KINDS), seed=1)):
        (files / f"{i:05d}.slc").write_bytes(data)
    counts = decode_outcomes(
        "from slimcodec.codec import Codec\nfrom slimcodec.zoo import load_model_file\n"
        f"codec = Codec(load_model_file({str(tmp_path / 'model.pt')!r}), max_pixels=1 << 20)",
        files)
    assert sum(counts.values()) == 60 * len(KINDS)
    # Many got past the container's checks to the entropy decoder, which refused them.
    assert counts.get("refused by the entropy decoder", 0) > 100, counts
    assert counts.get("decoded", 0) < 60 * len(KINDS) // 2, counts
