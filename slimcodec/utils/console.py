"""How the command-line tools talk to a terminal (standard library only: the edge CLI uses it
too)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["warnings_as_lines"]


@contextmanager
def warnings_as_lines(prog: str) -> Iterator[None]:
    """Show each warning as one line on stderr, ``PROG: warning: MESSAGE``: a CLI's user
    wants to know what happened to their input, not which library line noticed it."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
