"""Worker process pools that never outlive their parent.

A killed parent (SIGKILL, or SIGTERM without cleanup) would leave ProcessPoolExecutor workers
blocked on their queue forever; on Linux each worker asks the kernel to send it SIGTERM when its
parent dies (prctl PR_SET_PDEATHSIG). Elsewhere the pool is a plain one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of `workers` processes that exit when this process dies."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),))


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit in the main thread, so `finally` blocks (pool shutdown, temporary
    files) run as they do for Ctrl-C."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
