"""Keep freed CPU memory in the process instead of returning it to the kernel (glibc only).

A training step allocates the same tensors over and over: activations, gradients, the loss's
buffers. By default glibc serves blocks above a moving mmap threshold (128 KB rising to 32 MB)
with a fresh ``mmap`` and unmaps them on free, so each step pays page faults to zero and map
hundreds of megabytes again; on a 2-core CPU that was a third of a bf16 step. A fixed 16 MB
threshold and a trim threshold that never triggers make the per-layer activations (a few MB
each) come back warm from the heap. Blocks of 16 MB and more (vocabulary-sized gradients, the
loss's logits) still get their own mappings: keeping those in the heap too fragments it and adds
about 0.5-1 GB of resident memory for no measurable speed. A no-op off glibc and when
``LIMAKIT_MALLOC=default``.

The policy holds for the whole process and cannot be taken back (glibc has no way to return to
its moving threshold), so the ``lima`` command sets it for the commands that train, and the
library's ``train()`` never does: a program that trains in its own process keeps its allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 * 2**20
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
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    )
    return _done


def keep_freed_memory_for_cpu_training() -> bool:
    """:func:`keep_freed_memory` where training runs on the CPU (no CUDA device); True if applied."""
    import torch

    return not torch.cuda.is_available() and keep_freed_memory()
