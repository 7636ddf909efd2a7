"""What the latent coders hold while coding: the latent is the largest array a large
image's coding holds (its transforms run in tiles), so each kind of coder must hold it about
once beyond its input, never as symbols, means and values side by side (benchmarks/memory.py
measures the whole process on 12 and 48 MP images)."""

import platform
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from helpers import peak_bytes, sliced_slimcae, tiny_checkerboard, tiny_hyperprior

from slimcodec import latent

WIDTHS = (16, 8)
RANGES = ((0.002, 0.2), (0.001, 0.05))
SHAPE = (16, 1024, 32)  # a latent of 2 MiB, tall: the hyper networks run in bands of 2 rows of z


def _coder(kind: str):
    if kind == "factorized":
        model = sliced_slimcae(WIDTHS)
        model.set_width(WIDTHS[0])
        return model.latent_coder()
    model = (tiny_hyperprior if kind == "hyperprior" else tiny_checkerboard)(WIDTHS, RANGES)
    model.set_width(WIDTHS[0])
    model.set_lambda(RANGES[0][1])
    return replace(model.latent_coder(), band=2)


@pytest.fixture(scope="module", params=["factorized", "hyperprior", "checkerboard"])
def coder(request):
    return _coder(request.param)


def _latent() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 3, SHAPE).astype(np.float32)


def test_decoding_holds_the_latent_once(coder):
    """The symbols become the values in their own memory (the means come band by band, the
    scale indexes as bytes): under 1.5 latents at the peak, where symbols, means, indexes
    and values side by side were 3.2 to 5 (4 for a factorized prior: int32 symbols, their
    float64 sum and its float32 copy)."""
    y = _latent()
    strings = coder.encode(y)
    out = []
    peak = peak_bytes(lambda: out.append(coder.decode(strings, SHAPE[1:])))
    assert out[0].dtype == np.float32 and out[0].shape == SHAPE
    assert peak < 1.5 * y.nbytes, f"{peak / y.nbytes:.2f} latents"


def test_encoding_holds_the_symbols_and_byte_indexes_beside_its_input(coder, monkeypatch):
    """Besides ``y``, the symbols and (a hyperprior's) uint8 scale indexes, the least the
    entropy coder takes, and a band's working set: under 1.9 latents in all, where whole
    means and int32 indexes beside them were 3.2 to 4 (2 for a factorized prior's
    temporaries). The entropy coder's own output buffer is its concern: a spy stands in for
    it here."""
    seen = []

    def spy(symbols, tables, indexes=None):
        seen.append(None if indexes is None else indexes.dtype)
        return b""

    monkeypatch.setattr(latent.rans, "encode", spy)
    y = _latent()
    peak = peak_bytes(lambda: coder.encode(y))
    assert seen[-1] in (None, np.uint8)
    assert peak < 1.9 * y.nbytes, f"{peak / y.nbytes:.2f} latents"


_FRAGMENTED = r"""
import numpy as np
from slimcodec.utils.memory import release_freed_memory
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
# 200 MiB in blocks below malloc's threshold for blocks of their own pages, every other one
# then freed: the freed half stays in the heap, fragmented among the live half
blocks = [np.ones(16 * 1024, np.float32) for _ in range(3200)]
del blocks[::2]
before = rss()
asked = release_freed_memory()
print(asked, before - rss())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_freed_heap_memory_is_handed_back():
    """A heap holding 100 MiB freed among 100 MiB in use: release_freed_memory hands most of
    the freed pages back (without it they stay resident)."""
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) > 60, f"{out[1]} MiB handed back"


def test_synthesis_hands_back_the_latent_coder_s_freed_memory(monkeypatch):
    """Before its tiles allocate, the synthesis asks for the freed memory of what ran before
    it (the latent coder's bands) to be handed back: once per image, in both runtimes, as
    they share :func:`slimcodec.tiling.synthesize`."""
    from slimcodec import tiling

    calls = []
    monkeypatch.setattr(tiling, "release_freed_memory", lambda: calls.append(1))
    y = np.zeros((4, 3, 5), np.float32)
    tiling.synthesize(lambda x: np.zeros((1, 3, 16 * x.shape[2], 16 * x.shape[3]), np.float32),
                      tiling.unchanged, y, (40, 70), 16, tile=2)
    assert calls == [1]


def test_a_hyperprior_coder_hands_back_each_band_s_freed_memory(monkeypatch):
    """Each band's temporaries are handed back as the band ends, in both directions, and
    the scale indexes' before the latent-sized arrays are allocated: under glibc's dynamic
    threshold the bands' freed blocks otherwise piled up beneath the peak
    (benchmarks/memory.py)."""
    coder = _coder("checkerboard")
    calls = []
    monkeypatch.setattr(latent, "release_freed_memory", lambda: calls.append(1))
    y = _latent()
    strings = coder.encode(y)
    bands = -(-SHAPE[1] // (4 * coder.band))
    assert len(calls) == bands + 1
    coder.decode(strings, SHAPE[1:])
    assert len(calls) == 2 * (bands + 1)
