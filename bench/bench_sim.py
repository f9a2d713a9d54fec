"""Benchmark: the headless simulator's real-time factor while flying a mission with a camera capturing.

Usage: python bench/bench_sim.py [--length 900] [--speed 12] [--quick] [--cache DIR]
`worldstream sim` runs in its own process; `worldstream.airsim_adapter.fly` flies a mission over the
generated relief with the official airsim client (takeoff, climb, moveOnPathAsync, land) while one
256x144, 90 deg camera (front_center pitched 30 deg down) captures Scene + DepthPlanar +
Segmentation at 5 Hz of sim time into a dataset, in two modes:

- lockstep: the sim is paused for each capture and advanced 0.2 s by simContinueForTime, with
  ClockSpeed 100 so that physics never waits on the wall clock: the real-time factor is the path's
  sim seconds over its wall seconds, everything included (physics, ray casting, RPC, PNG, files).
  Target >= 1.0 on this machine.
- realtime: ClockSpeed 1, the sim runs freely and the client captures whenever 0.2 sim s have
  passed: prints the capture rate achieved (target 5 Hz) and sim seconds per wall second.

The quick form (CI) flies a 120 m path, and its realtime flight reuses what the lockstep one
generated: the simulator's chunks from a shared disk cache and the client's World. `--cache DIR`
gives both flights that chunk store (a `generate` output or a `serve`/`sim --cache` folder of the
same world; the test suite passes the one its simulator tests filled), instead of a fresh one.

Also prints the client's ms per capture and where they go: rpc (state, the three images and the
collision info through the official client: the simulator's drawing is in there), truth (ground
truth: class shares from the segmentation image, heights under the vehicle looked up a hundred
frames at a time) and write (the frame's files, atomically, synced to disk once at the end: the
seconds that sync takes are printed apart, as `sync`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live import free_port, start_worldstream, stop_server  # noqa: E402

CAPTURE_HZ = 5.0


def fly(mode: str, seed: int, length: float, speed: float, workdir: Path, cache: Path | None = None,
        world=None) -> dict:
    """Fly the mission in `mode` against a fresh `worldstream sim` (its chunk disk cache: `cache`); the
    client plans and looks up ground truth in `world` (default: a new World of `seed`)."""
    import airsim

    from worldstream.airsim_adapter.fly import fly_mission
    from worldstream.airsim_adapter.mission import parse_mission
    from worldstream.airsim_adapter.settings import build_settings
    from worldstream.core import World, WorldSpec

    world = world or World(WorldSpec(seed=seed), cache_chunks=64)
    settings = build_settings(world, {"Drone1": (0.0, 0.0)}, clock_speed=100.0 if mode == "lockstep" else 1.0)
    settings["Vehicles"]["Drone1"]["Cameras"]["front_center"]["Pitch"] = -30.0
    path = workdir / f"settings-{mode}.json"
    path.write_text(json.dumps(settings))
    port = free_port()
    t0 = time.perf_counter()
    cache_args = ["--cache", str(cache)] if cache is not None else []
    proc = start_worldstream(["sim", "--settings", str(path), "--port", str(port), *cache_args], port, timeout_s=120)
    startup = time.perf_counter() - t0
    side = length / 3.0
    mission = parse_mission({"name": f"bench-{mode}", "speed": speed, "altitude": {"reference": "agl", "value": 60},
                             "capture": {"interval_s": 1.0 / CAPTURE_HZ, "camera": "front_center",
                                         "images": ["scene", "depth_planar", "segmentation"]},
                             "land": False,
                             "waypoints": [[side, 0], [side, side], [0, side * 0.5]]}, world.spec.origin)
    try:
        client = airsim.MultirotorClient(ip="127.0.0.1", port=port, timeout_value=600)
        client.confirmConnection()
        summary = fly_mission(client, airsim, mission, world, workdir / f"dataset-{mode}", lockstep=mode == "lockstep")
    finally:
        stop_server(proc)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    m = re.search(r"images: (\d+) frames: ([0-9.]+) s selecting and waiting for chunks \((\d+) fetched\), "
                  r"([0-9.]+) s drawing", err)
    summary.update(mode=mode, startup_s=startup,
                   sim_ms={"chunks": 1000 * float(m[2]) / max(int(m[1]), 1),
                           "drawing": 1000 * float(m[4]) / max(int(m[1]), 1)} if m else None)
    return summary


def breakdown(s: dict) -> str:
    """Where a capture's milliseconds went, and the dataset's closing sync."""
    parts = ", ".join(f"{k} {v:.0f}" for k, v in (s.get("capture_ms") or {}).items())
    sim = s.get("sim_ms")
    inside = f"; of rpc, the simulator's chunks {sim['chunks']:.0f} and drawing {sim['drawing']:.0f}" if sim else ""
    return f"{parts}{inside}; sync {s.get('finish_s', 0.0):.2f} s at the end"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=float, default=900.0, help="metres of path")
    ap.add_argument("--speed", type=float, default=12.0, help="m/s")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true",
                    help="a 120 m path, the realtime flight on the lockstep flight's chunks, for CI")
    ap.add_argument("--cache", help="the simulators' chunk disk cache (a chunk store of the same world; "
                    "default: none, or a fresh one for both flights with --quick)")
    args = ap.parse_args(argv)
    from worldstream.core import World, WorldSpec

    length = 120.0 if args.quick else args.length
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        # quick: the realtime flight reuses the lockstep one's chunks
        cache = Path(args.cache) if args.cache else Path(tmp) / "chunks" if args.quick else None
        world = World(WorldSpec(seed=args.seed), cache_chunks=64) if args.quick else None  # chunks, both sides
        for mode in ("lockstep", "realtime"):
            s = fly(mode, args.seed, length, args.speed, Path(tmp), cache, world)
            wall = s["wall_s"]
            frames = s["frames"]
            rate = frames / max(s["path_sim_s"], 1e-9)
            rtf = s["path_sim_s"] / max(s["path_wall_s"], 1e-9)
            print(f"{mode:8s}: {s['path_length_m']:.0f} m at {args.speed:g} m/s, {s['path_sim_s']:.1f} sim s in "
                  f"{s['path_wall_s']:.1f} wall s on the path -> real-time factor {rtf:.2f}; {frames} frames "
                  f"({rate:.2f} per sim s, asked {CAPTURE_HZ:g}); {1000 * s['capture_s_mean']:.0f} ms per capture "
                  f"({breakdown(s)}); sim start-up {s['startup_s']:.1f} s; whole run {wall:.1f} s")
            out[mode] = {"rtf": rtf, "frames": frames, "capture_hz": rate, "ms_per_capture": 1000 * s["capture_s_mean"]}
    print(f"real-time factor (lockstep, target >= 1.0): {out['lockstep']['rtf']:.2f}")
    return out


if __name__ == "__main__":
    main()
