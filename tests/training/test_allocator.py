"""The CPU allocator policy: blocks under 16 MB come from the heap, bigger ones keep their own
mappings, and LIMAKIT_MALLOC=default leaves glibc alone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Where glibc puts a 12 MB and a 64 MB block: inside the [heap] region (brk) or a mapping of its own.
CODE = """
import ctypes, ctypes.util
from limakit.training.allocator import keep_freed_memory
applied = keep_freed_memory()
assert keep_freed_memory() == applied  # idempotent
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]

def in_heap(addr):
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= addr < hi:
                return True
    return False

print(applied, in_heap(libc.malloc(12 << 20)), in_heap(libc.malloc(64 << 20)))
"""


def _run(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("LIMAKIT_MALLOC", None)
    if env_value is not None:
        env["LIMAKIT_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only"
)
def test_small_blocks_stay_in_the_heap_big_ones_get_mappings():
    assert _run(None) == "True True False"
    assert _run("default").startswith("False")
