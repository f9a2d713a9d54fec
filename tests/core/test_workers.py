"""Pool workers between jobs: freed heap kept for the next job while it is small, given back when large."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import textwrap

import pytest

from worldstream.core import workers

CHURN = textwrap.dedent("""
    import ctypes
    from worldstream.core import workers

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    libc.free.argtypes = (ctypes.c_void_p,)
    BLOCK = 64 << 10  # below glibc's mmap threshold: from the heap

    def churn(mb):
        # touched blocks freed again, with one block after them kept: the heap's top stays in
        # use, so free() itself gives nothing back (as after a job's arrays)
        blocks = [libc.malloc(BLOCK) for _ in range(mb * 16)]
        pin = libc.malloc(BLOCK)
        for p in blocks + [pin]:
            libc.memset(p, 1, BLOCK)
        for p in blocks:
            libc.free(p)

    workers.settle_heap()  # the first call: the resting size
    rest = workers.resident_bytes()
    above = lambda: (workers.resident_bytes() - rest) >> 20
    churn(40)
    small = above()
    workers.settle_heap()
    kept = above()
    churn(300)
    large = above()
    workers.settle_heap()
    print(small, kept, large, above())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or workers.resident_bytes() is None
                    or ctypes.util.find_library("c") is None, reason="glibc's malloc_trim and /proc")
def test_a_worker_keeps_a_little_freed_heap_between_jobs_and_gives_back_a_lot():
    out = subprocess.run([sys.executable, "-c", CHURN], capture_output=True, text=True, timeout=120, check=True)
    small, kept, large, after = map(int, out.stdout.split())
    assert small >= 38 and kept >= 38, "40 MB freed, under HEAP_KEPT_BYTES: kept for the next job"
    assert large >= 290 and after < workers.HEAP_KEPT_BYTES >> 20, "300 MB freed: given back"
