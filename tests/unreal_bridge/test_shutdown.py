"""Issue 19 D5 / D6 with real processes: `kill -9` of `worldstream generate` in the middle of
generation leaves no worker behind; SIGTERM of `generate` and of `serve` while chunks are being
generated exits without tracebacks ("Event loop is closed")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from bench.live import ROOT, children, free_port, start_worldstream

GENERATE = ["generate", "--seed", "3", "--chunk-size", "128", "--num-levels", "7", "--levels", "5:6",
            "--radius", "3000", "--format", "glb", "--workers", "2", "--quiet"]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_generate(out) -> tuple[subprocess.Popen, list[int]]:
    """`worldstream generate` with 2 workers, returned once both workers are busy generating."""
    proc = subprocess.Popen([sys.executable, "-m", "worldstream", *GENERATE, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(children(proc.pid)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "generate started no workers"
        time.sleep(0.1)
    time.sleep(3.0)  # the workers are inside jobs now
    workers = children(proc.pid)
    assert proc.poll() is None, "generate finished before it could be interrupted; give it more work"
    return proc, workers


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def assert_workers_die_with(proc, workers: list[int], what: str) -> None:
    """kill -9 of `proc`: each of its worker processes must be gone within 20 s (any left are
    killed afterwards, so a failure leaves nothing running)."""
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        left = wait_gone(workers, 20)
        assert not left, f"workers {left} outlived `{what}` after kill -9"
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)


def test_d5_kill_9_of_generate_leaves_no_worker_behind(tmp_path):
    proc, workers = start_generate(tmp_path / "out")
    assert_workers_die_with(proc, workers, "generate")


def test_d6_sigterm_of_generate_exits_promptly_without_traceback(tmp_path):
    proc, workers = start_generate(tmp_path / "out")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - t0
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and "Event loop is closed" not in err, err[-3000:]
    assert proc.returncode != 0 and elapsed < 30, (proc.returncode, elapsed)  # queued chunks are not all made
    assert not wait_gone(workers, 20)


def test_d6_sigterm_of_serve_during_generation_exits_without_traceback():
    port = free_port()
    proc = start_worldstream(["serve", "--seed", "5", "--port", str(port), "--workers", "2"], port)
    base = f"http://127.0.0.1:{port}"
    import threading
    for i in range(6):  # level-0 chunks take seconds each: generation is in flight when SIGTERM comes
        threading.Thread(target=lambda i=i: _quiet_get(f"{base}/chunks/0/{i}/0/mesh.glb"), daemon=True).start()
    deadline = time.monotonic() + 60
    while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and "Event loop is closed" not in err, err[-3000:]
    assert not wait_gone(workers, 20)


def _quiet_get(url: str) -> None:
    try:
        urllib.request.urlopen(url, timeout=120).read()
    except Exception:
        pass


def test_d5_kill_9_of_serve_during_generation_leaves_no_worker_behind():
    port = free_port()
    proc = start_worldstream(["serve", "--seed", "11", "--port", str(port), "--workers", "2"], port)
    import threading
    for i in range(6):  # level-0 chunks take seconds each: the workers are inside jobs when the kill comes
        threading.Thread(target=lambda i=i: _quiet_get(f"http://127.0.0.1:{port}/chunks/0/{i}/1/mesh.glb"),
                         daemon=True).start()
    deadline = time.monotonic() + 60
    while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    workers = children(proc.pid)
    assert len(workers) >= 2
    assert_workers_die_with(proc, workers, "serve")
