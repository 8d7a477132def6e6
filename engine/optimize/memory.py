"""Handing freed memory back to the system, for the places that free a lot just before they allocate a lot.

glibc keeps freed heap memory (a scene's tensors, an edit's render buffers, the per-thread arenas of the render
kernels) mapped for reuse, and a large new tensor does not reuse it (it gets pages of its own), so without this
the resident set holds what was freed and what is new at once.
"""

from __future__ import annotations

import ctypes
import gc
import sys


def release_memory() -> None:
    """Collect unreachable objects and ask the C allocator to return its free pages (glibc only; elsewhere a
    no-op beyond the collection)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl, ...): nothing to ask
            pass
