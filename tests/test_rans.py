"""The bounds-checked rANS coder: CompressAI's format byte for byte, and no hostile string
gets past it."""

import numpy as np
import pytest
import torch
from compressai import ans
from compressai.entropy_models import EntropyBottleneck

from slimcodec.bitstream import rans
from slimcodec.errors import CorruptBitstreamError


@pytest.fixture(scope="module")
def bottleneck():
    torch.manual_seed(0)
    eb = EntropyBottleneck(6)
    with torch.no_grad():  # a spread of densities, so that some symbols take the bypass
        eb.quantiles.mul_(torch.linspace(0.05, 2.0, 6)[:, None, None])
    eb.update(force=True)
    return eb


@pytest.fixture(scope="module")
def tables(bottleneck):
    return rans.EntropyTables(bottleneck._quantized_cdf.numpy(), bottleneck._cdf_length.numpy(),
                              bottleneck._offset.numpy())


def compressai_encode(symbols, eb):
    c = symbols.shape[0]
    indexes = np.repeat(np.arange(c), symbols[0].size).tolist()
    return ans.RansEncoder().encode_with_indexes(
        symbols.reshape(-1).tolist(), indexes, eb._quantized_cdf.tolist(),
        eb._cdf_length.reshape(-1).int().tolist(), eb._offset.reshape(-1).int().tolist())


def compressai_decode(data, shape, eb):
    indexes = np.repeat(np.arange(shape[0]), shape[1] * shape[2]).tolist()
    out = ans.RansDecoder().decode_with_indexes(
        data, indexes, eb._quantized_cdf.tolist(), eb._cdf_length.reshape(-1).int().tolist(),
        eb._offset.reshape(-1).int().tolist())
    return np.array(out, dtype=np.int32).reshape(shape)


@pytest.mark.parametrize("scale", [0.3, 3.0, 40.0, 5e3, 1e6])
def test_same_strings_as_compressai_both_ways(bottleneck, tables, scale):
    rng = np.random.default_rng(int(scale))
    # |value| < 2^26: CompressAI's own encoder shifts past 32 bits (and hangs) beyond 2^28.
    symbols = np.clip(np.round(rng.laplace(0, scale, (6, 5, 7))), -2**26, 2**26).astype(np.int32)
    ours = rans.encode(symbols, tables)
    theirs = compressai_encode(symbols, bottleneck)
    assert ours == theirs
    assert np.array_equal(rans.decode(theirs, tables, symbols.shape), symbols)
    assert np.array_equal(compressai_decode(ours, symbols.shape, bottleneck), symbols)


def test_compressai_entropy_bottleneck_strings_decode(bottleneck, tables):
    """What compressai's own ``EntropyBottleneck.compress`` writes, we decode exactly."""
    y = torch.randn(1, 6, 9, 4) * 3
    string = bottleneck.compress(y)[0]
    expected = torch.round(y - bottleneck._get_medians()).int()[0].numpy()
    assert np.array_equal(rans.decode(string, tables, (6, 9, 4)), expected)


def test_the_compiled_coder_is_built():
    """The suite runs both coders explicitly; a build without the compiled one (it is
    optional in pyproject.toml, for machines without a compiler) must not pass for one
    with it. SLIMCODEC_PURE_PYTHON=1 says a pure-Python install is intended."""
    import os

    if os.environ.get("SLIMCODEC_PURE_PYTHON") == "1":
        pytest.skip("pure-Python install")
    assert rans.COMPILED, "slimcodec/bitstream/_rans.c was not built"


CODERS = ["compiled", "reference"]


def decode_with(coder, data, tables, shape):
    """Decode with one coder explicitly (never the fallback); the coder's own message."""
    out = np.empty(int(np.prod(shape)), np.int32)
    plane = shape[1] * shape[2]
    if coder == "compiled":
        rans._rans.decode(data, tables.cdfs, tables.lengths, tables.offsets, plane, out)
    else:
        rans._decode_py(data, tables, plane, out)
    return out.reshape(shape)


def test_reference_coder_matches_compiled(tables):
    rng = np.random.default_rng(7)
    symbols = np.round(rng.laplace(0, 30, (6, 4, 3))).astype(np.int32)
    data = rans._rans.encode(symbols.reshape(-1), tables.cdfs, tables.lengths, tables.offsets,
                             12)
    assert rans._encode_py(symbols.reshape(-1), tables, 12) == data
    for coder in CODERS:
        assert np.array_equal(decode_with(coder, data, tables, symbols.shape), symbols)


@pytest.mark.parametrize("coder", CODERS)
def test_hostile_strings_are_refused_by_the_check_that_guards_them(tables, coder):
    """Each hostile string is refused by the check written for it, in both coders: a test
    that only asked for *an* error would pass with a check deleted (a truncated string
    then reads past its end, and fails later for another reason)."""
    rng = np.random.default_rng(3)
    good = rans.encode(np.round(rng.laplace(0, 3, (6, 5, 7))).astype(np.int32), tables)
    wide = rans.encode(np.full((6, 5, 7), 10**6, np.int32), tables)  # bypass runs to the end
    hostile = {
        "empty": (b"", "shorter than the coder's state"),
        "one word": (good[:4], "shorter than the coder's state"),
        "not whole words": (good + b"\0", "not a whole number of 32-bit words"),
        "truncated": (good[:-4], "ends before its latent"),
        "truncated in a bypass run": (wide[:-4], "ends inside a bypass run"),
        "extended": (good + b"\0\0\0\0", "longer than its latent"),
        "0xFF": (b"\xff" * 4096, "bypass run longer than a 32-bit value"),
        "zeros": (bytes(64), "starts with an invalid coder state"),
    }
    for name, (data, message) in hostile.items():
        with pytest.raises(ValueError, match=message):
            decode_with(coder, data, tables, (6, 5, 7))
            pytest.fail(f"{name} string decoded")
    with pytest.raises(ValueError):  # a string for a larger latent
        decode_with(coder, good, tables, (6, 5, 6))
    # and through the public API, typed
    with pytest.raises(CorruptBitstreamError, match="ends before its latent"):
        rans.decode(good[:-4], tables, (6, 5, 7))


def test_bit_flipped_strings_both_coders_agree(tables):
    """Every single-bit flip of a string: both coders accept exactly the same ones, with
    the same symbols, and refuse the rest, the final-state check among their reasons."""
    rng = np.random.default_rng(5)
    shape = (6, 5, 7)
    good = rans.encode(np.round(rng.laplace(0, 3, shape)).astype(np.int32), tables)
    accepted, reasons = {c: [] for c in CODERS}, set()
    for bit in range(8 * len(good)):
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        for coder in CODERS:
            try:
                symbols = decode_with(coder, bytes(flipped), tables, shape)
            except ValueError as exc:
                reasons.add(str(exc))
                continue
            accepted[coder].append((bit, symbols.tobytes()))
    assert accepted["compiled"] == accepted["reference"]
    assert "entropy-coded string does not end in the coder's initial state" in reasons


def test_byte_indexes_code_as_int32_ones_and_are_checked(tables):
    """uint8 indexes (a hyperprior's, a quarter of int32's memory) give the same string as
    int32 ones, in both directions and both coders; an index past the tables is refused, and
    the compiled coder takes no other width."""
    rng = np.random.default_rng(11)
    symbols = np.round(rng.laplace(0, 4, (6, 5, 7))).astype(np.int32)
    indexes = rng.integers(0, tables.channels, symbols.shape)
    data = rans.encode(symbols, tables, indexes.astype(np.int32))
    assert rans.encode(symbols, tables, indexes.astype(np.uint8)) == data
    assert data != rans.encode(symbols, tables)  # the indexes do pick the tables
    for dtype in (np.uint8, np.int32):
        np.testing.assert_array_equal(
            rans.decode(data, tables, symbols.shape, indexes.astype(dtype)), symbols)
    flat = indexes.astype(np.uint8).reshape(-1)
    assert rans._encode_py(symbols.reshape(-1), tables, 35, flat) == data
    bad = flat.copy()
    bad[17] = tables.channels
    with pytest.raises(ValueError, match="one table index per symbol"):
        rans._rans.encode(symbols.reshape(-1), tables.cdfs, tables.lengths, tables.offsets, 35,
                          bad)
    with pytest.raises(ValueError, match="one table index per symbol"):
        rans._rans.decode(data, tables.cdfs, tables.lengths, tables.offsets, 35,
                          np.empty(symbols.size, np.int32), bad)
    with pytest.raises(TypeError, match="int32 or uint8"):
        rans._rans.encode(symbols.reshape(-1), tables.cdfs, tables.lengths, tables.offsets, 35,
                          flat.astype(np.int16))


def test_tables_are_validated(tables):
    bad = tables.cdfs.copy()
    bad[0, 1] = bad[0, 0]  # not strictly increasing
    with pytest.raises(ValueError, match="CDF 0"):
        rans.EntropyTables(bad, tables.lengths, tables.offsets)
    with pytest.raises(ValueError, match="latent shape"):
        rans.encode(np.zeros((5, 2, 2), np.int32), tables)


def test_the_compiled_coder_is_clean_under_address_sanitizer():
    """benchmarks/asan_rans.sh: this file's tests (and the fuzz tests) against _rans.c
    built with AddressSanitizer, about 35 s on two cores; a read past a string's end is a
    failure here even where the coder's checks would not notice it."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if os.environ.get("SLIMCODEC_ASAN_MODULE"):
        pytest.skip("already running under AddressSanitizer")
    if os.environ.get("SLIMCODEC_PURE_PYTHON") == "1" or not shutil.which("gcc"):
        pytest.skip("no C compiler")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "asan_rans.sh"
    child = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, (child.stdout + child.stderr)[-3000:]
