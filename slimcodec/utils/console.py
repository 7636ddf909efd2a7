"""How the command-line tools talk to a terminal (standard library only: the edge CLI uses it
too)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slimcodec.errors import SlimcodecError
from slimcodec.utils.io import STDIO, folders_for

__all__ = ["EXIT_BAD_INPUT", "HELP", "for_each_file", "positive_int", "run_command",
           "summary", "warnings_as_lines"]

EXIT_BAD_INPUT = 2

#: ``slimcodec``'s commands and their one-line help: the light parser (``slimcodec
#: --help``, slimcodec/cli.py) lists them all, the full one (slimcodec/commands.py) builds
#: those that need torch.
HELP = {
    "compress": "compress an image to a .slc file",
    "decompress": "decompress a .slc file to an image",
    "info": "print a .slc file's header",
    "eval": "rate-distortion of a model on a folder of images",
    "demo": "code the bundled sample image at every width",
    "models": "the shipped models: kind, widths, rate range, size; the default marked",
    "select": "the width (and λ) that fits a budget",
    "train": "train a SlimCAE (all widths jointly)",
    "adapt": "adapt a model to a content domain from a few images",
    "gate": "train a gate that predicts, per image, the weights of decoder adapters "
            "(Presta et al.)",
    "generate": "write generated images of a content domain (screen content, "
                "illustrations) to adapt on",
    "export": "write a deployment bundle: per-width ONNX graphs, entropy tables, manifest",
    "profile": "MACs, parameters, memory and latency per width",
}

def positive_int(text: str) -> int:
    """argparse type of a count or size that must be at least 1 (``--max-pixels``,
    ``--tile``): anything else is the parser's one-line usage error, naming the option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


#: The folder holding the ``slimcodec`` package and the deployment one (``export`` in a
#: checkout, ``slimcodec_edge`` once installed): warnings raised from code below them are
#: the tools' own.
_ROOT = Path(__file__).resolve().parents[2]
_OWN = ("slimcodec", "export", "slimcodec_edge")


def _is_own(filename: str) -> bool:
    try:
        return Path(filename).resolve().relative_to(_ROOT).parts[0] in _OWN
    except (ValueError, IndexError):
        return False


def summary(output: str, line: str) -> None:
    """A command's one-line summary of what it wrote to ``output``: on stdout, or on stderr
    when the data itself goes to stdout (``-``)."""
    print(f"{output}: {line}", file=sys.stderr if output == STDIO else sys.stdout)


@contextmanager
def warnings_as_lines(prog: str) -> Iterator[None]:
    """Show the tools' own warnings as one line each on stderr, ``PROG: warning: MESSAGE``:
    a CLI's user wants to know what happened to their input, not which library line noticed
    it. Warnings from other libraries keep Python's usual form, which names their source."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if _is_own(filename):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, MemoryError):
        return "out of memory (lower --max-pixels, or free memory)"
    return " ".join(str(exc).split()) or type(exc).__name__


def _bad_input(exc: BaseException, decoding: bool) -> bool:
    """Whether ``exc`` is bad input, worth one line and no traceback: typed errors, bad
    option values (ValueError), missing or unwritable paths (OSError), exhausted memory,
    and, for a command that decodes a file, whatever the file provokes. Anything else is a
    bug, and its traceback the report."""
    known = isinstance(exc, (SlimcodecError, OSError, ValueError, MemoryError))
    return known or _is_allocator_error(exc) or decoding


def for_each_file(pairs: list[tuple[str, str]], code: Callable[[str, str], None], into: str,
                  decoding: bool = False, prog: str = "slimcodec") -> int:
    """Run ``code(input, output)`` for each pair (:func:`~slimcodec.utils.io.output_paths`
    of ``into``, the -o argument: the folders of a folder input's files are made there).
    One pair: its errors are the command's. Several: a file's bad input is one line on
    stderr, naming the file, and the others are still coded; the exit status is then
    :data:`EXIT_BAD_INPUT`, after a line that counts the failures."""
    if len(pairs) == 1:
        with folders_for(pairs[0][1], into):
            code(*pairs[0])
        return 0
    failed = 0
    for source, target in pairs:
        try:
            with folders_for(target, into):
                code(source, target)
        except Exception as exc:
            if os.environ.get("SLIMCODEC_DEBUG") or not _bad_input(exc, decoding):
                raise
            line = _one_line(exc)
            print(f"{prog}: error: {line if source in line else f'{source}: {line}'}",
                  file=sys.stderr)
            failed += 1
    if failed:
        print(f"{prog}: error: {failed} of {len(pairs)} files failed", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _is_allocator_error(exc: BaseException) -> bool:
    """torch reports an exhausted allocator as a RuntimeError."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("memory" in text or "allocate" in text)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread: unwinding runs every cleanup (an output being
    written is never left half-made or as a temporary file) where the default would not."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


def run_command(args: argparse.Namespace, func: Callable[[argparse.Namespace], int],
                prog: str = "slimcodec",
                decoding: tuple[str, ...] = ("decompress", "info")) -> int:
    """Run a parsed command: bad input ends in one line on stderr and exit status 2,
    Ctrl-C in 130, SIGTERM in 143 (after every cleanup). ``decoding``: the commands that
    read a file a writer made, whatever error it provokes being bad input."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings_as_lines(prog):
            return func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as exc:
        if os.environ.get("SLIMCODEC_DEBUG") or not _bad_input(exc, args.command in decoding):
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
