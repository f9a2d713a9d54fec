"""Benchmark: ms per chunk (all layers, 256 px, one thread) per level, median over spread keys.

Usage: python bench/bench_chunks.py [--per-level N] [--seed S] [--quick] [--baseline PARAMS]
Prints one line per level and the overall median; target <= 150 ms per chunk on one core.
Each chunk is timed as CPU time of this process (time.process_time: what one core spends on it,
which other processes on a loaded machine do not inflate) and as wall time; the target is read
on the CPU figure. Beside each figure, the same keys generated with the baseline generator
parameters (default '{"vegetation": 0}': the world without trees), interleaved key by key in
the same run, so the ratio stays meaningful on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from per_level import parse_per_level_args, spread_key


def timed(fn, *args) -> tuple[object, float, float]:
    """(fn(*args), CPU ms of this process, wall ms)."""
    c, w = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, (time.process_time() - c) * 1000, (time.perf_counter() - w) * 1000


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
    results, walls, baselines = {}, {}, {}
    print(f"seed {args.seed}, {n} chunks per level, torch threads {torch.get_num_threads()}, "
          f"device {world.generator.device}; baseline params {dict(base_params)}")
    print(f"{'level':>5} {'m/px':>6} {'CPU ms':>8} {'p90':>7} {'max':>7} {'wall ms':>8} {'base CPU':>9} {'ratio':>6} "
          f"{'buildings/chunk':>16} {'trees/chunk':>12}")
    for level in range(world.spec.levels):
        cpu, wall, base_cpu, nb, nt = [], [], [], [], []
        for i in range(n):
            key = spread_key(level, i)
            c, t_cpu, t_wall = timed(world.chunk, key)
            cpu.append(t_cpu)
            wall.append(t_wall)
            base_cpu.append(timed(base.chunk, key)[1])
            nb.append(len(c.buildings))
            nt.append(len(c.trees))
        cpu.sort()
        results[level] = statistics.median(cpu)
        walls[level] = statistics.median(wall)
        baselines[level] = statistics.median(base_cpu)
        print(f"{level:>5} {world.spec.resolution(level):>6g} {results[level]:>8.1f} "
              f"{cpu[int(0.9 * (len(cpu) - 1))]:>7.1f} {cpu[-1]:>7.1f} {walls[level]:>8.1f} {baselines[level]:>9.1f} "
              f"{results[level] / baselines[level]:>6.2f} {statistics.mean(nb):>16.0f} {statistics.mean(nt):>12.0f}")
    overall = statistics.median(results.values())
    overall_base = statistics.median(baselines.values())
    print(f"median of level medians: {overall:.1f} ms CPU per chunk (target <= 150 ms), wall "
          f"{statistics.median(walls.values()):.1f} ms; worst level {max(results.values()):.1f} ms CPU; "
          f"baseline {overall_base:.1f} ms CPU ({overall / overall_base:.2f}x)")
    return results


if __name__ == "__main__":
    main()
