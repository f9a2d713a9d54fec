"""One `worldstream sim` (its own process) shared by this package's simulator tests: each test
resets the vehicle first, and the simulator is stopped after the package's last test.

The simulator is started when the package's first test starts (only if some collected test uses
it), so that its start-up (imports, worker processes, the ground around the spawn) runs beside the
package's tests that need no simulator; `sim` waits until it accepts connections. Its chunk disk
cache is `sim_cache` (the session's store of seed 7), which the follow test's `worldstream serve`
shares: chunks one generated the other reads back (verified by their recorded SHA-256) instead of
generating them again."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.live import free_port, spawn_worldstream, wait_accepting
from bench.live import start_worldstream as start_on_port

CLOCK_SPEED = 4.0


def start_worldstream(args: list[str], timeout_s: float = 120.0) -> tuple[int, subprocess.Popen]:
    """`worldstream ARGS --port P` on a free loopback port, once it accepts connections: (P, process)."""
    port = free_port()
    return port, start_on_port([*args, "--port", str(port)], port, timeout_s)


@pytest.fixture(scope="package")
def sim_cache(world_store):
    """The simulator's chunk disk cache: the session's store of its world (tests/conftest.py)."""
    return world_store


@pytest.fixture(scope="package", autouse=True)
def _sim_process(request, tmp_path_factory, world, sim_cache):
    """The package simulator's process, started (not waited for) before the package's first test,
    when any collected test uses `sim`: (port, settings, args, process), or None."""
    if not any("sim" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    from worldstream.airsim_adapter.settings import build_settings

    settings = build_settings(world, {"Drone1": (0.0, 0.0)}, clock_speed=CLOCK_SPEED)
    path = tmp_path_factory.mktemp("sim") / "settings.json"
    path.write_text(json.dumps(settings))
    port = free_port()
    args = ["sim", "--settings", str(path), "--cache", str(sim_cache), "--port", str(port)]
    proc = spawn_worldstream(args)
    yield port, settings, args, proc
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:  # a starved machine: don't fail the package's last test for it
        proc.kill()
        proc.wait(20)


@pytest.fixture(scope="package")
def sim(_sim_process):
    """(port, settings) of a simulator of the session's world (seed 7) at ClockSpeed CLOCK_SPEED."""
    port, settings, args, proc = _sim_process
    wait_accepting(proc, args, port, timeout_s=120.0)
    return port, settings
