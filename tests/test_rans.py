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


def test_reference_coder_matches_compiled(tables):
    if not rans.COMPILED:
        pytest.skip("compiled coder not built")
    rng = np.random.default_rng(7)
    symbols = np.round(rng.laplace(0, 30, (6, 4, 3))).astype(np.int32)
    data = rans.encode(symbols, tables)
    assert rans._encode_py(symbols.reshape(-1), tables, 12) == data
    out = np.empty(symbols.size, np.int32)
    rans._decode_py(data, tables, 12, out)
    assert np.array_equal(out.reshape(symbols.shape), symbols)


@pytest.mark.parametrize("decoder", ["compiled", "reference"])
def test_hostile_strings_are_refused(tables, decoder):
    def decode(data, shape=(6, 5, 7)):
        if decoder == "reference":
            out = np.empty(int(np.prod(shape)), np.int32)
            try:
                rans._decode_py(data, tables, shape[1] * shape[2], out)
            except ValueError as exc:
                raise CorruptBitstreamError(str(exc)) from None
            return out
        return rans.decode(data, tables, shape)

    rng = np.random.default_rng(3)
    good = rans.encode(np.round(rng.laplace(0, 3, (6, 5, 7))).astype(np.int32), tables)
    hostile = {
        "empty": b"",
        "one word": good[:4],
        "not whole words": good + b"\0",
        "truncated": good[:-4],
        "extended": good + b"\0\0\0\0",
        "0xFF": b"\xff" * 4096,  # endless bypass run in CompressAI's decoder
        "zeros": bytes(64),
        "random": rng.integers(0, 256, 256, dtype=np.uint8).tobytes(),
    }
    for name, data in hostile.items():
        with pytest.raises(CorruptBitstreamError):
            decode(data)
            pytest.fail(f"{name} string decoded")
    with pytest.raises(CorruptBitstreamError):  # too long for a smaller latent
        decode(good, (6, 5, 6))


def test_tables_are_validated(tables):
    bad = tables.cdfs.copy()
    bad[0, 1] = bad[0, 0]  # not strictly increasing
    with pytest.raises(ValueError, match="CDF 0"):
        rans.EntropyTables(bad, tables.lengths, tables.offsets)
    with pytest.raises(ValueError, match="latent shape"):
        rans.encode(np.zeros((5, 2, 2), np.int32), tables)
