"""Keep freed CPU memory in the process instead of returning it to the kernel (glibc only).

A training step allocates the same large tensors over and over: activations, the loss's logits,
gradients. glibc serves every block above its mmap threshold (32 MB at most) with a fresh
``mmap`` and unmaps it on free, so each step pays page faults to zero and map hundreds of
megabytes again; on a 2-core CPU that was a third of a bf16 step. Turning off mmap for the heap
and raising the trim threshold makes freed blocks come back warm. Peak memory stays what the step
needs; the process just keeps it between steps. A no-op off glibc and when ``LIMAKIT_MALLOC=default``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from <malloc.h>
_M_MMAP_MAX = -4
_done = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc for repeated large allocations; True when applied (idempotent)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("LIMAKIT_MALLOC") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
