"""Benchmark: frames per second of the OpenGL renderer (Scene + DepthPlanar + Segmentation) per image size.

Usage: python bench/bench_render.py [--frames 20] [--seed 7] [--quick]
A 90 deg camera 40 m above the surface of the town at (3000, -3000), yaw 45, pitch -20, sees the
chunks of the streaming server's screen-space-error selection (built in this process from a
`World`); per size (256x144, 640x360, 1280x720; --quick: the first two, 5 frames) the chunk
selection is made once, 2 warm-up frames upload the chunks to the GPU cache, then N frames are
timed, readback and segmentation colouring included. Prints chunks and triangles drawn, ms per
frame and frames/s; targets on this CPU (Mesa llvmpipe through EGL): >= 30 frames/s at 256x144,
>= 5 at 1280x720. The full form then flies bench_sim.py's lockstep mission (180 m) twice, generating the chunks and
then from the disk cache the first run filled, and prints both real-time factors (target >= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_sim, for the mission real-time factor

SIZES = [(256, 144), (640, 360), (1280, 720)]
QUICK_SIZES = SIZES[:2]
FOV_DEG = 90.0
TOWN = (3000.0, -3000.0)
TARGETS = {(256, 144): 30.0, (1280, 720): 5.0}  # frames/s on CPU
IMAGES = ["scene", "depth_planar", "segmentation"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="timed frames per size")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="256x144 and 640x360 only, 5 frames, for CI")
    args = ap.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    n = 5 if args.quick else args.frames

    import numpy as np

    from worldstream.core import World, WorldSpec
    from worldstream.render import Intrinsics, Pose, Renderer, image_of
    from worldstream.render.images import outputs_for
    from worldstream.render.view import WorldView

    world = World(WorldSpec(seed=args.seed), cache_chunks=256)
    view = WorldView(world, renderer=Renderer())
    renderer = view.renderer
    x, y = TOWN
    _, surface = world.height_at(np.array([x]), np.array([y]), level=6)
    z = float(surface[0]) + 40.0
    pose = Pose.from_angles((x, y, z), yaw_deg=45.0, pitch_deg=-20.0)
    outputs = outputs_for(IMAGES)

    def frame(chunks, intr):
        f = renderer.render(chunks, pose, intr, outputs=outputs)
        return f, {name: image_of(f, name) for name in IMAGES}  # segmentation colouring included

    print(f"renderer {renderer.name}; CPU {cpu_model()}, {os.cpu_count()} cores; seed {args.seed}, camera at "
          f"({x:g}, {y:g}, {z:.1f}) m ENU (surface + 40 m), yaw 45, pitch -20, fov {FOV_DEG:g}; "
          f"images {' + '.join(IMAGES)}; {n} timed frames per size")
    results = {}
    try:
        for i, (w, h) in enumerate(sizes):
            intr = Intrinsics(w, h, FOV_DEG)
            built = view.chunks_fetched
            t = time.perf_counter()
            selected = asyncio.run(view.chunks_for(pose, intr))
            chunks = view.in_view(selected, pose, intr)  # what WorldView.frame draws
            select_s = time.perf_counter() - t
            built = view.chunks_fetched - built
            if i == 0:
                print(f"chunk selection + build ({w}x{h}, cold): {select_s:.2f} s for {len(selected)} chunks "
                      f"({built} built)")
            t = time.perf_counter()
            frame(chunks, intr)  # uploads this selection's new chunks to the GPU cache
            first_s = time.perf_counter() - t
            frame(chunks, intr)
            t = time.perf_counter()
            for _ in range(n):
                f, images = frame(chunks, intr)
            dt = (time.perf_counter() - t) / n
            assert images["segmentation"].shape == (h, w, 3) and f.depth_planar.shape == (h, w)
            triangles = sum(c.triangle_count for c in chunks)
            results[(w, h)] = 1.0 / dt
            print(f"{w}x{h}: {len(chunks)} chunks in view, {triangles} triangles in them, {renderer.triangles_drawn} "
                  f"drawn after tile culling; first frame {1000 * first_s:.0f} ms "
                  f"after selection {1000 * select_s:.0f} ms ({built} chunks built); "
                  f"{1000 * dt:.1f} ms per frame, {1 / dt:.1f} frames/s")
    finally:
        view.close()
    for (w, h), target in TARGETS.items():
        if (w, h) in results:
            fps = results[(w, h)]
            print(f"target {w}x{h} >= {target:g} frames/s on CPU: {fps:.1f} -> {'met' if fps >= target else 'NOT met'}")
    if args.quick:
        print("mission real-time factor (lockstep): skipped in --quick (bench_sim.py's short form measures it)")
    else:
        import tempfile

        import bench_sim

        with tempfile.TemporaryDirectory() as tmp:
            for run in ("generating its chunks", "from a disk cache the first run filled"):
                s = bench_sim.fly("lockstep", args.seed, 180.0, 12.0, Path(tmp), cache=Path(tmp) / "cache")
                print(f"mission real-time factor (lockstep, 180 m at 12 m/s, 256x144 Scene + DepthPlanar + "
                      f"Segmentation at 5 Hz through worldstream sim and the official client), {run}: "
                      f"{s['path_sim_s'] / s['path_wall_s']:.2f} (target >= 3); "
                      f"{1000 * s['capture_s_mean']:.0f} ms per capture ({bench_sim.breakdown(s)}); "
                      f"{1000 * s['path_wall_s'] / max(s['frames'], 1):.0f} ms of wall time per frame in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
