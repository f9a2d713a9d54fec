"""Benchmark: eight clients flying at once against one `worldstream serve` (separate process, loopback).

Usage: python bench/bench_clients.py [--clients 8] [--duration 180] [--speed 30] [--workers 2] [--quick]
Every client flies its own straight line (headings 45 deg apart, from one start) at 120 m above the
ground with view updates at 30 Hz. Prints the server's resident memory (with its worker processes, warm: torch
imported and the World built, which the server starts as it starts listening; no chunk generated before the flights)
at start, peak (sampled every 0.5 s) and end, also as PSS (shared pages split among the processes), the server's CPU
seconds (main process, workers) and the load average, and per client: chunks and bytes received, the longest
wait between two chunks, the server's share of its views that needed nothing new, and p50/p95 latency
to each view's most urgent chunk, and how many of its views were selected for (the rest
coalesced, or moved too little to change the selection); then the ratio of the least to the most served client (no client
starves when every client keeps receiving and the spread stays small).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import (VIEW_HZ, Flight, altitude_profile, cpu_s, final_stats, fly_views, load_average, pss_mb,  # noqa: E402
                  rss_mb, start_server, stop_server, wait_warm)


async def one_client(url: str, flight: Flight, altitude, duration: float, name: str) -> dict:
    from worldstream.unreal_bridge.client import StreamClient

    got = {"chunks": 0, "bytes": 0, "last": None, "max_gap": 0.0}
    async with StreamClient(url, client=name) as client:
        async def receive():
            async for kind, obj in client.events():
                if kind == "chunk":
                    now = time.monotonic()
                    if got["last"] is not None:
                        got["max_gap"] = max(got["max_gap"], now - got["last"])
                    got["last"] = now
                    got["chunks"] += 1
                    got["bytes"] += sum(len(v) for v in obj.parts.values())
                elif kind == "stats":
                    got["stats"] = obj
                elif kind == "error":
                    raise RuntimeError(f"{name}: server error {obj}")

        reader = asyncio.create_task(receive())
        views, _ = await fly_views(client, flight, altitude, duration, reader)
        c = (await final_stats(client, got, reader)).get("client", {})
    return {"views": views, "chunks": got["chunks"], "bytes": got["bytes"], "max_gap_s": got["max_gap"],
            "nothing_new": c.get("views_resolved", 0) / max(c.get("views_selected", 1), 1),
            "selections": c.get("views_selected", 0),
            "p50": c.get("latency_ms_p50"), "p95": c.get("latency_ms_p95")}


async def run(url: str, pid: int, flights, altitudes, duration: float) -> tuple[list, list]:
    samples = []

    async def sample():
        while True:
            # off the event loop: the clients measured here share it
            samples.append(await asyncio.to_thread(lambda: (rss_mb(pid), pss_mb(pid) or 0.0)))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(*(one_client(url, f, a, duration, f"bench-{i}")
                                     for i, (f, a) in enumerate(zip(flights, altitudes))))
    sampler.cancel()
    return list(results), samples


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=180.0, help="seconds")
    ap.add_argument("--speed", type=float, default=30.0, help="m/s")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-mb", type=int, default=256, help="the server's chunk memory budget")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="10 s, for CI")
    args = ap.parse_args(argv)
    duration = 10.0 if args.quick else args.duration
    from worldstream.core import World, WorldSpec

    world = World(WorldSpec(seed=args.seed), cache_chunks=4)
    flights = [Flight(start=(500.0, 500.0), heading_deg=i * 360.0 / args.clients, speed=args.speed)
               for i in range(args.clients)]
    altitudes = [altitude_profile(world, f, duration + 2.0) for f in flights]
    proc, url = start_server(args.seed, args.workers, memory_mb=args.memory_mb)
    try:
        wait_warm(url, args.workers)
        start_rss, start_pss = rss_mb(proc.pid), pss_mb(proc.pid)
        cpu0, load0 = cpu_s(proc.pid), load_average()
        results, samples = asyncio.run(run(url, proc.pid, flights, altitudes, duration))
        end_rss, end_pss = rss_mb(proc.pid), pss_mb(proc.pid)
        cpu1, load1 = cpu_s(proc.pid), load_average()
    finally:
        stop_server(proc)
    peak = max([s[0] for s in samples] + [start_rss, end_rss])
    print(f"seed {args.seed}: {args.clients} clients at {VIEW_HZ:g} Hz, {args.speed:g} m/s, {duration:g} s, "
          f"{args.workers} workers, chunk memory budget {args.memory_mb} MB")
    print(f"server RSS (with workers): start {start_rss:.0f} MB, peak {peak:.0f} MB, end {end_rss:.0f} MB")
    if start_pss is not None:
        peak_pss = max([s[1] for s in samples] + [start_pss, end_pss or 0.0])
        print(f"server PSS (with workers; shared pages split, not counted per process): start {start_pss:.0f} MB, "
              f"peak {peak_pss:.0f} MB, end {end_pss:.0f} MB")
    print(f"server CPU during the flights: main process {cpu1[0] - cpu0[0]:.1f} s, workers {cpu1[1] - cpu0[1]:.1f} s; "
          f"machine load average {load0} at start, {load1} at end")
    print(f"{'client':>6} {'views':>6} {'selected':>8} {'chunks':>7} {'MB':>7} {'max gap s':>9} {'nothing new %':>13} "
          f"{'p50 ms':>7} {'p95 ms':>7}")
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    for i, r in enumerate(results):
        print(f"{i:6d} {r['views']:6d} {r['selections']:8d} {r['chunks']:7d} {r['bytes'] / 1e6:7.1f} {r['max_gap_s']:9.1f} "
              f"{100 * r['nothing_new']:13.1f} {fmt(r['p50']):>7} {fmt(r['p95']):>7}")
    chunks = [r["chunks"] for r in results]
    print(f"least / most served client: {min(chunks)} / {max(chunks)} chunks = {min(chunks) / max(max(chunks), 1):.2f}")
    return {"start_rss": start_rss, "peak_rss": peak, "end_rss": end_rss, "clients": results,
            "server_cpu_s": cpu1[0] - cpu0[0], "worker_cpu_s": cpu1[1] - cpu0[1]}


if __name__ == "__main__":
    main()
