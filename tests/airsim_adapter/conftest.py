"""One `worldstream sim` (its own process) shared by this package's simulator tests: each test
resets the vehicle first, and the simulator is stopped after the package's last test."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

CLOCK_SPEED = 4.0


def start_worldstream(args: list[str], timeout_s: float = 120.0) -> tuple[int, subprocess.Popen]:
    """`worldstream ARGS --port P` on a free loopback port, once it accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "worldstream", *args, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port, proc
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, f"worldstream {args[0]} did not start"
            time.sleep(0.2)


@pytest.fixture(scope="package")
def sim(tmp_path_factory, world):
    """(port, settings) of a simulator of the session's world (seed 7) at ClockSpeed CLOCK_SPEED."""
    from worldstream.airsim_adapter.settings import build_settings

    settings = build_settings(world, {"Drone1": (0.0, 0.0)}, clock_speed=CLOCK_SPEED)
    path = tmp_path_factory.mktemp("sim") / "settings.json"
    path.write_text(json.dumps(settings))
    port, proc = start_worldstream(["sim", "--settings", str(path)])
    yield port, settings
    proc.terminate()
    proc.wait(20)
