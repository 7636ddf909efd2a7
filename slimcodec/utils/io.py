"""Atomic file writes: a crash or a full disk never leaves a half-written file behind. And
the command-line tools' paths, where ``-`` stands for standard input or output.

What a write replaces, by what the path is:

* a regular file, or no file: a temporary file beside it, renamed over it once complete.
  On Linux the temporary file has no name while it is written (``O_TMPFILE``): a process
  killed mid-write (SIGKILL included) leaves nothing behind; it gets a name only for the
  instant of the rename;
* a symbolic link: the file it points to, the same way; the link stays a link;
* anything else that exists (a device such as ``/dev/null``, a FIFO, a socket): written
  in place, never replaced by a regular file; a directory is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["STDIO", "atomic_write", "atomic_write_bytes", "check_not_input", "check_writable",
           "files_under", "folders_for", "output_paths", "read_input", "write_output"]

STDIO = "-"


def _about(exc: OSError, path: Path) -> OSError:
    """``exc`` naming the user's path instead of the temporary file's."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def _target(path: Path) -> Path:
    """The file a write to ``path`` must change: a symbolic link's target, else ``path``."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path`` (a link's target), then rename
    it over it; a device, FIFO or socket is written in place (see the module docstring)."""
    path = Path(path)
    target = _target(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise _about(exc, path) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    if mode is not None and not stat.S_ISREG(mode):
        try:
            with open(target, "wb") as f:
                write(f)
        except OSError as exc:
            raise _about(exc, path) from None
        return
    folder = str(target.parent or ".")
    try:
        fd, tmp = _unnamed(folder)
        if fd is None:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _about(exc, path) from None
    named = tmp is not None
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        if not named:  # name the finished file for the instant of the rename
            tmp = f"{folder}/.{target.name}.{os.urandom(6).hex()}.tmp"
            # linkat(2) through /proc/self/fd, following the fd's link to the file itself
            # (a plain os.link of the /proc path would link the magic link, not the file).
            proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.link(str(fd), tmp, src_dir_fd=proc, follow_symlinks=True)
            finally:
                os.close(proc)
            named = True
        os.replace(tmp, target)
        named = False
    except OSError as exc:
        raise _about(exc, path) from None
    finally:
        os.close(fd)
        if named:
            Path(tmp).unlink(missing_ok=True)


def _unnamed(folder: str) -> tuple[int | None, str | None]:
    """An unnamed file in ``folder`` (Linux ``O_TMPFILE``), or ``(None, None)`` where the
    system or file system has none (then a named temporary file is used)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None, None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o600), None
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None, None
        raise


def check_writable(path: str | os.PathLike) -> None:
    """Raise the ``OSError`` that writing ``path`` would (its folder missing, read-only,
    full of inodes) now, before long work whose result would then be lost: the same test
    :func:`atomic_write` starts with, a temporary file beside ``path``."""
    if str(path) == STDIO:
        return
    path = Path(path)
    target = _target(path)
    if target.exists() and not target.is_file():  # a device or FIFO: written in place
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, "permission denied", str(path))
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent or ".")
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
        raise _destroys_input(output)


def _destroys_input(output: str | os.PathLike) -> ValueError:
    return ValueError(f"{output} is the input file; writing it would destroy the input "
                      "(choose another -o)")


def _file_id(path: str) -> tuple[int, int] | None:
    """What identifies an existing file whatever its path (device, inode); None for
    standard input or output and paths that do not exist."""
    if path == STDIO or not os.path.exists(path):
        return None
    st = os.stat(path)
    return st.st_dev, st.st_ino


def files_under(folder: str | os.PathLike, suffixes: Iterable[str]) -> list[Path]:
    """The files under ``folder`` (recursive, not into linked folders; sorted) whose
    extension, in any case, is one of ``suffixes``."""
    suffixes = {s.lower() for s in suffixes}
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in suffixes and p.is_file())


def output_paths(inputs: list[str], output: str, suffix: str, takes: Iterable[str] = (),
                 what: str = "file") -> list[tuple[str, str]]:
    """Each input with the path a command writes it to: ``output`` itself for one input,
    unless ``output`` is a folder; in a folder (several inputs need one), the input's name
    with ``suffix`` for its extension. An input that is a folder stands for its files with
    an extension in ``takes`` (:func:`files_under`; ``what`` names them), each written to
    its path below that folder, under ``output`` (made where missing). Raises
    ``ValueError`` before any work for what would lose something: several inputs without
    a folder, standard input into a folder, two inputs that would write the same file, an
    output that is an input."""
    named: list[tuple[str, str]] = []  # each input file, with its output's name in a folder
    from_folder = False
    for i in inputs:
        if i != STDIO and os.path.isdir(i):
            found = files_under(i, takes)
            if not found:
                raise ValueError(f"{i}: a folder with no {what} below it")
            named += [(str(p), str(p.relative_to(i).with_suffix(suffix))) for p in found]
            from_folder = True
        else:
            named.append((i, Path(i).stem + suffix))
    into = output != STDIO and os.path.isdir(output)
    if len(named) == 1 and not (from_folder or into):
        pairs = [(inputs[0], output)]
    else:
        if STDIO in inputs:  # it has no name to write into a folder under
            raise ValueError("standard input ('-') is coded alone, to the file -o names "
                             "(or '-')")
        if not into and from_folder and (output == STDIO or os.path.lexists(output)):
            raise ValueError(f"{output}: not a folder; a folder's files are written into "
                             "the folder -o names (made if missing)")
        if not into and not from_folder:
            raise ValueError(f"{output}: with several inputs, -o names an existing folder "
                             "that each output is written into")
        pairs = [(source, os.path.join(output, name)) for source, name in named]
        seen: dict[str, str] = {}
        for source, target in pairs:
            key = os.path.normcase(os.path.abspath(target))
            if key in seen:
                raise ValueError(f"{seen[key]} and {source} would both be written to {target}")
            seen[key] = source
    read = {_file_id(source) for source, _ in named} - {None}  # once: thousands of inputs
    for _, target in pairs:
        if _file_id(target) in read:
            raise _destroys_input(target)
    return pairs


@contextlib.contextmanager
def folders_for(path: str, into: str) -> Iterator[None]:
    """For a ``path`` below the folder ``into`` (-o, for a folder's files), make the
    folders from ``into`` down to it where missing, for the block that writes it; those
    it made are removed again if the block leaves them empty (the write failed): a failed
    file leaves nothing behind. Any other path is left to fail as it would."""
    made = []
    folder = Path(path).parent
    if path != STDIO and into != STDIO and folder.is_relative_to(into):
        while not folder.exists():
            made.append(folder)
            folder = folder.parent
    for f in reversed(made):
        f.mkdir(exist_ok=True)
    try:
        yield
    finally:
        for f in made:
            try:
                f.rmdir()  # only if empty
            except OSError:
                break
