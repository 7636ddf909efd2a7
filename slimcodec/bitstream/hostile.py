"""Hostile containers, as a writer who can forge a CRC would make them: for fuzzing decoders.

Every file made here has a valid CRC-32, so it gets past the container's checksum to the
field checks and the entropy decoder behind them. The valid files they start from may hold
one string (factorized models) or several (a hyperprior's z, then y): the string kinds
attack one of them, chosen at random. Used by the quick fuzz test
(``tests/test_fuzz.py``) and the long run (``benchmarks/fuzz.py``).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator

__all__ = ["KINDS", "entropy_decoder_refused", "hostile_files"]

_CRC = struct.Struct("<I")
_HEIGHT, _WIDTH, _NSTRINGS, _LENGTHS = 23, 27, 31, 32


def entropy_decoder_refused(exc: BaseException) -> bool:
    """Whether a decode error is the entropy decoder's refusal of its string (the checks of
    :func:`slimcodec.bitstream.rans.decode`, whose messages name the entropy-coded string or
    a bypass run) rather than a container or header check's: what the fuzzers count apart."""
    return "entropy-coded" in str(exc) or "bypass" in str(exc)


def _seal(body: bytes | bytearray) -> bytes:
    return bytes(body) + _CRC.pack(zlib.crc32(body))


def _body(data: bytes) -> bytearray:
    return bytearray(data[:-4])


def _strings(data: bytes) -> list[bytes]:
    """The strings of ``data`` (a valid container without a mixture block)."""
    body = _body(data)
    n = body[_NSTRINGS]
    lengths = struct.unpack_from(f"<{n}I", body, _LENGTHS)
    offset, out = _LENGTHS + 4 * n, []
    for length in lengths:
        out.append(bytes(body[offset : offset + length]))
        offset += length
    return out


def _pick(data: bytes, rng: random.Random) -> int:
    """Which string to attack (no draw for a one-string file: its fuzz runs as before)."""
    n = _body(data)[_NSTRINGS]
    return rng.randrange(n) if n > 1 else 0


def _with_string(data: bytes, string: bytes, index: int = 0) -> bytes:
    """``data`` with its string ``index`` replaced and the lengths fixed."""
    strings = _strings(data)
    strings[index] = string
    body = _body(data)[:_LENGTHS]
    body += struct.pack(f"<{len(strings)}I", *map(len, strings))
    return _seal(body + b"".join(strings))


def mutated(data: bytes, rng: random.Random) -> bytes:
    """1-8 random byte edits (set, delete, insert) anywhere before the CRC."""
    body = _body(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(body))
        op = rng.random()
        if op < 0.7:
            body[pos] = rng.randrange(256)
        elif op < 0.85:
            del body[pos]
        else:
            body.insert(pos, rng.randrange(256))
    return _seal(body)


def random_payload(data: bytes, rng: random.Random) -> bytes:
    """The header kept, the string replaced by random bytes of a random length."""
    index = _pick(data, rng)
    n = rng.choice([0, 1, 3, 4, 8, rng.randrange(512), rng.randrange(65536)])
    return _with_string(data, rng.randbytes(n), index)


def high_bytes(data: bytes, rng: random.Random) -> bytes:
    """A string of 0xFF (or another high byte): endless bypass runs for a trusting decoder."""
    index = _pick(data, rng)
    n = rng.choice([4, 8, 64, 4096, rng.randrange(1, 65536)])
    return _with_string(data, bytes([rng.choice([0xFF, 0xFE, 0xF0, 0x80])]) * n, index)


def resized(data: bytes, rng: random.Random) -> bytes:
    """The real string cut short, extended with junk, or spliced with itself."""
    index = _pick(data, rng)
    string = _strings(data)[index]
    op = rng.random()
    if op < 0.4:
        string = string[: rng.randrange(len(string) + 1)]
    elif op < 0.8:
        string = string + rng.randbytes(rng.randrange(1, 64))
    else:
        cut = rng.randrange(len(string) + 1)
        string = string[cut:] + string[:cut]
    return _with_string(data, bytes(string), index)


def forged_size(data: bytes, rng: random.Random) -> bytes:
    """The declared image size changed: tiny, a little off, huge, or at the format's cap."""
    body = _body(data)
    h, w = struct.unpack_from("<II", body, _HEIGHT)
    choices = [1, 2, 15, 17, h + 16, w * 2, 4096, 8191, 32768, 1 << 20, 0xFFFFFFFF]
    struct.pack_into("<II", body, _HEIGHT, rng.choice([*choices, h]), rng.choice([*choices, w]))
    return _seal(body)


def forged_fields(data: bytes, rng: random.Random) -> bytes:
    """Width, rate kind and rate, domain or string count set to other values."""
    body = _body(data)
    field = rng.choice(["width", "rate", "domain", "nstrings"])
    if field == "width":
        struct.pack_into("<H", body, 14, rng.choice([0, 1, 47, 49, 96, 191, 193, 0xFFFF]))
    elif field == "rate":
        body[16] = rng.choice([0, 1, 2, 3, 255])
        body[17:21] = rng.choice([bytes(4), b"\x00\x00\x80\x7f", b"\xff\xff\xff\xff",
                                  struct.pack("<f", rng.uniform(-1, 1)), rng.randbytes(4)])
    elif field == "domain":
        struct.pack_into("<H", body, 21, rng.choice([1, 2, 0xFFFF]))
    else:
        body[_NSTRINGS] = rng.choice([0, 2, 255])
    return _seal(body)


def forged_mixture(data: bytes, rng: random.Random) -> bytes:
    """A mixture block set in (flag bit 1): members of the file's own domain, the source's
    0 or strangers, repeated, of any weight, too many, none, or not as many as counted."""
    body = _body(data)
    (domain,) = struct.unpack_from("<H", body, 21)
    count = rng.choice([0, 1, 1, 1, 2, 2, 3, 8, 9, 255])
    members = max(0, count + rng.choice([0, 0, 0, 0, 0, -1, 1]))
    block = bytes([count]) + b"".join(
        struct.pack("<HB", rng.choice([domain, domain, 0, 1, 0xFFFF]),
                    rng.choice([0, 1, 32, 64, 255, rng.randrange(256)]))
        for _ in range(members))
    body[5] |= 0x02
    body[_LENGTHS:_LENGTHS] = block
    return _seal(body)


def forged_coded_size(data: bytes, rng: random.Random) -> bytes:
    """A coded-size block set in (flag bit 2): the image's own size (never written), a
    scale any encoder could have used (the strings then code another latent), a side
    below the image's or beyond 4x, or huge; either filter, or an unknown one."""
    body = _body(data)
    h, w = struct.unpack_from("<II", body, _HEIGHT)
    sides = [lambda s: s, lambda s: s - 1, lambda s: round(s * 1.5), lambda s: 2 * s,
             lambda s: 4 * s, lambda s: 4 * s + 1, lambda s: 32768, lambda s: 0xFFFFFFFF]
    block = struct.pack("<IIB", rng.choice(sides)(h) % (1 << 32),
                        rng.choice(sides)(w) % (1 << 32), rng.choice([0, 0, 1, 1, 2, 255]))
    body[5] |= 0x04
    body[_LENGTHS:_LENGTHS] = block
    return _seal(body)


def forged_palette(data: bytes, rng: random.Random) -> bytes:
    """A palette block set in (flag bit 3): a count of 1 to 256 colours, as many colours as
    counted or one more or fewer, repeated or not, and a reach of 0, in range or beyond it."""
    body = _body(data)
    count = rng.choice([1, 2, 8, 64, 256])
    colours = max(0, count + rng.choice([0, 0, 0, -1, 1]))
    pool = [bytes(rng.randrange(256) for _ in range(3)) for _ in range(rng.choice([1, 300]))]
    block = struct.pack("<BI", count - 1, rng.choice([0, 1, 768, 3 * 255**2, 3 * 255**2 + 1,
                                                       0xFFFFFFFF])) + b"".join(
        rng.choice(pool) for _ in range(colours))
    body[5] |= 0x08
    body[_LENGTHS:_LENGTHS] = block
    return _seal(body)


def forged_index_map(data: bytes, rng: random.Random) -> bytes:
    """An index-map block set in (flag bit 4), after a palette block or without one: no
    bytes, random bytes, or every block's flag (the unused bits set or not) then tables and
    a payload, forged or random, whole or cut."""
    body = _body(data)
    h, w = struct.unpack_from("<II", body, _HEIGHT)
    blocks = -(-h // 16) * -(-w // 16)
    count = rng.choice([1, 2, 8])
    palette = struct.pack("<BI", count - 1, rng.choice([1, 3 * 255**2])) + b"".join(
        bytes([(37 * i) % 256, (91 * i) % 256, (13 * i) % 256]) for i in range(count))
    flags = bytearray(b"\xff" * -(-blocks // 8))
    if blocks % 8 and rng.random() < 0.5:
        flags[-1] &= 0xFF << (8 - blocks % 8) & 0xFF  # unused bits clear: a well-formed head
    tables = b"".join(struct.pack("<B", n - 1) + b"".join(
        struct.pack("<BH", rng.choice([i, rng.randrange(256)]), rng.choice([1, 300, 65535]))
        for i in range(n)) for n in (rng.choice([1, 2, 8, 256]) for _ in range(rng.randrange(9))))
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 8, 64, 400])))
    index_map = rng.choice([
        b"",
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
        bytes(flags) + tables + payload,
        (bytes(flags) + tables + payload)[:rng.randrange(1, len(flags) + len(tables) + 2)],
    ])
    with_palette = rng.random() < 0.85
    body[5] |= 0x10 | (0x08 if with_palette else 0)
    body[_LENGTHS:_LENGTHS] = (palette if with_palette else b"") + struct.pack(
        "<I", len(index_map)) + index_map
    return _seal(body)


def forged_residual(data: bytes, rng: random.Random) -> bytes:
    """A residual block set in (flag bit 5), with or without a palette: no bytes, random
    bytes, or a step (below 3, or not) and every block's flag (the unused bits set or not),
    then per channel a length, tables and a string, forged or random, whole or cut."""
    body = _body(data)
    h, w = struct.unpack_from("<II", body, _HEIGHT)
    blocks = -(-h // 16) * -(-w // 16)
    flags = bytearray(b"\xff" * -(-blocks // 8))
    if blocks % 8 and rng.random() < 0.5:
        flags[-1] &= 0xFF << (8 - blocks % 8) & 0xFF  # unused bits clear: a well-formed head

    def channel() -> bytes:
        tables = b"".join(struct.pack("<B", n - 1) + b"".join(
            struct.pack("<bH", rng.choice([i - n // 2, rng.randrange(-128, 128)]),
                        rng.choice([1, 300, 65535])) for i in range(n))
            for n in (rng.choice([1, 2, 3, 171]) for _ in range(rng.choice([1, 1, 4, 16]))))
        string = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 8, 64, 400])))
        length = len(tables) + len(string) + rng.choice([0, 0, 0, -1, 1, 1 << 20])
        return struct.pack("<I", max(0, length)) + tables + string

    whole = bytes([rng.choice([0, 2, 3, 9, 255])]) + bytes(flags) + b"".join(
        channel() for _ in range(rng.choice([2, 3, 3, 3, 4])))
    residual = rng.choice([
        b"",
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
        whole,
        whole[:rng.randrange(1, len(whole) + 1)],
    ])
    palette = struct.pack("<BI", 1, 3 * 255**2) + bytes([10, 10, 10, 240, 240, 240])
    with_palette = rng.random() < 0.5
    body[5] |= 0x20 | (0x08 if with_palette else 0)
    body[_LENGTHS:_LENGTHS] = (palette if with_palette else b"") + struct.pack(
        "<I", len(residual)) + residual
    return _seal(body)


KINDS = {
    "mutated": mutated,
    "random payload": random_payload,
    "high bytes": high_bytes,
    "resized payload": resized,
    "forged size": forged_size,
    "forged fields": forged_fields,
    "forged mixture": forged_mixture,
    "forged coded size": forged_coded_size,
    "forged palette": forged_palette,
    "forged index map": forged_index_map,
    "forged residual": forged_residual,
}


def hostile_files(valid: list[bytes], count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``count`` hostile files made from the valid containers ``valid``, cycling
    through :data:`KINDS`; yields ``(kind, data)``."""
    rng = random.Random(seed)
    kinds = list(KINDS.items())
    for i in range(count):
        name, make = kinds[i % len(kinds)]
        yield name, make(rng.choice(valid), rng)
