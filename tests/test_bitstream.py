import random
import struct
import zlib

import pytest

from slimcodec.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    Bitstream,
    Header,
    RateKind,
    pack,
    unpack,
)
from slimcodec.errors import (
    BitstreamError,
    CorruptBitstreamError,
    NotASlimcodecFileError,
    TruncatedBitstreamError,
    UnsupportedVersionError,
)

FP = bytes.fromhex("0123456789abcdef")


def sample(**overrides) -> Bitstream:
    fields = {"fingerprint": FP, "width": 144, "image_size": (513, 771)}
    fields.update(overrides)
    return Bitstream(Header(**fields), (b"\x00\x01entropy-coded" * 7, b"second"))


@pytest.mark.parametrize(
    "header_fields",
    [
        {},
        {"grayscale": True},
        {"rate_kind": RateKind.LAMBDA, "rate": 0.015625},  # exact as f32
        {"rate_kind": RateKind.INDEX, "rate": 7.0, "domain": 3},
        {"image_size": (1, 1)},
        {"image_size": (32768, 32768), "width": 65535},
        {"domain": 9, "mixture": ((9, 0.0), (40000, 0.75), (7, 255 / 64))},
    ],
)
def test_round_trip(header_fields):
    bs = sample(**header_fields)
    data = pack(bs)
    assert data.startswith(MAGIC) and data[4] == FORMAT_VERSION
    assert unpack(data) == bs


def test_layout_is_as_documented():
    bs = Bitstream(Header(FP, 96, (600, 800)), (b"abc",))
    data = pack(bs)
    assert len(data) == 32 + 4 + 3 + 4  # fixed header, one length, payload, CRC
    assert struct.unpack_from("<H", data, 14)[0] == 96
    assert struct.unpack_from("<II", data, 23) == (600, 800)
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])


def test_the_mixture_block_follows_the_fixed_header():
    """Flag bit 1, then a count and (domain id u16, weight in 64ths u8) per member; a file
    without a mixture is byte for byte what it was before mixtures existed."""
    plain = pack(Bitstream(Header(FP, 96, (600, 800), domain=5), (b"abc",)))
    mixed = pack(Bitstream(Header(FP, 96, (600, 800), domain=5,
                                  mixture=((5, 0.5), (300, 1.25))), (b"abc",)))
    assert plain[5] == 0 and mixed[5] == 0x02
    assert len(mixed) == len(plain) + 1 + 2 * 3
    assert mixed[32] == 2 and struct.unpack_from("<HBHB", mixed, 33) == (5, 32, 300, 80)
    assert mixed[:5] == plain[:5] and mixed[6:32] == plain[6:32]
    assert mixed[39:-4] == plain[32:-4]  # the lengths and the strings
    for n in range(len(mixed)):
        with pytest.raises(BitstreamError):
            unpack(mixed[:n])


def test_header_rejects_out_of_range_fields():
    for bad in ({"width": 0}, {"image_size": (0, 5)}, {"image_size": (5, 32769)},
                {"fingerprint": b"short"}, {"rate_kind": RateKind.LAMBDA, "rate": -1.0},
                {"rate_kind": RateKind.INDEX, "rate": 1.5},
                {"mixture": ((3, 0.3),)},  # not a multiple of 1/64
                {"mixture": ((3, 4.0),)},  # over 255/64
                {"mixture": ((0, 0.5),)},  # domain 0 is the source, never a member
                {"mixture": ((3, 0.5), (3, 0.25))},
                {"domain": 4, "mixture": ((3, 0.5),)},  # codes with a non-member
                {"mixture": tuple((d, 0.5) for d in range(1, 10))}):  # more than 8
        with pytest.raises(ValueError):
            sample(**bad)


def test_every_truncation_raises_typed_error():
    data = pack(sample())
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:n])
    for n in range(len(MAGIC) + 1, len(data)):
        with pytest.raises(TruncatedBitstreamError):
            unpack(data[:n])


def test_foreign_data():
    for data in (b"\x89PNG\r\n\x1a\n" + bytes(50), b"GIF89a", b"hello world", b"\xff"):
        with pytest.raises(NotASlimcodecFileError):
            unpack(data)


def test_trailing_bytes_and_crc():
    data = pack(sample())
    with pytest.raises(CorruptBitstreamError, match="after the end"):
        unpack(data + b"\x00")
    flipped = bytearray(data)
    flipped[40] ^= 0x10  # inside the payload
    with pytest.raises(CorruptBitstreamError, match="CRC"):
        unpack(bytes(flipped))


def test_unsupported_version():
    data = bytearray(pack(sample()))
    data[4] = FORMAT_VERSION + 1
    with pytest.raises(UnsupportedVersionError, match="version 2"):
        unpack(bytes(data))


def test_invalid_fields_behind_a_valid_crc():
    """A buggy writer: the CRC matches but a field is out of range."""
    def forge(mutate):
        body = bytearray(pack(sample())[:-4])
        mutate(body)
        return bytes(body) + struct.pack("<I", zlib.crc32(body))

    cases = [
        lambda b: b.__setitem__(5, 0x80),  # unknown flag
        lambda b: b.__setitem__(16, 9),  # unknown rate kind
        lambda b: struct.pack_into("<I", b, 23, 0),  # zero height
        lambda b: struct.pack_into("<H", b, 14, 0),  # zero width
    ]
    for mutate in cases:
        with pytest.raises(CorruptBitstreamError):
            unpack(forge(mutate))
    # A mixture flag on a file without the block: its lengths are misread, and do not add up.
    with pytest.raises(TruncatedBitstreamError):
        unpack(forge(lambda b: b.__setitem__(5, 0x02)))
    empty = pack(sample(domain=3, mixture=((3, 1.0),)))[:-4]  # then a count of 0
    empty = empty[:32] + b"\x00" + empty[36:]
    with pytest.raises(CorruptBitstreamError, match="empty mixture"):
        unpack(empty + struct.pack("<I", zlib.crc32(empty)))


def test_fuzzed_containers_raise_only_typed_errors():
    rng = random.Random(1234)
    data = pack(sample(rate_kind=RateKind.LAMBDA, rate=0.5))
    for _ in range(3000):
        fuzzed = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(fuzzed))
            if op < 0.6:
                fuzzed[pos] = rng.randrange(256)
            elif op < 0.8:
                del fuzzed[pos]
            else:
                fuzzed.insert(pos, rng.randrange(256))
        if bytes(fuzzed) == data:
            continue
        with pytest.raises(BitstreamError):
            unpack(bytes(fuzzed))
