"""Benchmark: the headless simulator's real-time factor while flying with a camera capturing.

Usage: python bench/bench_sim.py [--seconds 60] [--speed 12] [--quick]
One drone (default settings: above the ground at the world origin) flies a 4-leg path 60 m above its
start at --speed m/s while one 256x144, 90 deg camera (front, pitched 30 deg down) captures Scene +
DepthPlanar + Segmentation at 5 Hz of sim time, through the same code the RPC calls run (in process,
without sockets). Prints sim seconds per wall second (target >= 1.0 on this machine), ms per
rendered frame (one ray cast serves the three image types), and the start-up time (first mosaics).
"""

from __future__ import annotations

import argparse
import time

CAPTURE_HZ = 5.0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="sim seconds of flight")
    ap.add_argument("--speed", type=float, default=12.0, help="m/s")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="10 sim seconds, for CI")
    args = ap.parse_args(argv)
    seconds = 10.0 if args.quick else args.seconds
    import asyncio

    from worldstream.airsim_adapter import structs
    from worldstream.airsim_adapter.server import make_simulator
    from worldstream.airsim_adapter.settings import CameraSettings

    t0 = time.perf_counter()
    sim = make_simulator(seed=args.seed)
    startup = time.perf_counter() - t0
    v = sim.vehicle("")
    v.settings.cameras["bench"] = CameraSettings("bench", pitch_deg=-30.0)
    side = args.speed * seconds / 4.0
    path = ((0.0, 0.0, -60.0), (side, 0.0, -60.0), (side, side, -60.0), (0.0, side, -60.0), (0.0, 0.0, -60.0))
    requests = [{"camera_name": "bench", "image_type": t, "pixels_as_float": t == 1, "compress": t == 0}
                for t in (0, 1, 5)]

    async def fly() -> float:
        sim.enableApiControl(True)
        sim.armDisarm(True)
        done = asyncio.ensure_future(sim.moveOnPath([structs.vector3r(p) for p in path], args.speed))
        start = time.perf_counter()
        next_capture = 0.0
        while sim.time_s < seconds and not done.done():
            sim.advance(1.0 / CAPTURE_HZ / 4)
            if sim.time_s >= next_capture:
                sim.simGetImages(requests)
                next_capture += 1.0 / CAPTURE_HZ
            await asyncio.sleep(0)
        done.cancel()
        return time.perf_counter() - start

    wall = asyncio.run(fly())
    rtf = sim.time_s / wall
    ms = 1000.0 * sim.render_seconds / max(sim.frames_rendered, 1)
    p = v.state.position
    print(f"seed {args.seed}: {sim.time_s:.1f} sim s in {wall:.1f} wall s, {args.speed:g} m/s, camera 256x144 "
          f"Scene + DepthPlanar + Segmentation at {CAPTURE_HZ:g} Hz")
    print(f"real-time factor {rtf:.2f} (target >= 1.0); {ms:.0f} ms per rendered frame over {sim.frames_rendered} "
          f"frames; start-up {startup:.1f} s; flew to NED ({p[0]:.0f}, {p[1]:.0f}, {p[2]:.0f}); "
          f"collided: {v.collision['has_collided']}")
    return {"rtf": rtf, "ms_per_frame": ms, "frames": sim.frames_rendered}


if __name__ == "__main__":
    main()
