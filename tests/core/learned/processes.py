"""Child processes that run beside the test's own work (CI has two cores; the test process uses one)."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager


@contextmanager
def running(args: list[str], **popen_kwargs):
    """`args` started in a process of its own for the with-block; killed at its end if still running."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def output(proc: subprocess.Popen, timeout: float = 600) -> str:
    """The process's stdout once it has exited with status 0 (else its stderr's end, as the failure)."""
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}: {stderr[-2000:]}"
    return stdout
