"""One `worldstream sim` (its own process) shared by this package's simulator tests: each test
resets the vehicle first, and the simulator is stopped after the package's last test."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.live import free_port
from bench.live import start_worldstream as start_on_port

CLOCK_SPEED = 4.0


def start_worldstream(args: list[str], timeout_s: float = 120.0) -> tuple[int, subprocess.Popen]:
    """`worldstream ARGS --port P` on a free loopback port, once it accepts connections: (P, process)."""
    port = free_port()
    return port, start_on_port([*args, "--port", str(port)], port, timeout_s)


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
