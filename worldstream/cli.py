"""The `worldstream` command line: generate, preview, render, serve, sim, airsim, train, metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worldstream import __version__


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
        return a, b
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers as X,Y (metres east,north), got {text!r}") from None


def _levels(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.split(":")]
        if len(parts) == 1:
            parts = parts * 2
        a, b = parts
        if a < 0 or b < a:
            raise ValueError
        return a, b
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected levels as A:B with 0 <= A <= B (or one level), got {text!r}") from None


def _spec_from_args(args):
    from worldstream.core import WorldSpec

    if getattr(args, "spec", None):
        return WorldSpec.from_json(Path(args.spec).read_text())
    params = json.loads(args.params) if args.params else {}
    generator = getattr(args, "backend", "procedural")
    if generator == "learned":
        from worldstream.core.errors import GeneratorError
        if not args.models:
            raise GeneratorError("--backend learned needs --models DIR (a folder written by `worldstream train cascade`, "
                                 "or a diffusers StableDiffusionUpscalePipeline folder)")
        from worldstream.core.generators.learned.storage import model_stages, models_digest
        params["models"] = str(Path(args.models).resolve())
        stages = model_stages(params["models"])
        if stages != ("ortho",):  # ortho-only worlds keep the spec they had before height models existed
            params["stages"] = list(stages)
        params["models_sha256"] = models_digest(params["models"])
        if args.sampling_steps is not None:
            params["steps"] = args.sampling_steps
    elif getattr(args, "models", None):
        from worldstream.core.errors import GeneratorError
        raise GeneratorError("--models only applies to --backend learned")
    return WorldSpec(seed=args.seed, base_resolution=args.base_resolution, chunk_size=args.chunk_size,
                     levels=args.num_levels, generator=generator, generator_params=params)


def _add_world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="world seed (same seed, same world, byte for byte)")
    p.add_argument("--spec", help="read the WorldSpec from this world.json instead of the flags below")
    p.add_argument("--base-resolution", type=float, default=64.0, help="metres per pixel at level 0 (power of two)")
    p.add_argument("--chunk-size", type=int, default=256, help="pixels per chunk side (power of two)")
    p.add_argument("--num-levels", type=int, default=7, help="number of levels in the world")
    p.add_argument("--params", help='generator parameters as JSON, e.g. \'{"relief": 1.3, "urbanization": 2}\'')
    p.add_argument("--backend", choices=("procedural", "learned"), default="procedural",
                   help="procedural (embedded default) or learned: ortho imagery from a diffusion cascade "
                        "trained by `worldstream train cascade`, or from a diffusers upscaler on disk")
    p.add_argument("--models", help="with --backend learned: the models folder (diffusers format, local only): "
                                    "a worldstream cascade or a StableDiffusionUpscalePipeline folder; upscaler "
                                    "options (prompt, noise_level, guidance_scale, window) go in --params")
    p.add_argument("--sampling-steps", type=int, help="with --backend learned: DDIM steps per window (default 20)")


def _add_training_args(p: argparse.ArgumentParser, data_help: str, out_help: str) -> None:
    """The options every `worldstream train` command shares."""
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps in all (a resumed run stops here too)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate")
    p.add_argument("--mpp", type=float, default=1.0, help="metres per pixel of data that carry no resolution")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)


def _print_progress(row: dict) -> None:
    """A training run's logged step, on stderr."""
    print(f"step {row['step']:>7}  loss {row['loss']:.5f}  {row['seconds']:.1f} s", file=sys.stderr, flush=True)


def _add_bind_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=port)


def _add_airsim_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", help="the settings.json AirSim (or `worldstream sim`) runs with; it holds the world")
    p.add_argument("--host", default="127.0.0.1", help="AirSim RPC host")
    p.add_argument("--port", type=int, default=41451, help="AirSim RPC port")


def _export_chunk(spec_json: str, key_path: str, formats: tuple[str, ...], missing: tuple[str, ...] | None = None,
                  options=None) -> tuple[str, dict[str, bytes]]:
    from worldstream.exporters.mesh_options import MeshOptions
    from worldstream.exporters.formats import export_key

    files = export_key(spec_json, key_path, formats, options or MeshOptions())
    if missing is not None:
        files = {k: v for k, v in files.items() if k in missing}
    return key_path, files


def _keys_for(spec, center, radius: float, levels: tuple[int, int], complete_families: bool) -> list:
    """Chunk keys to export; with complete_families every exported parent gets all four children
    (a REPLACE tileset shows holes where a parent refines into only some of them)."""
    from worldstream.core import keys_in_radius

    lo, hi = levels
    cx, cy = center
    keys = list(keys_in_radius(spec, cx, cy, radius, lo))
    out = list(keys)
    for level in range(lo + 1, hi + 1):
        if complete_families:
            wanted = {k.parent() for k in keys_in_radius(spec, cx, cy, radius, level)}
            keys = [c for p in keys if p in wanted for c in p.children()]
        else:
            keys = keys_in_radius(spec, cx, cy, radius, level)
        out.extend(keys)
    return out


def _todo(store, keys: list, wanted: tuple[str, ...]) -> list:
    """(key, None for a whole chunk, or the files it lacks) for each chunk whose files are not all
    there and verified (`exporters.store.check_chunk`, the rule every store shares); checked a few
    at a time, as an object store answers each request after a round trip."""
    from concurrent.futures import ThreadPoolExecutor

    from worldstream.exporters.store import check_chunk

    def lacking(key):
        missing = check_chunk(store, key.path(), wanted).missing
        return None if not missing else (key, None if len(missing) == len(wanted) else missing)

    with ThreadPoolExecutor(8) as checks:
        return [t for t in checks.map(lacking, keys) if t is not None]


def cmd_generate(args) -> int:
    import time

    from tqdm import tqdm

    from worldstream.core.errors import WorldstreamError
    from worldstream.core.workers import exit_cleanly_on_sigterm, warm_up, worker_pool
    from worldstream.exporters.formats import expected_files, parse_formats, warm_worker
    from worldstream.exporters.store import chunk_rel, claim_world, open_store, write_chunk

    exit_cleanly_on_sigterm()
    spec = _spec_from_args(args)
    formats = parse_formats(args.format)
    lo, hi = args.levels
    if hi >= spec.levels:
        raise WorldstreamError(f"--levels {lo}:{hi} goes past this world's levels 0..{spec.levels - 1}")
    store = open_store(args.out)
    try:
        store.prepare()
    except WorldstreamError as exc:
        shared = " (for --ray: a folder every node mounts, or an object store URL)" if args.ray else ""
        raise WorldstreamError(f"--out {exc}{shared}") from exc
    if not claim_world(store, spec.to_json()):
        raise WorldstreamError(f"{args.out} already holds a different world ({store.url('world.json')}); "
                               f"use another --out")
    options = _glb_storage(args, store, formats)
    stale = store.clean_temporaries()
    keys = _keys_for(spec, args.center, args.radius, args.levels, "tiles" in formats)
    todo = _todo(store, keys, expected_files(formats))
    print(f"world seed {spec.seed}: {len(keys)} chunks at levels {lo}..{hi} as {','.join(formats)}, "
          f"{len(keys) - len(todo)} already done{f', {stale} stale temporaries removed' if stale else ''}",
          file=sys.stderr)
    spec_json = spec.to_json()
    bar = tqdm(total=len(todo), unit="chunk", disable=args.quiet)
    jobs = [(spec_json, k.path(), formats, m, options) for k, m in todo]
    t0 = time.perf_counter()
    ready = done = t0  # workers warm; last chunk written
    if args.ray is not None and todo:
        from worldstream.exporters.ray_export import export_on_ray

        ready, done = export_on_ray(args.ray, spec_json, store.location, formats, [(k.path(), m) for k, m in todo],
                                    args.workers, args.ray_batch, on_done=bar.update, options=options)
    elif args.workers > 1 and len(todo) > 1:
        pool = worker_pool(args.workers)  # its workers exit at once when this process dies (D5)
        try:
            warm_up(lambda n: pool.map(warm_worker, [spec_json] * n), args.workers)
            ready = time.perf_counter()
            for path, files in pool.map(_export_chunk, *zip(*jobs)):
                write_chunk(store, path, files)
                bar.update()
            done = time.perf_counter()
        finally:
            # on SIGTERM / Ctrl-C the queued chunks are dropped, not generated for nobody; the
            # running ones finish (their workers hold nothing to clean up) and the pool is joined
            pool.shutdown(wait=True, cancel_futures=True)
    elif todo:
        warm_worker(spec_json)
        ready = time.perf_counter()
        for job in jobs:
            path, files = _export_chunk(*job)
            write_chunk(store, path, files)
            bar.update()
        done = time.perf_counter()
    bar.close()
    print(f"wrote {len(todo)} chunks to {store.url('chunks')}", file=sys.stderr)
    print(f"timing: start-up {ready - t0:.2f} s, export {done - ready:.2f} s, shutdown {time.perf_counter() - done:.2f} s"
          f" ({len(todo)} chunks, {'ray' if args.ray is not None else 'local'}, {args.workers} worker(s))", file=sys.stderr)
    if "tiles" in formats:
        from worldstream.exporters.tiles import explicit_tileset

        tiles = store.read_many([chunk_rel(k.path(), "tile.json") for k in keys])
        metas = {k: json.loads(tiles[chunk_rel(k.path(), "tile.json")]) for k in keys}
        store.write("tileset.json", (json.dumps(explicit_tileset(spec, metas), indent=1) + "\n").encode())
        print(f"wrote {store.url('tileset.json')} over {len(metas)} chunks", file=sys.stderr)
    return 0


def _glb_storage(args, store, formats: tuple[str, ...]):
    """MeshOptions for `generate --compress`, the store's GLB storage checked (compress.claim_store)."""
    from worldstream.exporters.mesh_options import MeshOptions
    from worldstream.exporters.compress import claim_store, require_meshopt

    if args.compress:
        require_meshopt()  # here; a Ray worker without it fails its task with the same message
    if "glb" in formats or "tiles" in formats:
        claim_store(store, args.compress)
    return MeshOptions(compress=args.compress)


def cmd_plan(args) -> int:
    from worldstream.core.errors import WorldstreamError
    from worldstream.exporters.estimate import estimate, measure, sample_keys, wall_hours
    from worldstream.exporters.formats import parse_formats

    spec = _spec_from_args(args)
    formats = parse_formats(args.format)
    lo, hi = args.levels
    if hi >= spec.levels:
        raise WorldstreamError(f"--levels {lo}:{hi} goes past this world's levels 0..{spec.levels - 1}")
    if args.sample < 1:
        raise WorldstreamError(f"--sample must be at least 1 chunk per level, got {args.sample}")
    keys = _keys_for(spec, args.center, args.radius, args.levels, "tiles" in formats)
    by_level: dict[int, list] = {}
    for k in keys:
        by_level.setdefault(k.level, []).append(k)
    samples = {level: measure(spec, sample_keys(ks, args.sample), formats) for level, ks in by_level.items()}
    rows = estimate(spec, {level: len(ks) for level, ks in by_level.items()}, samples)
    area = (2.0 * args.radius) ** 2 / 1e6
    print(f"world seed {spec.seed}, {spec.generator} backend: {area:g} km^2 around {args.center[0]:g},{args.center[1]:g}, "
          f"levels {lo}..{hi}, formats {','.join(formats)}")
    print(f"{'level':>5} {'m/px':>6} {'chunks':>9} {'CPU s/chunk':>17} {'measured MB/chunk':>18} "
          f"{'CPU hours':>10} {'GB':>9}")
    for r in rows:
        print(f"{r.level:>5} {r.resolution_m:>6g} {r.chunks:>9} {r.seconds_per_chunk:>17.3f} "
              f"{r.bytes_per_chunk / 1e6:>18.3f} {r.cpu_hours:>10.2f} {r.gigabytes:>9.3f}")
    total_chunks = sum(r.chunks for r in rows)
    print(f"total: {total_chunks} chunks, {sum(r.cpu_hours for r in rows):.2f} CPU hours, "
          f"{sum(r.gigabytes for r in rows):.3f} GB; about {wall_hours(rows, args.workers):.2f} hours with "
          f"{args.workers} worker process{'es' if args.workers != 1 else ''}")
    print(f"measured: the median CPU seconds and bytes of {args.sample} chunk(s) per level exported here, one at a "
          f"time after a warm-up; extrapolated: everything else (same machine, workers not slowing each other)")
    return 0


def cmd_preview(args) -> int:
    from PIL import Image

    from worldstream.core import World
    from worldstream.core.preview import level_for, region, shaded_ortho
    from worldstream.exporters.atomic import write_file_atomic
    import io

    spec = _spec_from_args(args)
    world = World(spec, cache_chunks=0)
    level = args.level if args.level is not None else level_for(world, args.size, args.pixels)
    cx, cy = args.center
    r = region(world, cx, cy, args.size, level)
    img = Image.fromarray(shaded_ortho(r["ortho"], r["dsm"], float(r["resolution"])))
    if max(img.size) > args.pixels:
        img = img.resize((args.pixels, args.pixels), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_file_atomic(args.out, buf.getvalue())
    print(f"wrote {args.out}: {args.size:g} m square at level {level} ({spec.resolution(level):g} m/px)",
          file=sys.stderr)
    return 0


RENDER_TYPES = {"scene": ("scene",), "depth": ("depth_planar",), "segmentation": ("segmentation",),
                "normals": ("surface_normals",), "disparity": ("disparity_normalized",)}


def _render_poses(args, spec, world) -> list:
    """Poses from --path (a JSON list of {x, y | lat, lon, agl | z, yaw, pitch, roll}) or the flags."""
    import numpy as np

    from worldstream.core import frames
    from worldstream.render import Pose

    if args.path:
        stops = json.loads(Path(args.path).read_text())
        if not isinstance(stops, list) or not stops:
            raise ValueError(f"--path {args.path}: expected a non-empty JSON list of poses")
    else:
        stop = {"yaw": args.yaw, "pitch": args.pitch, "roll": 0.0}
        if args.geodetic:
            stop.update(lat=args.geodetic[0], lon=args.geodetic[1])
        else:
            stop.update(x=args.at[0], y=args.at[1])
        stop.update({"z": args.z} if args.z is not None else {"agl": args.agl})
        stops = [stop]
    poses = []
    for i, s in enumerate(stops):
        try:
            if "lat" in s:
                o = spec.origin
                x, y, _ = frames.geodetic_to_enu(float(s["lat"]), float(s["lon"]), 0.0, (o.lat, o.lon, o.alt))
            else:
                x, y = float(s["x"]), float(s["y"])
            if "z" in s:
                z = float(s["z"])
            else:
                z = float(world.height_at(np.array([x]), np.array([y]))[1][0]) + float(s.get("agl", 50.0))
            poses.append(Pose.from_angles((float(x), float(y), z), float(s.get("yaw", 0.0)), float(s.get("pitch", -15.0)),
                                          float(s.get("roll", 0.0))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"pose {i}: expected {{x, y | lat, lon, agl | z, yaw, pitch, roll}}, got {s!r} ({exc})")
    return poses


def cmd_render(args) -> int:
    import asyncio

    import numpy as np
    import tifffile

    from worldstream.core import World
    from worldstream.exporters.atomic import write_file_atomic
    from worldstream.render import Intrinsics, image_of
    from worldstream.render.images import depth_vis, outputs_for, png_bytes
    from worldstream.render.view import VIEW_MEMORY_BYTES, WorldView

    spec = _spec_from_args(args)
    world = World(spec, cache_chunks=64)
    types = [t.strip() for t in args.type.split(",") if t.strip()]
    bad = [t for t in types if t not in RENDER_TYPES]
    if bad or not types:
        raise ValueError(f"--type: expected some of {', '.join(RENDER_TYPES)}, got {args.type!r}")
    w, h = args.size
    intr = Intrinsics(w, h, args.fov)
    poses = _render_poses(args, spec, world)
    names = [n for t in types for n in RENDER_TYPES[t]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        service = None
        if args.workers > 0:
            from worldstream.unreal_bridge.chunk_service import ChunkService

            service = ChunkService(spec, cache_dir=args.cache, workers=args.workers,
                                   memory_bytes=VIEW_MEMORY_BYTES)
        view = WorldView(service or world, max_sse=args.max_sse)
        try:
            for i, pose in enumerate(poses):
                frame = await view.frame(pose, intr, outputs_for(names))
                stem = f"{i:04d}" if len(poses) > 1 else "view"
                for t in types:
                    if t == "depth":
                        write_file_atomic(out / f"depth_{stem}.tif", _tiff(tifffile, frame.depth_planar))
                        write_file_atomic(out / f"depth_{stem}.png",
                                          png_bytes((depth_vis(frame.depth_planar) * 255).astype(np.uint8)))
                    elif t == "disparity":
                        write_file_atomic(out / f"disparity_{stem}.png",
                                          png_bytes((image_of(frame, "disparity_normalized") * 255).astype(np.uint8)))
                    else:
                        write_file_atomic(out / f"{t}_{stem}.png", png_bytes(image_of(frame, RENDER_TYPES[t][0])))
                cameras.append({"stem": stem, "position_enu": list(pose.position),
                                "body_to_enu": [list(r) for r in pose.body_to_enu]})
                print(f"worldstream render: {stem}: {view.chunks_fetched} chunks fetched so far", file=sys.stderr)
        finally:
            view.close()
            if service is not None:
                service.close()

    cameras: list[dict] = []
    asyncio.run(run())
    write_file_atomic(out / CAMERAS_JSON, (json.dumps(
        {"width": w, "height": h, "fov_deg": args.fov, "K": intr.matrix().tolist(),
         "body_axes": "x forward, y right, z down (AirSim FRD); pixel (0, 0) top left", "views": cameras},
        indent=1) + "\n").encode())
    print(f"wrote {len(poses)} view(s) of {', '.join(types)} at {w}x{h}, {args.fov:g} deg to {out}", file=sys.stderr)
    return 0


CAMERAS_JSON = "cameras.json"  # `render`'s intrinsics and per-view poses


def _tiff(tifffile, depth) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, depth)
    return buf.getvalue()


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 640x360, got {text!r}")


def cmd_serve(args) -> int:
    from worldstream.core.workers import run_until_terminated
    from worldstream.exporters.mesh_options import MeshOptions
    from worldstream.exporters.compress import require_meshopt
    from worldstream.unreal_bridge.server import run_server

    spec = _spec_from_args(args)
    options = MeshOptions(compress=args.compress)
    if args.compress:
        require_meshopt()

    def announce(port: int) -> None:  # once listening: a bad --cache or port fails before this line
        print(f"worldstream serve: world seed {spec.seed} on http://{args.host}:{port}/tileset.json and "
              f"ws://{args.host}:{port}/", file=sys.stderr)

    run_until_terminated(run_server(spec, host=args.host, port=args.port, cache_dir=args.cache, workers=args.workers,
                                    memory_mb=args.memory_mb, token=args.token, options=options, announce=announce))
    return 0


def _spec_from_settings_or_args(args):
    """The world stored in --settings (by `worldstream airsim settings`) unless --spec is given, else the flags."""
    from worldstream.core import WorldSpec

    stored = json.loads(Path(args.settings).read_text()).get("worldstream", {}).get("world") if args.settings else None
    return WorldSpec.from_dict(stored) if stored and not args.spec else _spec_from_args(args)


def cmd_sim(args) -> int:
    from worldstream.airsim_adapter.server import make_simulator, run_sim
    from worldstream.core.workers import run_until_terminated

    spec = _spec_from_settings_or_args(args)
    sim = make_simulator(settings_path=args.settings, spec=spec, workers=args.workers, cache_dir=args.cache)
    names = ", ".join(sim.vehicles)
    print(f"worldstream sim: world seed {spec.seed}, vehicles {names}, AirSim RPC on {args.host}:{args.port}",
          file=sys.stderr)
    run_until_terminated(run_sim(sim, host=args.host, port=args.port))
    return 0


def cmd_airsim_settings(args) -> int:
    from worldstream.airsim_adapter.settings import build_settings
    from worldstream.core import World
    from worldstream.exporters.atomic import write_file_atomic

    spec = _spec_from_args(args)
    doc = build_settings(World(spec), {"Drone1": args.spawn}, clock_speed=args.clock_speed)
    write_file_atomic(Path(args.out), (json.dumps(doc, indent=2) + "\n").encode())
    if args.unreal_ini:  # the WorldStream plugin's settings, consistent with this settings.json
        from worldstream.airsim_adapter.settings import unreal_plugin_ini

        write_file_atomic(Path(args.unreal_ini), unreal_plugin_ini(args.server, args.token).encode())
    print(f"worldstream airsim settings: wrote {args.out} (Drone1 at NED {doc['Vehicles']['Drone1']['X']:.1f}, "
          f"{doc['Vehicles']['Drone1']['Y']:.1f}, {doc['Vehicles']['Drone1']['Z']:.1f})", file=sys.stderr)
    return 0


def cmd_airsim_fly(args) -> int:
    import airsim

    from worldstream.airsim_adapter.fly import fly_mission
    from worldstream.airsim_adapter.mission import load_mission
    from worldstream.core import World

    spec = _spec_from_settings_or_args(args)
    mission = load_mission(args.mission, spec.origin)
    log = lambda msg: print(f"worldstream airsim fly: {msg}", file=sys.stderr)  # noqa: E731
    client = airsim.MultirotorClient(ip=args.host, port=args.port, timeout_value=args.timeout)
    client.confirmConnection()
    summary = fly_mission(client, airsim, mission, World(spec, cache_chunks=64), args.out, lockstep=not args.realtime,
                          log=log)
    log(f"flew {summary['path_length_m']:.0f} m in {summary['path_sim_s']:.1f} sim s ({summary['wall_s']:.1f} wall s), "
        f"ended {summary['end_miss_m']:.2f} m from the last point"
        + (f"; {summary['frames']} frames in {args.out}" if "frames" in summary else ""))
    return 0


def cmd_airsim_follow(args) -> int:
    import asyncio
    import signal

    import airsim

    from worldstream.airsim_adapter.follow import follow

    spec = _spec_from_settings_or_args(args)
    log = lambda msg: print(f"worldstream airsim follow: {msg}", file=sys.stderr)  # noqa: E731
    make_client = lambda: airsim.MultirotorClient(ip=args.host, port=args.port, timeout_value=60)  # noqa: E731
    width, height = (int(v) for v in args.viewport.lower().split("x"))

    async def run() -> dict:
        # Ctrl-C (or SIGTERM) asks the stream to stop at its next step and report, as a timed run
        # does; a second Ctrl-C interrupts at once (exit 130)
        stop, loop = asyncio.Event(), asyncio.get_running_loop()

        def on_signal() -> None:
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        loop.add_signal_handler(signal.SIGINT, on_signal)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        return await follow(args.server, make_client, spec.origin, vehicle=args.vehicle,
                            cameras=tuple(c for c in args.cameras.split(",") if c), hz=args.hz, out=args.out,
                            duration=args.duration, viewport=(width, height), max_sse=args.max_sse,
                            token=args.token, log=log, stop=stop)

    summary = asyncio.run(run())
    print(json.dumps(summary))
    return 0


def cmd_train_cascade(args) -> int:
    from worldstream.core.generators.learned.training import TrainConfig, TrainingError, train_cascade

    try:
        channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        raise TrainingError(f"--channels expects comma-separated integers, e.g. 32,64,128; got {args.channels!r}") from None
    config = TrainConfig(sample_size=args.window, scale_factor=args.scale_factor, block_out_channels=channels,
                         layers_per_block=args.layers_per_block, condition_channels=args.condition_channels,
                         norm_num_groups=args.norm_groups, steps=args.steps, batch_size=args.batch_size,
                         learning_rate=args.lr, p2_gamma=args.p2_gamma, octaves=args.octaves,
                         default_mpp=args.mpp, checkpoint_every=args.checkpoint_every, seed=args.seed)

    summary = train_cascade(args.data, args.out, config, resume=args.resume, progress=_print_progress)
    print(json.dumps(summary, indent=2))
    return 0


def _ints(text: str, flag: str) -> tuple[int, ...]:
    """A comma-separated list of integers from a flag, or a TrainingError naming the flag."""
    from worldstream.core.generators.learned.training import TrainingError

    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise TrainingError(f"{flag} expects comma-separated integers, e.g. 32,64; got {text!r}") from None


def cmd_train_height(args) -> int:
    from worldstream.core.generators.learned.height_training import HeightTrainConfig, train_height

    config = HeightTrainConfig(window=args.window, vae_channels=_ints(args.vae_channels, "--vae-channels"),
                               unet_channels=_ints(args.channels, "--channels"), norm_num_groups=args.norm_groups,
                               min_scale=args.min_scale, relief_gain=args.relief_gain, pretrained=args.pretrained,
                               steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                               default_mpp=args.mpp, checkpoint_every=args.checkpoint_every, seed=args.seed)

    summary = train_height(args.data, args.out, config, resume=args.resume, progress=_print_progress)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train_facades(args) -> int:
    from worldstream.core.generators.learned.facade_training import FacadeTrainConfig, train_facades

    vae_steps = args.vae_steps if args.vae_steps is not None else args.steps // 4
    config = FacadeTrainConfig(views=args.views, view_size=args.view_size, cross_view=not args.no_cross_view,
                               tau=args.tau, vae_channels=_ints(args.vae_channels, "--vae-channels"),
                               unet_channels=_ints(args.channels, "--channels"), norm_num_groups=args.norm_groups,
                               pretrained=args.pretrained, steps=args.steps, vae_steps=0 if args.pretrained else vae_steps,
                               batch_size=args.batch_size, learning_rate=args.lr,
                               checkpoint_every=args.checkpoint_every, seed=args.seed)
    summary = train_facades(args.data, args.out, config, resume=args.resume, progress=_print_progress)
    print(json.dumps(summary, indent=2))
    return 0


def _read_raster(path: str):
    """(H, W) float32 heights from a GeoTIFF (.tif/.tiff), or (H, W, 3) float32 in [0, 1] from an image."""
    import numpy as np

    from worldstream.core.errors import WorldstreamError

    try:
        if Path(path).suffix.lower() in (".tif", ".tiff"):
            import tifffile
            return np.asarray(tifffile.imread(path), dtype=np.float32)
        from PIL import Image
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise WorldstreamError(f"cannot read {path}: {exc}") from None


def cmd_metrics_heights(args) -> int:
    import numpy as np

    from worldstream.core.errors import WorldstreamError

    pred, truth = _read_raster(args.predicted), _read_raster(args.truth)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise WorldstreamError(f"expected two height GeoTIFFs of one shape, got {pred.shape} and {truth.shape}")
    diff = pred.astype(np.float64) - truth.astype(np.float64)
    print(json.dumps({"predicted": args.predicted, "truth": args.truth, "samples": int(diff.size),
                      "rmse_m": float(np.sqrt(np.mean(diff ** 2))), "mae_m": float(np.mean(np.abs(diff))),
                      "bias_m": float(np.mean(diff))}, indent=2))
    return 0


def cmd_metrics_views(args) -> int:
    import numpy as np
    import tifffile
    from PIL import Image

    from worldstream.core.errors import WorldstreamError
    from worldstream.render import Intrinsics, Pose
    from worldstream.render.consistency import view_consistency
    from worldstream.render.renderer import Frame

    folder = Path(args.folder)
    try:
        doc = json.loads((folder / CAMERAS_JSON).read_text())
        intr = Intrinsics(doc["width"], doc["height"], doc["fov_deg"])
        views = []
        for cam in doc["views"]:
            scene = np.asarray(Image.open(folder / f"scene_{cam['stem']}.png").convert("RGB"))
            depth = tifffile.imread(folder / f"depth_{cam['stem']}.tif").astype(np.float32)
            pose = Pose.from_matrix(cam["position_enu"], np.array(cam["body_to_enu"]))
            views.append(Frame(intr, pose, scene, depth, None, None, None))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WorldstreamError(f"{folder}: expected the output of `worldstream render --path ... --type scene,depth` "
                               f"({CAMERAS_JSON}, scene_*.png, depth_*.tif): {exc}") from exc
    print(json.dumps({"folder": str(folder), "views": len(views), **view_consistency(views, circular=args.circular)},
                     indent=2))
    return 0


def cmd_metrics_seams(args) -> int:
    from worldstream.core.seams import seam_stats

    stats = seam_stats(_read_raster(args.image), args.period, args.offset)
    print(json.dumps({"image": args.image, "period": args.period, "offset": list(args.offset), **stats.as_dict()},
                     indent=2))
    return 0


def _offset(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.split(","))
        return r, c
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROW,COL integers, got {text!r}") from None


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
        if lo > hi:
            raise ValueError
        return lo, hi
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a range MIN:MAX with MIN <= MAX, got {text!r}") from None


def cmd_dataset_build(args) -> int:
    from worldstream.dataset import BuildSettings, Ranges, build
    from worldstream.dataset.scenes import read_centres

    try:
        ranges = Ranges(altitude=args.altitude, pitch=args.pitch, roll=args.roll, radius=args.radius)
    except ValueError as exc:
        from worldstream.dataset import DatasetError
        raise DatasetError(str(exc)) from None
    w, h = args.size
    settings = BuildSettings(seed=args.seed, scenes=args.scenes, views=args.views, width=w, height=h, fov_deg=args.fov,
                             ranges=ranges, region_m=args.region, spacing_m=args.spacing,
                             centres=read_centres(args.centers) if args.centers else (), horizon_m=args.horizon,
                             max_sse=args.max_sse, spec=_spec_from_args(args))
    card = build(settings, args.out)
    fam = ", ".join(f"{k} {v}" for k, v in card["per_family"].items())
    print(f"worldstream dataset build: {card['scenes']} scenes, {card['frames']} frames, {card['qa_pairs']} QA pairs "
          f"({fam}) in {args.out}", file=sys.stderr)
    return 0


def cmd_dataset_eval(args) -> int:
    from worldstream.dataset.evaluate import evaluate_files, format_report

    report = evaluate_files(args.data, args.pred, args.split)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def cmd_dataset_baseline(args) -> int:
    from worldstream.dataset.evaluate import majority_predictions, split_items
    from worldstream.exporters.atomic import write_file_atomic

    items = split_items(args.data, args.split)
    predictions = majority_predictions(split_items(args.data, "train"), items)
    write_file_atomic(Path(args.out), "".join(json.dumps({"id": i, "answer": a}) + "\n"
                                              for i, a in predictions.items()).encode())
    print(f"worldstream dataset baseline: {len(predictions)} majority answers to {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worldstream", description="Unbounded deterministic 3D worlds, block by block.")
    p.add_argument("--version", action="version", version=f"worldstream {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate and export the chunks around a point",
                       description="Write DIR/world.json, DIR/chunks/{level}/{x}/{y}/ (mesh.glb, tile.json; "
                                   "height.tif, dem.tif, normal.png, semantic.png, instances.png, ortho.png, their "
                                   ".aux.xml georeference, annotations.json; sha256.json) and DIR/tileset.json. Safe to interrupt and rerun: finished "
                                   "chunks are skipped, and a rerun with more formats adds only the missing files.")
    _add_world_args(g)
    g.add_argument("--center", type=_pair, default=(0.0, 0.0), help="X,Y world metres (east,north)")
    g.add_argument("--radius", type=float, default=500.0, help="half side of the square to cover, metres")
    g.add_argument("--levels", type=_levels, default=(4, 6), help="levels A:B to generate (inclusive)")
    g.add_argument("--out", required=True, help="output folder, or an object store URL through fsspec "
                                                "(s3://bucket/prefix, gs://...; pip install 'worldstream[s3]')")
    g.add_argument("--format", default="glb,sidecars,tiles",
                   help="comma-separated export formats: glb (mesh.glb + tile.json), sidecars (GeoTIFF/PNG/JSON "
                        "layers), tiles (glb plus DIR/tileset.json, 3D Tiles 1.1)")
    g.add_argument("--workers", type=int, default=1, help="worker processes (with --ray and no address: the local "
                                                          "cluster's CPUs)")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="export on a Ray cluster: its head's HOST:PORT, or none to start a local one (pip install "
                        "'worldstream[ray]'); --out must be a folder every node mounts at the same path, or an "
                        "object store URL every node can reach")
    g.add_argument("--ray-batch", type=int, default=None,
                   help="chunks per Ray task (default: sized so each CPU of the cluster gets at least 16 tasks, "
                        "1..16 chunks)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--compress", action="store_true",
                   help="compressed GLBs: meshopt geometry (EXT_meshopt_compression, KHR_mesh_quantization) and WebP "
                        "base colour (EXT_texture_webp); readers need a meshopt decoder (docs/compression.md; pip "
                        "install 'worldstream[compress]')")
    g.set_defaults(func=cmd_generate)

    pl = sub.add_parser("plan", help="estimate what an export will cost: chunks, bytes and CPU hours per level",
                        description="Count the chunks `generate` would export for a region, export --sample of them "
                                    "per level here to measure time and size, and extrapolate to the whole region.")
    _add_world_args(pl)
    pl.add_argument("--center", type=_pair, default=(0.0, 0.0), help="X,Y world metres (east,north)")
    pl.add_argument("--radius", type=float, default=500.0, help="half side of the square to cover, metres")
    pl.add_argument("--levels", type=_levels, default=(4, 6), help="levels A:B (inclusive)")
    pl.add_argument("--format", default="glb,sidecars,tiles", help="export formats, as for generate")
    pl.add_argument("--sample", type=int, default=2, help="chunks per level to export and measure")
    pl.add_argument("--workers", type=int, default=1, help="worker processes to estimate the wall time for")
    pl.set_defaults(func=cmd_plan)

    sv = sub.add_parser("serve", help="stream chunks around moving cameras (websocket) and serve 3D Tiles (HTTP)",
                        description="One port: the streaming protocol v1 on websocket (docs/protocol.md) and HTTP: "
                                    "/tileset.json (implicit, unbounded), /subtrees/..., /implicit/{l}/{x}/{y}.glb, "
                                    "/chunks/{level}/{x}/{y}/{file}, /stats.")
    _add_world_args(sv)
    _add_bind_args(sv, 8765)
    sv.add_argument("--cache", help="chunk cache: a folder or an fsspec URL such as s3://bucket/prefix (chunks "
                                   "written atomically and verified; a `generate` output serves as it is)")
    sv.add_argument("--workers", type=int, default=2, help="generator processes")
    sv.add_argument("--memory-mb", type=int, default=256, help="in-memory chunk cache budget")
    sv.add_argument("--token", help="require this token (hello.token, or ?token= / Authorization: Bearer on HTTP)")
    sv.add_argument("--compress", action="store_true", help="serve compressed GLBs, as generate --compress")
    sv.set_defaults(func=cmd_serve)

    sm = sub.add_parser("sim", help="headless AirSim-compatible simulator (msgpack-rpc; the official airsim client works)",
                        description="Flies SimpleFlight-like multirotors over the generated world and renders Scene, "
                                    "DepthPlanar, DepthPerspective and Segmentation images by ray casting it. The "
                                    "world is the one stored in --settings (by `worldstream airsim settings`) unless "
                                    "--spec is given, else the world flags.")
    _add_world_args(sm)
    _add_bind_args(sm, 41451)
    sm.add_argument("--settings", help="AirSim settings.json (default: one drone above the ground at the origin)")
    sm.add_argument("--workers", type=int, default=2,
                    help="generator processes of the chunk service the ground streams through (0: build in process)")
    sm.add_argument("--cache", help="chunk cache folder or fsspec URL (s3://bucket/prefix), shareable with "
                                   "`worldstream serve --cache`")
    sm.set_defaults(func=cmd_sim)

    a = sub.add_parser("airsim", help="AirSim adapter commands")
    asub = a.add_subparsers(dest="airsim_command", required=True)
    st = asub.add_parser("settings", help="write an AirSim settings.json for a world",
                         description="SimMode Multirotor, OriginGeopoint at the world's geodetic origin, Drone1 "
                                     "spawned above the generated ground at --spawn, five cameras capturing Scene, "
                                     "DepthPlanar, DepthPerspective and Segmentation at 256x144, 90 deg.")
    _add_world_args(st)
    st.add_argument("--out", required=True, help="settings.json to write")
    st.add_argument("--spawn", type=_pair, default=(0.0, 0.0), help="X,Y world metres (east,north) of Drone1")
    st.add_argument("--clock-speed", type=float, default=1.0)
    st.add_argument("--unreal-ini", help="also write the WorldStream Unreal plugin's settings (a DefaultGame.ini "
                                         "section, docs/unreal.md) to this file, consistent with settings.json")
    st.add_argument("--server", default="ws://127.0.0.1:8765/", help="with --unreal-ini: the streaming server's URL")
    st.add_argument("--token", help="with --unreal-ini: the server's token, if it requires one")
    st.set_defaults(func=cmd_airsim_settings)
    fl = asub.add_parser("fly", help="fly a mission file with the official airsim client and record a dataset",
                         description="Plans a terrain-following path through the mission's waypoints over the "
                                     "generated world, flies it (takeoff, climb, moveOnPathAsync, land) against AirSim "
                                     "or `worldstream sim`, and records images, intrinsics, poses and ground truth into "
                                     "--out. The world is the one stored in --settings unless --spec is given, else "
                                     "the world flags. Mission format: docs/airsim.md.")
    fl.add_argument("mission", help="mission file (.json, .yaml or .yml)")
    _add_world_args(fl)
    _add_airsim_client_args(fl)
    fl.add_argument("--out", help="dataset folder (default: fly without recording)")
    fl.add_argument("--realtime", action="store_true",
                    help="capture as the sim clock runs instead of pausing the simulation for each frame (lockstep)")
    fl.add_argument("--timeout", type=float, default=3600, help="seconds the client waits for any one call")
    fl.set_defaults(func=cmd_airsim_fly)
    fo = asub.add_parser("follow", help="stream chunks around an AirSim vehicle through `worldstream serve`",
                         description="Polls the vehicle's cameras with the official airsim client, sends their poses "
                                     "to the streaming server as views (AirSim frame, anchored at the vehicle's home) "
                                     "and keeps the chunks it sends: with --out, every chunk's files under "
                                     "OUT/chunks/{level}/{x}/{y}/ and the resident set in OUT/resident.json, written "
                                     "atomically. Prints a JSON summary when done. The world (for the geodetic home) is "
                                     "the one in --settings, else --spec or the world flags.")
    _add_world_args(fo)
    fo.add_argument("--server", default="ws://127.0.0.1:8765/", help="the streaming server's websocket URL")
    _add_airsim_client_args(fo)
    fo.add_argument("--vehicle", default="", help="vehicle name (default: the first)")
    fo.add_argument("--cameras", default="front_center,bottom_center", help="comma-separated camera names to stream for")
    fo.add_argument("--hz", type=float, default=10.0, help="pose polls and views per second")
    fo.add_argument("--viewport", default="1920x1080", help="WIDTHxHEIGHT pixels the screen-space error refers to")
    fo.add_argument("--max-sse", type=float, default=16.0, help="maximum screen-space error, pixels")
    fo.add_argument("--out", help="folder for the received chunks and resident.json (default: keep them in memory)")
    fo.add_argument("--duration", type=float, help="seconds to run (default: until interrupted)")
    fo.add_argument("--token", help="the server's token, if it requires one")
    fo.set_defaults(func=cmd_airsim_follow)

    tr = sub.add_parser("train", help="train learned models")
    trsub = tr.add_subparsers(dest="train_command", required=True)
    tc = trsub.add_parser("cascade", help="train the resolution-guided diffusion cascade on a folder of images",
                          description="Train the cascade denoiser on the images under --data (PNG / JPEG / GeoTIFF, "
                                      "recursively; m/px from GeoTIFF tags, worldstream exports, else --mpp). Pairs "
                                      "are made on the fly by high-order degradation at random target resolutions. "
                                      "Writes a diffusers-format models folder (for --backend learned --models OUT), "
                                      "a model card, OUT/training/log.jsonl, loss.png and checkpoints.")
    _add_training_args(tc, "folder of training images", "models folder to write")
    tc.add_argument("--window", type=int, default=64, help="window side in pixels the model generates")
    tc.add_argument("--scale-factor", type=int, default=2, choices=(2, 4),
                    help="resolution ratio per cascade step: 2 = one quadtree level, 4 = as in MetaEarth")
    tc.add_argument("--channels", default="32,64,128", help="UNet block channels, comma-separated")
    tc.add_argument("--layers-per-block", type=int, default=1)
    tc.add_argument("--condition-channels", type=int, default=16, help="channels of the condition encoder")
    tc.add_argument("--norm-groups", type=int, default=8, help="group-norm groups (must divide every channel count)")
    tc.add_argument("--p2-gamma", type=float, default=0.0, help="P2 loss weighting exponent (0: off, 1: P2's default)")
    tc.add_argument("--octaves", type=int, default=2, help="coarser target resolutions made by halving images")
    tc.set_defaults(func=cmd_train_cascade)

    th = trsub.add_parser("height", help="train the height model p(heights | ortho) on (ortho, DEM/DSM) pairs",
                          description="Train the height model (latent diffusion: VAE-encoded ortho, CLIP task prompt, "
                                      "DEM and DSM relative to the coarser level's heights) on the pairs under --data: "
                                      "worldstream chunk folders (`generate --format sidecars`: ortho.png, height.tif, "
                                      "dem.tif) or NAME_ortho.tif + NAME_dsm.tif [+ NAME_dem.tif]. Writes a "
                                      "diffusers-format height model folder (put it at MODELS/height for --backend "
                                      "learned --models MODELS), a model card, OUT/training/log.jsonl, loss.png and "
                                      "checkpoints.")
    _add_training_args(th, "folder of (ortho, heights) pairs", "height model folder to write (e.g. MODELS/height)")
    th.add_argument("--window", type=int, default=64, help="window side in pixels")
    th.add_argument("--channels", default="64,128", help="UNet block channels, comma-separated")
    th.add_argument("--vae-channels", default="32,32,32", help="a fresh VAE's block channels (2^(blocks-1) x smaller)")
    th.add_argument("--norm-groups", type=int, default=8, help="group-norm groups (must divide every channel count)")
    th.add_argument("--min-scale", type=float, default=4.0, help="smallest per-window height scale, metres")
    th.add_argument("--relief-gain", type=float, default=0.1,
                    help="the window scale's growth with the coarser window's relief (max - min)")
    th.add_argument("--pretrained", help="local diffusers folder whose vae/, text_encoder/, tokenizer/ to use, frozen")
    th.set_defaults(func=cmd_train_height)

    tf = trsub.add_parser("facades", help="train the multi-view facade model on renders of blocks with known facades",
                          description="Train the facade model (AnimateDiff-like multi-view latent diffusion: per view "
                                      "[noisy latent, VAE(masked render), mask], a view-index embedding, cross-view "
                                      "local attention) on the blocks under --data: block folders (block.json, "
                                      "views.png, mask.png), or a worldstream export (`generate`: world.json and "
                                      "chunks/), whose building levels are rendered into OUT/training/blocks first. "
                                      "Writes a diffusers-format facade model folder (put it at MODELS/facades for "
                                      "--backend learned --models MODELS), a model card, OUT/training/log.jsonl, "
                                      "loss.png and checkpoints.")
    _add_training_args(tf, "folder of facade blocks, or a worldstream export", "facade model folder to write "
                       "(e.g. MODELS/facades)")
    tf.set_defaults(batch_size=2)
    tf.add_argument("--views", type=int, default=8, help="views per block, 360/views degrees apart")
    tf.add_argument("--view-size", type=int, default=64, help="view side in pixels")
    tf.add_argument("--no-cross-view", action="store_true", help="without cross-view local attention (the ablation)")
    tf.add_argument("--tau", type=float, default=0.25, help="|n . z_up| below which a face is vertical (painted)")
    tf.add_argument("--channels", default="32,64", help="UNet block channels, comma-separated")
    tf.add_argument("--vae-channels", default="32,32", help="a fresh VAE's block channels (2^(blocks-1) x smaller)")
    tf.add_argument("--vae-steps", type=int, help="first steps that train a fresh VAE alone (default steps / 4)")
    tf.add_argument("--norm-groups", type=int, default=8, help="group-norm groups (must divide every channel count)")
    tf.add_argument("--pretrained", help="local diffusers folder whose vae/, text_encoder/, tokenizer/ to use, frozen")
    tf.set_defaults(func=cmd_train_facades)

    me = sub.add_parser("metrics", help="measure outputs")
    mesub = me.add_subparsers(dest="metrics_command", required=True)
    ms = mesub.add_parser("seams", help="seam gradient across stitching lines vs inside tiles, as a ratio",
                          description="Mean absolute gradient across the stitching lines of a tiled image (every "
                                      "--period px from --offset) and inside the tiles; prints both and their ratio "
                                      "(1 = seamless) as JSON.")
    ms.add_argument("image", help="image file (PNG, JPEG, ...) or height GeoTIFF (.tif: height.tif, dem.tif)")
    ms.add_argument("--period", type=int, required=True, help="pixels between stitching lines (the window stride)")
    ms.add_argument("--offset", type=_offset, default=(0, 0), help="ROW,COL of the first pixel after a line")
    ms.set_defaults(func=cmd_metrics_seams)
    mh = mesub.add_parser("heights", help="height error (RMSE, MAE, bias in metres) against ground truth",
                          description="Compares two height GeoTIFFs of one shape (e.g. a learned world's height.tif "
                                      "and the procedural world's for the same chunk) and prints RMSE, MAE and bias "
                                      "in metres as JSON.")
    mh.add_argument("predicted", help="height GeoTIFF to score")
    mh.add_argument("truth", help="ground-truth height GeoTIFF")
    mh.set_defaults(func=cmd_metrics_heights)
    mv = mesub.add_parser("views", help="multi-view consistency (PSNR, SSIM) of rendered or generated views",
                          description="Each view's colours carried into the next one through the geometry (its depth "
                                      "image), compared with that view over the pixels both see, as PSNR and SSIM "
                                      "(MetaEarth3D's multi-view consistency); reads the folder `worldstream render` "
                                      "writes with --type scene,depth. Prints JSON.")
    mv.add_argument("folder", help="folder with cameras.json, scene_*.png and depth_*.tif")
    mv.add_argument("--circular", action="store_true", help="the views go round: compare the last with the first too")
    mv.set_defaults(func=cmd_metrics_views)

    rv = sub.add_parser("render", help="draw views of the world's meshes (scene, depth, segmentation) to files",
                        description="Renders the chunk meshes that the exporters write, selected around the camera "
                                    "as the streaming server selects them, with the simulator's renderer (OpenGL on "
                                    "headless EGL). One view from the flags, or a flight path from --path as "
                                    "numbered files.")
    _add_world_args(rv)
    rv.add_argument("--at", type=_pair, default=(0.0, 0.0), help="X,Y world metres (east,north) of the camera")
    rv.add_argument("--geodetic", type=_pair, help="LAT,LON degrees of the camera instead of --at")
    rv.add_argument("--agl", type=float, default=50.0, help="camera height above the surface (terrain, roofs), m")
    rv.add_argument("--z", type=float, help="camera height above sea level (m) instead of --agl")
    rv.add_argument("--yaw", type=float, default=0.0, help="degrees clockwise from north (AirSim's yaw)")
    rv.add_argument("--pitch", type=float, default=-15.0, help="degrees, negative looks down")
    rv.add_argument("--path", help="JSON list of poses {x, y | lat, lon, agl | z, yaw, pitch, roll}: numbered files")
    rv.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT pixels")
    rv.add_argument("--fov", type=float, default=90.0, help="horizontal field of view, degrees")
    rv.add_argument("--type", default="scene", help="comma list of " + ", ".join(RENDER_TYPES))
    rv.add_argument("--max-sse", type=float, default=16.0, help="screen-space error (px) of the chunk selection")
    rv.add_argument("--workers", type=int, default=0, help="generator processes (0: build chunks in this process)")
    rv.add_argument("--cache", help="chunk disk cache folder (with --workers; shareable with serve --cache)")
    rv.add_argument("--out", required=True, help="folder for the files")
    rv.set_defaults(func=cmd_render)

    v = sub.add_parser("preview", help="render an ortho + hillshade picture of a region",
                       description="Mosaic the chunks of a square region at a suitable level and shade them.")
    _add_world_args(v)
    v.add_argument("--center", type=_pair, default=(0.0, 0.0), help="X,Y world metres (east,north)")
    v.add_argument("--size", type=float, default=8000.0, help="side of the square, metres")
    v.add_argument("--pixels", type=int, default=1024, help="output picture side in pixels")
    v.add_argument("--level", type=int, help="force a level (default: chosen from --size and --pixels)")
    v.add_argument("--out", required=True, help="PNG file to write")
    v.set_defaults(func=cmd_preview)

    ds = sub.add_parser("dataset", help="UAV views with 3D ground truth and spatial-reasoning QA (the data engine)")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)
    db = dsub.add_parser("build", help="render scenes along random camera trajectories and write QA in five families",
                         description="Picks scene centres over relief and land-cover types (or --centers), flies random "
                                     "6-DOF trajectories over each, renders RGB, depth, classes, instance ids and "
                                     "normals with the camera in ENU and geodetic coordinates, and writes spatial, "
                                     "morphology, counting, geometry and caption QA as chat JSONL split by scene, a "
                                     "dataset card and an example picture. Deterministic; safe to interrupt and rerun "
                                     "(finished scenes are kept). Layout: docs/dataset.md.")
    _add_world_args(db)
    db.add_argument("--scenes", type=int, required=True, help="number of scenes")
    db.add_argument("--out", required=True, help="dataset folder")
    db.add_argument("--centers", help="JSON list of scene centres [x, y] (world metres) instead of picking them")
    db.add_argument("--views", type=int, default=8, help="frames per scene")
    db.add_argument("--size", type=_size, default=(512, 384), help="WIDTHxHEIGHT pixels")
    db.add_argument("--fov", type=float, default=90.0, help="horizontal field of view, degrees")
    db.add_argument("--altitude", type=_range, default=(30.0, 150.0), help="MIN:MAX metres above the surface")
    db.add_argument("--pitch", type=_range, default=(-85.0, -35.0),
                    help="MIN:MAX degrees, negative looks down (write --pitch=-85:-35)")
    db.add_argument("--roll", type=float, default=6.0, help="largest |roll|, degrees")
    db.add_argument("--radius", type=float, default=160.0, help="metres from a scene centre the trajectory stays within")
    db.add_argument("--region", type=float, default=24000.0, help="side (m) of the square around the origin where "
                                                                  "scene centres are picked")
    db.add_argument("--spacing", type=float, default=500.0, help="least distance (m) between picked scene centres")
    db.add_argument("--horizon", type=float, default=4000.0, help="farthest chunk drawn, metres")
    db.add_argument("--max-sse", type=float, default=16.0, help="screen-space error (px) of the chunk selection")
    db.set_defaults(func=cmd_dataset_build)
    de = dsub.add_parser("eval", help="score predictions: accuracy per family and overall, ROUGE-L for captions",
                         description="Predictions: JSONL lines with the item \"id\" and an \"answer\" (or an "
                                     "assistant message, so a split file scores itself at 100 %%). Numbers count "
                                     "within each item's tolerance; choices and counts must match.")
    de.add_argument("--data", required=True, help="a folder written by `worldstream dataset build`")
    de.add_argument("--pred", required=True, help="predictions JSONL")
    de.add_argument("--split", default="test", choices=("train", "val", "test"))
    de.add_argument("--json", action="store_true", help="print the full report as JSON")
    de.set_defaults(func=cmd_dataset_eval)
    dm = dsub.add_parser("baseline", help="write the majority-answer baseline's predictions for a split",
                         description="For every item, the most common answer of its question template in the "
                                     "train split.")
    dm.add_argument("--data", required=True, help="a folder written by `worldstream dataset build`")
    dm.add_argument("--out", required=True, help="predictions JSONL to write")
    dm.add_argument("--split", default="test", choices=("train", "val", "test"))
    dm.set_defaults(func=cmd_dataset_baseline)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # Ctrl-C at any point, also while the heavy modules import, ends without a traceback
        return _run(args)
    except KeyboardInterrupt:
        hint = "; finished chunks are kept, rerun to continue" if args.command == "generate" else ""
        name = " ".join(filter(None, (args.command, getattr(args, "airsim_command", None))))
        print(f"worldstream {name}: interrupted{hint}", file=sys.stderr)
        return 130


def _run(args) -> int:
    from worldstream.core.errors import WorldstreamError

    try:
        return args.func(args)
    except (WorldstreamError, OSError, ValueError) as exc:  # ValueError: bad values in flags or files
        print(f"worldstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
