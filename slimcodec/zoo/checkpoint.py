"""Model files: architecture, constructor config and weights, with a fingerprint.

A model file is ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    {"format": "slimcodec-model", "version": 1, "arch": "slimcae",
     "config": {...}, "state_dict": {...}, "fingerprint": "<16 hex digits>", "meta": {...}}

A float32 tensor whose values are all exactly float16 (every parameter of a model rounded
by :func:`round_to_half` before saving) may be stored as float16: loading widens it back
to the same float32 values, so the fingerprint, computed in float32, is unchanged, and the
file is half the size.

Version 2 stores every large tensor as its byte planes (``"planes"``: name -> ``{"bytes":
uint8 (itemsize, n), "dtype", "shape"}``): the first byte of every value, then the second,
and so on. The values are the same bits (so the fingerprint is too), but the planes that
hold exponents and high mantissa bytes repeat, so a zip (a wheel) compresses the file
better than with the values interleaved (``tools/repack_weights.py`` rewrites a version 1
file and reports both compressed sizes). Version 1 files load as before.

The fingerprint (:func:`fingerprint`) hashes the architecture, config and every tensor of
the state dict, the entropy models' CDF tables included. Containers carry it, so a decoder
can tell whether it holds the very model that wrote a file; loading recomputes it, so a
damaged weights file is caught before it decodes anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimcodec.bitstream import FINGERPRINT_SIZE
from slimcodec.errors import ModelFileError
from slimcodec.models import CheckerboardSlimCAE, HyperpriorSlimCAE, ModulatedSlimCAE, SlimCAE
from slimcodec.utils.io import atomic_write

__all__ = ["ARCHITECTURES", "build", "fingerprint", "load_model_file", "round_to_half",
           "save_model_file"]

FILE_FORMAT = "slimcodec-model"
FILE_VERSION = 2
READABLE_VERSIONS = (1, 2)
PLANE_MIN = 1024  # elements: smaller tensors are stored as they are

#: Architecture name -> class; a model file names its architecture by one of these keys.
ARCHITECTURES: dict[str, type[nn.Module]] = {"slimcae": SlimCAE, "slimcae-vr": ModulatedSlimCAE,
                                             "slimcae-hp": HyperpriorSlimCAE,
                                             "slimcae-hpc": CheckerboardSlimCAE}


def arch_name(model: nn.Module) -> str:
    for name, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise TypeError(f"{type(model).__name__} is not a registered architecture")


def build(arch: str, config: dict[str, Any]) -> nn.Module:
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ModelFileError(f"unknown architecture {arch!r}") from None
    check_config(config)
    return cls(**config)


def hash_state(h: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Feed every tensor of ``state_dict`` (name, dtype, shape and bytes) to hash ``h``."""
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _digest(arch: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> bytes:
    h = hashlib.sha256()
    h.update(json.dumps({"arch": arch, "config": config}, sort_keys=True).encode())
    hash_state(h, state_dict)
    return h.digest()[:FINGERPRINT_SIZE]


def fingerprint(model: nn.Module) -> bytes:
    """8 bytes that identify a model's architecture, config and exact weights."""
    return _digest(arch_name(model), model.config, model.state_dict())


def round_to_half(model: nn.Module) -> None:
    """Round every parameter of ``model`` to the nearest float16 value, in place (kept in
    float32): what a model shipped with ``save_model_file(..., half=True)`` stores."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dtype == torch.float32:
                p.copy_(p.half().float())


def _stored(t: torch.Tensor, half: bool) -> torch.Tensor:
    """``t`` as the file stores it: float16 when asked and exact, else as it is."""
    t = t.detach().cpu()
    if half and t.dtype == torch.float32 and torch.equal(t.half().float(), t):
        return t.half()
    return t


def save_model_file(
    model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None,
    half: bool = False,
) -> bytes:
    """Write ``model`` (with CDF tables rebuilt for its current weights) atomically.

    ``half``: store each float32 tensor that is exactly float16 as float16 (see
    :func:`round_to_half`); the model loads back bit for bit. Returns the fingerprint
    written.
    """
    model.update(force=True)
    arch, config, state = arch_name(model), model.config, model.state_dict()
    fp = _digest(arch, config, state)
    stored = {k: _stored(v, half) for k, v in state.items()}
    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "arch": arch,
        "config": config,
        "state_dict": {k: v for k, v in stored.items() if v.numel() < PLANE_MIN},
        "planes": {k: _planes(v) for k, v in stored.items() if v.numel() >= PLANE_MIN},
        "fingerprint": fp.hex(),
        "meta": meta or {},
    }
    atomic_write(path, lambda f: torch.save(payload, f))
    return fp


def _planes(t: torch.Tensor) -> dict[str, Any]:
    """``t``'s bytes as planes: row ``i`` holds byte ``i`` of every value."""
    flat = t.contiguous().reshape(-1)
    return {"bytes": flat.view(torch.uint8).reshape(-1, flat.element_size()).T.contiguous(),
            "dtype": str(flat.dtype).removeprefix("torch."), "shape": list(t.shape)}


_PLANE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int32": torch.int32,
                 "int64": torch.int64, "uint8": torch.uint8, "int8": torch.int8,
                 "float64": torch.float64, "bool": torch.bool}


def _from_planes(entry: Any) -> torch.Tensor:
    """Inverse of :func:`_planes`; ValueError for anything that does not fit."""
    if not isinstance(entry, dict) or entry.get("dtype") not in _PLANE_DTYPES:
        raise ValueError("bad byte planes")
    dtype, planes = _PLANE_DTYPES[entry["dtype"]], entry["bytes"]
    shape = [int(n) for n in entry["shape"]]
    size = torch.empty((), dtype=dtype).element_size()
    if not isinstance(planes, torch.Tensor) or planes.dtype != torch.uint8 or \
            planes.shape != (size, math.prod(shape)):
        raise ValueError("byte planes do not fit their dtype and shape")
    # Row by row into the interleaved bytes: the reads stay contiguous, several times faster
    # than the strided copy of planes.T.contiguous().
    values = torch.empty((planes.shape[1], size), dtype=torch.uint8)
    for i in range(size):
        values[:, i] = planes[i]
    return values.view(dtype).reshape(shape)


def read_payload(path: str | os.PathLike, file_format: str, versions: tuple[int, ...],
                 what: str, fields: dict[str, type | tuple[type, ...]] | None = None
                 ) -> dict[str, Any]:
    """The dict a ``torch.save`` file of ``file_format`` holds, checked for its format,
    version and the ``fields`` it must have (name -> type; not yet for integrity); a
    one-line :class:`ModelFileError` naming ``what`` (a "model", an "adapter"...) for
    anything else. One validation for every kind of file the toolkit loads."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a {what} file") from None
    except Exception:  # torch's own messages run to many lines of advice
        raise ModelFileError(f"{path}: not a slimcodec {what} file (unreadable or damaged)"
                             ) from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ModelFileError(f"{path}: not a slimcodec {what} file")
    if payload.get("version") not in versions:
        raise ModelFileError(f"{path}: unsupported {what} file version "
                             f"{payload.get('version')}")
    for name, kind in (fields or {}).items():
        if not isinstance(payload.get(name), kind):
            raise ModelFileError(f"{path}: damaged {what} file (no valid {name!r})")
    return payload


#: A model file's required fields (:func:`read_payload`).
MODEL_FIELDS = {"arch": str, "config": dict, "state_dict": dict, "fingerprint": str}
#: Bounds on a model config's widths, checked before anything is allocated for them.
MAX_WIDTH, MAX_WIDTHS = 4096, 32


def check_config(config: dict[str, Any]) -> None:
    """Raise ``ValueError`` for a config whose widths would allocate more than any real
    model (a hostile file's ``widths: [200000]`` asks for a 160 GB kernel)."""
    widths = config.get("widths", ())
    if not isinstance(widths, (list, tuple)) or len(widths) > MAX_WIDTHS or any(
            not isinstance(w, int) or isinstance(w, bool) or not 0 < w <= MAX_WIDTH
            for w in widths):
        raise ValueError(f"widths must be at most {MAX_WIDTHS} integers in 1..{MAX_WIDTH}")


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload of a model file, checked for format (not yet for integrity)."""
    payload = read_payload(path, FILE_FORMAT, READABLE_VERSIONS, "model", MODEL_FIELDS)
    try:
        for name, entry in (payload.get("planes") or {}).items():
            payload["state_dict"][name] = _from_planes(entry)
    except (ValueError, TypeError, KeyError, RuntimeError, AttributeError):
        raise ModelFileError(f"{path}: damaged model file (bad byte planes)") from None
    return payload


def _checked_meta(payload: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` dict of a model file's payload ({} if it has none)."""
    meta = payload.get("meta", {})
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: damaged model file (no valid 'meta')")
    return meta


def read_model_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` dict of a model file, without decoding its weights."""
    return _checked_meta(read_payload(path, FILE_FORMAT, READABLE_VERSIONS, "model",
                                      MODEL_FIELDS), path)


def load_model_file(path: str | os.PathLike) -> nn.Module:
    """Load a model file, verify its fingerprint and return the model in eval mode, with
    the file's fingerprint and ``meta`` dict as ``file_fingerprint`` and ``file_meta``."""
    payload = read_model_file(path)
    meta = _checked_meta(payload, path)
    try:
        model = build(payload["arch"], payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: weights do not fit the architecture ({exc})") from None
    fp = fingerprint(model)
    if fp.hex() != payload["fingerprint"]:
        raise ModelFileError(f"{path}: damaged model file (fingerprint mismatch)")
    # What the file held: a codec keeps these CDF tables while the weights stay the same,
    # and reads the metadata from here rather than reading the file again.
    model.file_fingerprint = fp
    model.file_meta = meta
    return model.eval()
