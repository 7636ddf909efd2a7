"""Quick fuzz: hostile containers with valid CRCs reach the field checks and the entropy
decoder, and every one ends in a typed error or a decoded image, never a crash.

The decoder runs in a child process, so that a crash fails this test instead of killing
the test run. ``benchmarks/fuzz.py`` is the long run.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
from helpers import SMALL_WIDTHS, natural_like

from slimcodec.bitstream.hostile import KINDS, hostile_files
from slimcodec.codec import Codec
from slimcodec.models import SlimCAE
from slimcodec.zoo import save_model_file

CHILD = r"""
import json, sys, pathlib, warnings
warnings.filterwarnings("ignore")
from slimcodec.codec import Codec
from slimcodec.errors import SlimcodecError
from slimcodec.zoo import load_model_file
codec = Codec(load_model_file(sys.argv[1]), max_pixels=1 << 20)
counts = {}
for path in sorted(pathlib.Path(sys.argv[2]).glob("*.slc")):
    try:
        codec.decode_rgb(path.read_bytes())
        outcome = "decoded"
    except SlimcodecError as exc:
        outcome = type(exc).__name__
        if "entropy-coded" in str(exc) or "bypass" in str(exc):
            outcome = "refused by the entropy decoder"
    counts[outcome] = counts.get(outcome, 0) + 1
print(json.dumps(counts))
"""


def test_hostile_files_end_in_typed_errors(tmp_path: Path):
    torch.manual_seed(0)
    model = SlimCAE(SMALL_WIDTHS).eval()
    save_model_file(model, tmp_path / "model.pt")
    codec = Codec(model)
    valid = [codec.encode_rgb(natural_like(h, w, seed=h), width)
             for h, w in [(16, 16), (33, 47), (64, 20)] for width in SMALL_WIDTHS]
    files = tmp_path / "files"
    files.mkdir()
    for i, (_, data) in enumerate(hostile_files(valid, 60 * len(KINDS), seed=1)):
        (files / f"{i:05d}.slc").write_bytes(data)
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "model.pt"), str(files)],
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]  # a signal (crash) is negative
    counts = json.loads(child.stdout.strip().splitlines()[-1])
    assert sum(counts.values()) == 60 * len(KINDS)
    # Many got past the container's checks to the entropy decoder, which refused them.
    assert counts.get("refused by the entropy decoder", 0) > 100, counts
    assert counts.get("decoded", 0) < 60 * len(KINDS) // 2, counts
