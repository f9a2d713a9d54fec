"""Benchmark: `generate --ray` against the local process pool, in the same run.

Usage: python bench/bench_ray.py [--radius 700] [--levels 4:6] [--repeat 2] [--quick]
Exports the same region (a fresh output folder each time) with the local pool (--workers N) and
on a local Ray cluster (--ray --workers N), N = 1 and 2 (the quick form: N = 2 only; N = 1 is the same code on a
one-CPU cluster, and the in-process local export), alternating pool and Ray `--repeat` times
(the median of each is kept). Every `generate` prints its phases (`timing:`): start-up (the pool's
processes, or the Ray cluster and its workers, started and warm: torch imported, the World built),
export (first chunk asked for to last chunk written) and shutdown. Printed per N:

- export chunks/s of each and Ray's overhead per chunk over the pool, with warm workers on both
  sides: this is what the target (at most 10 % at equal worker count) is judged on;
- the fixed costs apart: start-up and shutdown of each, and the end-to-end wall time of each
  `generate` process, so the whole price of a small Ray run is shown too.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TIMING = re.compile(r"timing: start-up ([0-9.]+) s, export ([0-9.]+) s, shutdown ([0-9.]+) s \((\d+) chunks")


@dataclass(frozen=True)
class Run:
    wall: float  # the whole `generate` process
    startup: float  # workers started and warm (Ray: the cluster too)
    export: float  # first chunk asked for to last chunk written
    shutdown: float
    chunks: int
    cluster: float  # Ray only: ray.init's share of the start-up


def run(out: Path, region: list[str], extra: list[str]) -> Run:
    """One `generate` process, timed, with the phases it prints."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "worldstream", "generate", *region, "--out", str(out), *extra],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    m = TIMING.search(r.stderr)
    if m is None:
        raise SystemExit(f"no timing line in generate's output:\n{r.stderr}")
    cluster = re.search(r"ray start-up ([0-9.]+) s", r.stderr)
    return Run(wall, float(m[1]), float(m[2]), float(m[3]), int(m[4]), float(cluster[1]) if cluster else 0.0)


def median_run(runs: list[Run]) -> Run:
    """Each figure's median over the runs."""
    figures = {f: statistics.median(getattr(r, f) for r in runs) for f in Run.__dataclass_fields__}
    return Run(**{**figures, "chunks": runs[0].chunks})


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radius", type=float, default=700.0)
    ap.add_argument("--levels", default="4:6")
    ap.add_argument("--seed", default="7")
    ap.add_argument("--repeat", type=int, default=2, help="pool/Ray pairs per worker count (median kept)")
    ap.add_argument("--quick", action="store_true", help="a 200 m radius at level 6, once, N = 2 only, for CI")
    args = ap.parse_args(argv)
    radius, levels, repeat = (200.0, "6:6", 1) if args.quick else (args.radius, args.levels, max(args.repeat, 1))
    region = ["--seed", args.seed, "--radius", str(radius), "--levels", levels, "--format", "glb,sidecars", "--quiet"]
    out = {}
    print(f"seed {args.seed}, radius {radius:g} m, levels {levels}, formats glb,sidecars, {repeat} pool/Ray pair(s) "
          f"per worker count")
    with tempfile.TemporaryDirectory() as tmp:
        for n in ((2,) if args.quick else (1, 2)):
            pools, rays = [], []
            for i in range(repeat):  # alternating, so both sides see the same load over time
                pools.append(run(Path(tmp) / f"pool{n}-{i}", region, ["--workers", str(n)]))
                rays.append(run(Path(tmp) / f"ray{n}-{i}", region, ["--workers", str(n), "--ray"]))
            p, r = median_run(pools), median_run(rays)
            chunks = p.chunks
            per_chunk = (r.export - p.export) / max(chunks, 1)
            pct = 100 * (r.export / p.export - 1)
            print(f"{n} worker(s): pool {chunks / p.export:.2f} chunks/s ({p.export:.1f} s), ray {r.chunks / r.export:.2f} "
                  f"chunks/s ({r.export:.1f} s) over {chunks} chunks, warm workers; ray overhead {1000 * per_chunk:+.0f} ms "
                  f"a chunk ({pct:+.0f} %)")
            print(f"{n} worker(s) fixed: start-up pool {p.startup:.1f} s, ray {r.startup:.1f} s (cluster {r.cluster:.1f} s); "
                  f"shutdown pool {p.shutdown:.1f} s, ray {r.shutdown:.1f} s; end to end pool {p.wall:.1f} s, ray "
                  f"{r.wall:.1f} s ({100 * (r.wall / p.wall - 1):+.0f} %)")
            out[n] = {"pool": p, "ray": r}
    worst = max(v["ray"].export / v["pool"].export - 1 for v in out.values())
    print(f"target: ray overhead <= 10 % at equal worker count (export, warm workers): worst {100 * worst:+.0f} % -> "
          f"{'met' if worst <= 0.10 else 'NOT met'}")
    return out


if __name__ == "__main__":
    main()
