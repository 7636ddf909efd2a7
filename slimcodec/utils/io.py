"""Atomic file writes: a crash or a full disk never leaves a half-written file behind. And
the command-line tools' paths, where ``-`` stands for standard input or output."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["STDIO", "atomic_write", "atomic_write_bytes", "check_not_input", "check_writable",
           "read_input", "write_output"]

STDIO = "-"


def _about(exc: OSError, path: Path) -> OSError:
    """``exc`` naming the user's path instead of the temporary file's."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise _about(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _about(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | os.PathLike) -> None:
    """Raise the ``OSError`` that writing ``path`` would (its folder missing, read-only,
    full of inodes) now, before long work whose result would then be lost: the same test
    :func:`atomic_write` starts with, a temporary file beside ``path``."""
    if str(path) == STDIO:
        return
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise _about(exc, path) from None
    os.close(fd)
    os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def read_input(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, or of standard input for ``-``."""
    if str(path) == STDIO:
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def write_output(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """:func:`atomic_write`, or ``write`` to standard output for ``-``."""
    if str(path) == STDIO:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        atomic_write(path, write)


def check_not_input(output: str | os.PathLike, source: str | os.PathLike) -> None:
    """Raise ``ValueError`` when ``output`` names the file ``source`` is read from: writing
    there would destroy the input."""
    if STDIO in (str(output), str(source)) or not (os.path.exists(output)
                                                  and os.path.exists(source)):
        return
    if os.path.samefile(output, source):
        raise ValueError(f"{output} is the input file; writing it would destroy the input "
                         "(choose another -o)")
