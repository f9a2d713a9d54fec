"""Benchmark: `generate --ray` against the local process pool, in the same run.

Usage: python bench/bench_ray.py [--radius 700] [--levels 4:6] [--quick]
Exports the same region (a fresh output folder each time) with the local pool (--workers N) and
on a local Ray cluster (--ray --workers N), N = 1 and 2 (the quick form: N = 2 only; N = 1 is the
same code on a one-CPU cluster, and the in-process local export), and prints chunks/s of each,
Ray's overhead per chunk over the pool at equal N (wall seconds difference / chunks; the cluster's
start-up is printed apart and left out), and the target: at most 10 % overhead at equal worker count.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(out: Path, region: list[str], extra: list[str]) -> tuple[float, int, float]:
    """(wall seconds of the export, chunks written, seconds before the first chunk was asked for)."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "worldstream", "generate", *region, "--out", str(out), *extra],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    chunks = int(re.search(r"wrote (\d+) chunks", r.stderr)[1])
    start = re.search(r"ray start-up ([0-9.]+) s", r.stderr)
    return wall, chunks, float(start[1]) if start else 0.0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radius", type=float, default=700.0)
    ap.add_argument("--levels", default="4:6")
    ap.add_argument("--seed", default="7")
    ap.add_argument("--quick", action="store_true", help="a 300 m radius at levels 5:6, N = 2 only, for CI")
    args = ap.parse_args(argv)
    radius, levels = (300.0, "5:6") if args.quick else (args.radius, args.levels)
    region = ["--seed", args.seed, "--radius", str(radius), "--levels", levels, "--format", "glb,sidecars", "--quiet"]
    out = {}
    print(f"seed {args.seed}, radius {radius:g} m, levels {levels}, formats glb,sidecars")
    with tempfile.TemporaryDirectory() as tmp:
        for n in ((2,) if args.quick else (1, 2)):
            pool_s, chunks, _ = run(Path(tmp) / f"pool{n}", region, ["--workers", str(n)])
            ray_s, ray_chunks, startup = run(Path(tmp) / f"ray{n}", region, ["--workers", str(n), "--ray"])
            export_s = ray_s - startup
            overhead = (export_s - pool_s) / max(chunks, 1)
            print(f"{n} worker(s): pool {chunks / pool_s:.2f} chunks/s ({pool_s:.1f} s), ray {ray_chunks / export_s:.2f} "
                  f"chunks/s ({export_s:.1f} s after a {startup:.1f} s cluster start-up); ray overhead "
                  f"{1000 * overhead:+.0f} ms a chunk ({100 * (export_s / pool_s - 1):+.0f} %)")
            out[n] = {"pool_s": pool_s, "ray_s": export_s, "startup_s": startup, "chunks": chunks}
    worst = max(v["ray_s"] / v["pool_s"] - 1 for v in out.values())
    print(f"target: ray overhead <= 10 % at equal worker count: worst {100 * worst:+.0f} % -> "
          f"{'met' if worst <= 0.10 else 'NOT met'}")
    return out


if __name__ == "__main__":
    main()
