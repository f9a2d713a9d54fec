"""Shared by the streaming benchmarks: a `worldstream serve` subprocess on loopback, its resident
memory (with its worker processes), and scripted flights at a height above the generated ground."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(seed: int, workers: int, memory_mb: int = 256, cache: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A `worldstream serve` process on a free loopback port; returns (process, ws url) once it accepts."""
    port = free_port()
    args = ["serve", "--seed", str(seed), "--port", str(port), "--workers", str(workers), "--memory-mb", str(memory_mb)]
    if cache is not None:
        args += ["--cache", str(cache)]
    return start_worldstream(args, port), f"ws://127.0.0.1:{port}/"


def wait_warm(url: str, workers: int, timeout_s: float = 60.0) -> float:
    """Wait until the server at `url` (ws://...) reports `workers` warm worker processes (its
    /stats: torch imported, the World built); returns the seconds waited."""
    import json
    from urllib.request import urlopen

    base = url.replace("ws://", "http://").rstrip("/")
    t0 = time.monotonic()
    while json.loads(urlopen(f"{base}/stats", timeout=10).read())["service"].get("workers_warm", 0) < workers:
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"the server's {workers} workers were not warm within {timeout_s:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def start_worldstream(args: list[str], port: int, timeout_s: float = 60.0) -> subprocess.Popen:
    """`worldstream ARGS` in its own process; returns once it accepts connections on the loopback port."""
    return wait_accepting(spawn_worldstream(args), args, port, timeout_s)


def spawn_worldstream(args: list[str]) -> subprocess.Popen:
    """`worldstream ARGS` in its own process, not waited for (see wait_accepting)."""
    return subprocess.Popen([sys.executable, "-m", "worldstream", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def wait_accepting(proc: subprocess.Popen, args: list[str], port: int, timeout_s: float = 60.0) -> subprocess.Popen:
    """`proc` (spawn_worldstream(ARGS)) once it accepts connections on the loopback port; killed if it
    does not within timeout_s, and an error if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worldstream {args[0]} exited: {proc.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"worldstream {args[0]} did not start within {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (its workers and theirs), from one scan of /proc."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            by_parent.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(by_parent.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(by_parent.get(p, ()))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MB), from /proc."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except OSError:
            continue
    return total / 1024.0


def pss_mb(pid: int) -> float | None:
    """Proportional memory of a process and all its descendants (MB): each shared page (the torch
    libraries a forked worker shares with its server) is split among the processes sharing it,
    where the RSS sum counts it once per process. None where /proc/PID/smaps_rollup is missing."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except FileNotFoundError:
            if p == pid:
                return None
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024.0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by a process itself and by its live descendants
    (its worker processes), from /proc: a measure of the server's own work that the machine's
    load does not inflate the way it inflates wall-clock latencies."""
    def own(p: int) -> float:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            return 0.0

    return own(pid), sum(own(p) for p in descendants(pid))


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


@dataclass(frozen=True)
class Flight:
    """A straight flight from `start` (ENU x, y) along `heading_deg` (from east towards north) at
    `speed` m/s, `agl` m above the ground, camera pitched `pitch_deg` (negative looks down)."""

    start: tuple[float, float]
    heading_deg: float
    speed: float
    agl: float = 120.0
    pitch_deg: float = -20.0

    def xy(self, t: float) -> tuple[float, float]:
        h = math.radians(self.heading_deg)
        return self.start[0] + self.speed * t * math.cos(h), self.start[1] + self.speed * t * math.sin(h)


def altitude_profile(world, flight: Flight, duration: float, step_m: float = 25.0, level: int = 4):
    """Altitude (ENU z) over time along the flight: `agl` above the highest ground within 100 m
    ahead (so the drone climbs before a ridge, never into it). Returns a function t -> z."""
    n = int(flight.speed * duration / step_m) + 12
    ts = np.arange(n) * step_m / flight.speed
    xs, ys = zip(*(flight.xy(t) for t in ts))
    ground, _ = world.height_at(np.asarray(xs), np.asarray(ys), level=level)
    ahead = int(math.ceil(100.0 / step_m))
    clearance = np.array([ground[i:i + ahead + 1].max() for i in range(n)]) + flight.agl
    return lambda t: float(np.interp(t, ts, clearance))


class Gaps:
    """How long a flight's view stays incomplete, judged by the client at each view update it
    sends: a gap runs from the first update whose view lacks a chunk it requires to the next
    update whose view is complete (one still open at the end runs to the end). It bounds the wait
    for the most urgent missing chunk from above, and a key the camera no longer needs by the time
    it arrives still counts for the time the view lacked it."""

    def __init__(self):
        self.since: float | None = None
        self.gaps: list[float] = []

    def on_view(self, whole: bool, now: float) -> bool:
        if not whole and self.since is None:
            self.since = now
        elif whole and self.since is not None:
            self.gaps.append(now - self.since)
            self.since = None
        return whole

    def close(self, now: float) -> None:
        self.on_view(True, now)

    def quantile_ms(self, f: float) -> float | None:
        g = sorted(self.gaps)
        return g[min(len(g) - 1, int(f * len(g)))] * 1000.0 if g else None


VIEW_HZ = 30.0


def flight_view(flight: Flight, altitude, t: float, max_sse: float = 16.0):
    """The protocol camera of `flight` at time t (s)."""
    from worldstream.unreal_bridge.client import camera

    x, y = flight.xy(t)
    return camera(x, y, altitude(t), yaw_deg=flight.heading_deg, pitch_deg=flight.pitch_deg, max_sse=max_sse)


async def fly_views(client, flight: Flight, altitude, duration: float, reader, before=None,
                    max_sse: float = 16.0) -> tuple[int, float]:
    """Send the flight's view at VIEW_HZ for `duration` s (before(view) runs just before each send);
    re-raises what the reader task raised. Returns (views sent, elapsed s)."""
    import asyncio

    start = time.monotonic()
    views = 0
    while (t := time.monotonic() - start) < duration:
        view = flight_view(flight, altitude, t, max_sse)
        if before is not None:
            before(view)
        await client.view([view])
        views += 1
        await asyncio.sleep(max(0.0, views / VIEW_HZ - (time.monotonic() - start)))
        if reader.done():
            reader.result()
    return views, time.monotonic() - start


async def final_stats(client, box: dict, reader, timeout: float = 5.0) -> dict:
    """Ask for stats, wait until the reader put them in box["stats"], stop the reader."""
    import asyncio

    await client.request_stats()
    deadline = time.monotonic() + timeout
    while "stats" not in box and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    reader.cancel()
    return box.get("stats", {})
