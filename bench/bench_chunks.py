"""Benchmark: ms per chunk (all layers, 256 px, one thread) per level, median over spread keys.

Usage: python bench/bench_chunks.py [--per-level N] [--seed S] [--quick] [--baseline PARAMS]
Prints one line per level and the overall median; target <= 150 ms per chunk on this machine.
Beside each figure, the same keys generated with the baseline generator parameters (default
'{"vegetation": 0}': the world without trees), interleaved key by key in the same run, so the
ratio stays meaningful on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from per_level import parse_per_level_args, spread_key


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--baseline", default='{"vegetation": 0}')
    ns, rest = extra.parse_known_args(argv)
    args, n = parse_per_level_args(__doc__.splitlines()[0], rest)
    torch.set_num_threads(1)
    from worldstream.core import ChunkKey, World, WorldSpec

    world = World(WorldSpec(seed=args.seed), cache_chunks=0)
    base_params = tuple(sorted(json.loads(ns.baseline).items()))
    base = World(WorldSpec(seed=args.seed, generator_params=base_params), cache_chunks=0)
    for w in (world, base):
        w.chunk(ChunkKey(6, 0, 0))  # warm-up (imports, tables)
    results = {}
    print(f"seed {args.seed}, {n} chunks per level, torch threads {torch.get_num_threads()}, "
          f"device {world.generator.device}; baseline params {dict(base_params)}")
    print(f"{'level':>5} {'m/px':>6} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'baseline ms':>12} {'ratio':>6} "
          f"{'buildings/chunk':>16} {'trees/chunk':>12}")
    baselines = {}
    for level in range(world.spec.levels):
        times, base_times, nb, nt = [], [], [], []
        for i in range(n):
            key = spread_key(level, i)
            t = time.perf_counter()
            c = world.chunk(key)
            times.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            base.chunk(key)
            base_times.append((time.perf_counter() - t) * 1000)
            nb.append(len(c.buildings))
            nt.append(len(c.trees))
        times.sort()
        results[level] = statistics.median(times)
        baselines[level] = statistics.median(base_times)
        print(f"{level:>5} {world.spec.resolution(level):>6g} {results[level]:>10.1f} "
              f"{times[int(0.9 * (len(times) - 1))]:>8.1f} {times[-1]:>8.1f} {baselines[level]:>12.1f} "
              f"{results[level] / baselines[level]:>6.2f} {statistics.mean(nb):>16.0f} {statistics.mean(nt):>12.0f}")
    overall = statistics.median(results.values())
    overall_base = statistics.median(baselines.values())
    print(f"median of level medians: {overall:.1f} ms per chunk (target <= 150 ms); worst level "
          f"{max(results.values()):.1f} ms; baseline {overall_base:.1f} ms ({overall / overall_base:.2f}x)")
    return results


if __name__ == "__main__":
    main()
