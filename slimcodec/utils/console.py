"""How the command-line tools talk to a terminal (standard library only: the edge CLI uses it
too)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slimcodec.utils.io import STDIO

__all__ = ["summary", "warnings_as_lines"]

#: The folder holding the ``slimcodec`` and ``export`` packages: warnings raised from code
#: below it are the tools' own.
_ROOT = Path(__file__).resolve().parents[2]
_OWN = ("slimcodec", "export")


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
