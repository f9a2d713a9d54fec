"""Worker process pools that never outlive their parent, and clean exits on SIGTERM.

A killed parent (SIGKILL, or SIGTERM without cleanup) would leave ProcessPoolExecutor workers
blocked on their queue forever; on Linux each worker asks the kernel to send it SIGTERM when its
parent dies (prctl PR_SET_PDEATHSIG). Elsewhere the pool is a plain one.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    # a forked worker inherits the parent's SIGTERM handling (an event loop's handler does nothing
    # here): SIGTERM, the parent-death signal included, must end it, running its `finally` blocks
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: the worker dies with its parent, at once. `_die_with_parent` alone turns
    SIGTERM (the parent-death signal included) into SystemExit, but a SystemExit raised inside a
    job is caught by the pool's worker loop and returned as the job's result, after which the
    worker blocks on its call queue forever once the parent is gone (issue 19, D5: `kill -9` of
    serve or generate while chunks are being made). Pool jobs only compute bytes, so the worker can
    exit on the spot."""
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, _exit_now)
    if os.getppid() != parent:  # the parent died before this handler was in place
        os._exit(1)


def _exit_now(signum, frame) -> None:
    os._exit(128 + signum)


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim). A worker's job
    frees hundreds of MB of arrays; glibc keeps them mapped (its trim threshold rises after large
    frees), so a pool worker would otherwise sit at its largest job's size (measured: about 480
    MB after a level-0 chunk). No-op elsewhere."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):  # glibc's; musl has none
        _LIBC.malloc_trim(0)


HEAP_KEPT_BYTES = 96 << 20  # freed heap a pool worker may keep between jobs, above its resting size
_resting_bytes: int | None = None  # this process's resident size after its first full trim


def settle_heap() -> None:
    """Between two jobs of a pool worker: give the freed heap back (`trim_heap`) when the process
    holds more than HEAP_KEPT_BYTES above its resting size (its resident size after the first
    call, which always trims), else keep it for the next job. A trim after every job cost 15-20 %
    more CPU, as each job faulted its pages in again (25 first-view chunks of seed 7: 10.4-11.0 s
    with a trim after each, 9.4-9.7 s with this rule, 8.9-9.3 s with none); a coarse chunk's
    hundreds of MB still go back at once (a worker rests at about 250-350 MB, not 480)."""
    global _resting_bytes
    if _resting_bytes is None:
        trim_heap()
        _resting_bytes = resident_bytes() or 0
    elif (resident_bytes() or 0) > _resting_bytes + HEAP_KEPT_BYTES:
        trim_heap()


def resident_bytes() -> int | None:
    """This process's resident set size (Linux /proc), None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _linux_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _linux_libc()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of `workers` processes that exit as soon as this process dies."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_exit_with_parent, initargs=(os.getpid(),))


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit in the main thread, so `finally` blocks (pool shutdown, temporary
    files) run as they do for Ctrl-C."""
    signal.signal(signal.SIGTERM, _exit_on_signal)


def run_until_terminated(main) -> None:
    """asyncio.run(main) where SIGTERM, like Ctrl-C, cancels the main task: its `finally` blocks run
    inside the loop, instead of a SystemExit raised from whatever callback the signal interrupted
    (which asyncio reports with a traceback)."""
    async def guarded():
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        asyncio.run(guarded())
    except KeyboardInterrupt:
        pass


def warm_up(run_round: Callable[[int], Iterable[int]], workers: int, rounds: int = 3) -> int:
    """Warm a pool's workers before timing or exporting: `run_round(n)` runs n warm-up jobs at once
    and returns the process id each ran in; rounds repeat until `workers` distinct processes have
    run one (a quick worker may take two jobs of a round), `rounds` at most. Returns how many
    distinct processes are warm."""
    warm: set[int] = set()
    for _ in range(max(rounds, 1)):
        warm.update(run_round(workers))
        if len(warm) >= workers:
            break
    return len(warm)
