"""Handing freed memory back to the operating system as the phases of coding end.

Coding runs in phases, each allocating and freeing many band- or tile-sized arrays: the
latent coder's networks on bands of rows, then the transforms on tiles. glibc's malloc
keeps what a phase freed in its heaps, fragmented among what is still in use, and raises
its threshold for serving large blocks with their own pages each time it frees one
(``mallopt(3)``, ``M_MMAP_THRESHOLD``), so more of the next phase's arrays come from those
heaps too: the freed pages pile up beneath the peak. So the latent coder
(:mod:`slimcodec.latent`) hands back its scale network's temporaries before it allocates
the latent-sized arrays, and each band's as the band ends, and
:func:`slimcodec.tiling.synthesize` the coder's before its tiles (``benchmarks/memory.py``
measures what that saves; a band's pages faulted in again cost no time it could measure).
Handing back the analysis's tiles before the coder gained nothing in trials, so it is not
done. :func:`release_freed_memory` asks the C library to hand them back
(``malloc_trim(3)``); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache

__all__ = ["release_freed_memory"]


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows,
    musl's is a no-op stub either way)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process already runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Hand the pages of freed heap memory back to the operating system, as a coding phase
    ends; True where the C library could be asked (glibc), False where it cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
