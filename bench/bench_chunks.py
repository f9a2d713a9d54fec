"""Benchmark: ms per chunk (all layers, 256 px, one thread) per level, median over spread keys.

Usage: python bench/bench_chunks.py [--per-level N] [--seed S] [--quick]
Prints one line per level and the overall median; target <= 150 ms per chunk on this machine.
"""

from __future__ import annotations

import statistics
import time

import torch

from per_level import parse_per_level_args, spread_key


def main(argv=None) -> dict:
    args, n = parse_per_level_args(__doc__.splitlines()[0], argv)
    torch.set_num_threads(1)
    from worldstream.core import ChunkKey, World, WorldSpec

    world = World(WorldSpec(seed=args.seed), cache_chunks=0)
    world.chunk(ChunkKey(6, 0, 0))  # warm-up (imports, tables)
    results = {}
    print(f"seed {args.seed}, {n} chunks per level, torch threads {torch.get_num_threads()}, device {world.generator.device}")
    print(f"{'level':>5} {'m/px':>6} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'buildings/chunk':>16}")
    for level in range(world.spec.levels):
        times, nb = [], []
        for i in range(n):
            key = spread_key(level, i)
            t = time.perf_counter()
            c = world.chunk(key)
            times.append((time.perf_counter() - t) * 1000)
            nb.append(len(c.buildings))
        times.sort()
        results[level] = statistics.median(times)
        print(f"{level:>5} {world.spec.resolution(level):>6g} {statistics.median(times):>10.1f} "
              f"{times[int(0.9 * (len(times) - 1))]:>8.1f} {times[-1]:>8.1f} {statistics.mean(nb):>16.0f}")
    overall = statistics.median(results.values())
    print(f"median of level medians: {overall:.1f} ms per chunk (target <= 150 ms); worst level "
          f"{max(results.values()):.1f} ms")
    return results


if __name__ == "__main__":
    main()
