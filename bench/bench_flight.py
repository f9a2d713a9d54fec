"""Benchmark: a scripted flight streamed from `worldstream serve` (a separate process, loopback).

Usage: python bench/bench_flight.py [--speeds 30,150] [--duration 60] [--workers 2] [--max-sse 16] [--cache DIR] [--quick]
For each speed, a fresh server (cold caches unless --cache names a filled store; the quick form
flies every speed on one server: later speeds start on what earlier flights generated, and its
generated / cancelled counts add up); the
drone flies straight, 120 m above the generated ground (climbing before ridges), camera 90 deg
horizontal FOV, 1920x1080, max SSE 16 (the quick form: 32, half the chunks of the finest level to
generate before the first view resolves), pitched 20 deg down, view updates at 30 Hz. What a view
requires is judged by the client itself: the chunks in its camera's frustum, at the level the SSE
rule with the server's hysteresis tolerance asks (on the height spans of the chunks it received),
resident at that level or finer. Before the flight the client waits until its first view is
resolved (printed as the start-up time; before that, the server's worker processes were warm:
torch imported and the World built, which the server starts as it starts listening, timed apart
as "workers warm s"). Prints per speed:
- resident fraction: view updates at which every chunk the view requires is resident, at the
  moment the client sends the update (target 100%);
- p50 / p95 duration of the gaps of the flight (live.Gaps: from a view update that lacks a chunk
  in view to the next complete one; an upper bound of the wait for the most urgent missing chunk)
  with their number (none where every view is complete); the server's share of views that needed
  nothing new; and at the end of the line the server's own p95 latency from a view to the delivery
  of its most urgent missing chunk in view (prefetches not; the start-up view included: its wait
  for a level-0 chunk is one of few samples);
- chunks and bytes per second received, and the server's generated / cancelled counts;
- the server's RSS with its workers, the CPU seconds of its main process (start-up and flight;
  its workers excluded: what selection and sending cost), and the 1-minute load average (the
  machine may be shared: wall-clock latencies grow with the load, CPU seconds much less);
- last, the same start-up and resident fraction "all around": with the chunks outside the frustum
  too, which the server keeps (coarse) so that a turning camera never shows a hole, and sends
  after those in view ("-": the first view's all-around set was not complete by the flight's end);
  then "hole-free s": when every chunk in the first view was covered, if only by a coarser
  ancestor (the server sends each level-0 area's root first as a hole filler): from then on the
  first view shows terrain everywhere, and the start-up time is when it shows it at full detail.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import (VIEW_HZ, Flight, Gaps, altitude_profile, cpu_s, final_stats, flight_view,  # noqa: E402
                  fly_views, load_average, rss_mb, start_server, stop_server, wait_warm)


async def fly(url: str, spec, flight: Flight, altitude, duration: float, max_sse: float = 16.0) -> dict:
    from worldstream.exporters.tiles import ROOT_LEVELS, implicit_root_error
    from worldstream.unreal_bridge import lod
    from worldstream.unreal_bridge.client import StreamClient

    root = implicit_root_error(spec)
    level_error = lambda level: root / (1 << (level + ROOT_LEVELS))  # noqa: E731
    spans = lod.HeightSpans(level_error)
    resident: set = set()
    received = {"chunks": 0, "bytes": 0}
    finest = spec.levels - 1
    gaps = Gaps()

    def required(view) -> tuple[list, list]:
        """(the chunks in view, every chunk) the view requires, most urgent first: the server
        refines at max_sse * (1 + hysteresis) at the latest."""
        c = lod.camera_from_view(view)
        strict = lod.Camera(c.position, c.forward, c.up, c.fov_x, c.width, c.height, max_sse * 1.2)
        selection = lod.select(spec, [strict], level_error, z_range=spans, hysteresis=0.0)
        return [s.key for s in selection if s.visible], [s.key for s in selection]

    def whole(keys: list) -> bool:
        return all(lod.resolved(k, resident, finest) for k in keys)

    async with StreamClient(url, client="bench_flight") as client:
        async def receive():
            async for kind, obj in client.events():
                if kind == "chunk":
                    resident.add(obj.key)
                    spans.learn(obj.key, *obj.z_range)
                    received["chunks"] += 1
                    received["bytes"] += sum(len(v) for v in obj.parts.values()) + 84
                elif kind == "unload":
                    resident.difference_update(obj)
                elif kind == "stats":
                    received["stats"] = obj
                elif kind == "error":
                    raise RuntimeError(f"server error: {obj}")

        reader = asyncio.create_task(receive())
        t0 = time.monotonic()
        first = flight_view(flight, altitude, 0.0, max_sse)
        await client.view([first])
        hole_free = None  # when every chunk in the first view is covered, if only by a coarser ancestor
        while not whole(in_view := required(first)[0]):
            if hole_free is None and all(lod.covered(k, resident, finest) for k in in_view):
                hole_free = time.monotonic() - t0
            await asyncio.sleep(0.05)
            if reader.done():
                reader.result()
        startup = time.monotonic() - t0
        hole_free = startup if hole_free is None else hole_free
        first_all = required(first)[1]
        startup_all = startup if whole(first_all) else None
        base_chunks, base_bytes = received["chunks"], received["bytes"]
        resolved_views = resolved_all = 0

        def judge(view) -> None:  # is what this view requires resident as it is sent?
            nonlocal resolved_views, resolved_all, startup_all
            in_view, everything = required(view)
            resolved_views += gaps.on_view(whole(in_view), time.monotonic())
            resolved_all += whole(everything)
            if startup_all is None and whole(first_all):
                startup_all = time.monotonic() - t0

        views, elapsed = await fly_views(client, flight, altitude, duration, reader, before=judge, max_sse=max_sse)
        gaps.close(time.monotonic())
        stats = await final_stats(client, received, reader)
    c = stats.get("client", {})
    return {"startup_s": startup, "hole_free_s": hole_free, "views": views, "resident_fraction": resolved_views / max(views, 1),
            "startup_all_s": startup_all, "resident_all_fraction": resolved_all / max(views, 1),
            "chunks_per_s": (received["chunks"] - base_chunks) / elapsed,
            "bytes_per_s": (received["bytes"] - base_bytes) / elapsed,
            "latency_ms_p50": gaps.quantile_ms(0.5), "latency_ms_p95": gaps.quantile_ms(0.95),
            "latency_samples": len(gaps.gaps), "server_latency_ms_p95": c.get("latency_ms_p95"),
            "server_latency_samples": c.get("urgent_latency_samples"),
            "views_needing_nothing": c.get("views_resolved", 0) / max(c.get("views_selected", 1), 1),
            "generated": stats.get("service", {}).get("generated"),
            "cancelled": stats.get("service", {}).get("cancelled")}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speeds", default="30,150", help="comma-separated m/s")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of flight per speed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-sse", type=float, help="the views' max screen-space error, px (default 16; 32 with --quick)")
    ap.add_argument("--quick", action="store_true", help="8 s per speed, one server for all, max SSE 32, for CI")
    ap.add_argument("--cache", type=Path, help="the servers' chunk store (serve --cache): a store a first run or "
                    "`worldstream generate` filled gives the warm start-up (default: none, every server cold)")
    args = ap.parse_args(argv)
    duration = 8.0 if args.quick else args.duration
    max_sse = args.max_sse or (32.0 if args.quick else 16.0)
    from worldstream.core import World, WorldSpec

    spec = WorldSpec(seed=args.seed)
    world = World(spec, cache_chunks=4)
    print(f"seed {args.seed}, {duration:g} s per flight, {args.workers} generation workers, views at {VIEW_HZ:g} Hz, "
          f"120 m AGL, 90 deg FOV, 1920x1080, max SSE {max_sse:g}")
    print(f"{'m/s':>5} {'start-up s':>10} {'views':>6} {'resident %':>10} {'gap p50 ms':>13} {'p95 ms':>8} {'gaps':>7} "
          f"{'nothing new %':>13} {'chunks/s':>8} {'kB/s':>8} {'generated':>9} {'cancelled':>9} {'RSS MB':>7} "
          f"{'server CPU s':>12} {'load':>5} {'server p95 ms (samples)':>23} {'start-up all s':>14} {'resident all %':>14} "
          f"{'workers warm s':>14} {'hole-free s':>11}")
    results = {}
    def started() -> tuple:
        proc, url = start_server(args.seed, args.workers, cache=args.cache)
        return proc, url, wait_warm(url, args.workers)

    shared = started() if args.quick else None
    try:
        for speed in (float(s) for s in args.speeds.split(",")):
            flight = Flight(start=(1000.0, -3000.0), heading_deg=35.0, speed=speed)
            altitude = altitude_profile(world, flight, duration + 2.0)
            proc, url, warm_s = shared or started()
            try:
                cpu0 = cpu_s(proc.pid)[0]
                r = asyncio.run(fly(url, spec, flight, altitude, duration, max_sse))
                r["rss_mb"] = rss_mb(proc.pid)
                r["server_cpu_s"] = cpu_s(proc.pid)[0] - cpu0  # the main process (not its workers)
                r["load"] = load_average().split()[0]
            finally:
                if shared is None:
                    stop_server(proc)
            results[speed] = r
            fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
            print(f"{speed:5.0f} {r['startup_s']:10.1f} {r['views']:6d} {100 * r['resident_fraction']:10.1f} "
                  f"{fmt(r['latency_ms_p50']):>13} {fmt(r['latency_ms_p95']):>8} {fmt(r['latency_samples']):>7} "
                  f"{100 * r['views_needing_nothing']:13.1f} {r['chunks_per_s']:8.1f} {r['bytes_per_s'] / 1024:8.0f} "
                  f"{fmt(r['generated']):>9} {fmt(r['cancelled']):>9} {r['rss_mb']:7.0f} "
                  f"{r['server_cpu_s']:12.1f} {r['load']:>5} "
                  f"{fmt(r['server_latency_ms_p95']) + ' (' + fmt(r['server_latency_samples']) + ')':>23} "
                  f"{'-' if r['startup_all_s'] is None else format(r['startup_all_s'], '.1f'):>14} "
                  f"{100 * r['resident_all_fraction']:14.1f} {warm_s:14.1f} {r['hole_free_s']:11.1f}")
    finally:
        if shared is not None:
            stop_server(shared[0])
    return results


if __name__ == "__main__":
    main()
