"""Benchmark: the same region generated in two orders and in two processes; prints differing bytes.

Usage: python bench/bench_determinism.py [--quick]
Exit status 1 if any byte differs (must be 0).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys

# plus three chunks of the town around (3000, -3000), so building meshes and facade atlases are covered
REGION = [(level, x, y) for level in (2, 4, 6) for x in range(-1, 2) for y in range(-1, 2)] + [(4, 3, -4), (5, 5, -6), (6, 11, -12)]


def region_bytes(keys, threads: int) -> dict:
    import numpy as np
    import torch

    from worldstream.core import ChunkKey, World, WorldSpec
    from worldstream.exporters.formats import export_chunk

    torch.set_num_threads(threads)
    spec = WorldSpec(seed=7)
    world = World(spec, cache_chunks=0)
    out = {}
    for k in keys:
        c = world.chunk(ChunkKey(*k))
        blob = b"".join(np.ascontiguousarray(a).tobytes() for _, a in sorted(c.arrays().items()))
        blob += b"".join(v for _, v in sorted(export_chunk(c, spec, ("sidecars", "glb")).items()))
        out[k] = blob
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="levels 4 and 6 only, for CI")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    keys = [k for k in REGION if not args.quick or k[0] >= 4]
    if args.child:
        for k, blob in region_bytes(keys, int(args.child)).items():
            print(k[0], k[1], k[2], blob.hex())
        return 0
    forward = region_bytes(keys, 1)
    backward = region_bytes(list(reversed(keys)), 1)
    child = subprocess.run([sys.executable, __file__, "--child", "2"] + (["--quick"] if args.quick else []),
                           capture_output=True, text=True, check=True).stdout.split("\n")
    other = {}
    for line in filter(None, child):
        l, x, y, h = line.split()
        other[(int(l), int(x), int(y))] = bytes.fromhex(h)

    def differing(a, b):
        total = 0
        for k in keys:
            x, y = a[k], b[k]
            total += abs(len(x) - len(y)) + sum(1 for p, q in zip(x, y) if p != q) if x != y else 0
        return total

    size = sum(len(v) for v in forward.values())
    d_order = differing(forward, backward)
    d_proc = differing(forward, other)
    digest = hashlib.sha256(b"".join(forward[k] for k in keys)).hexdigest()[:16]
    print(f"{len(keys)} chunks, {size} bytes (arrays + sidecars + GLB + tile.json), sha256 {digest}")
    print(f"differing bytes, forward vs reverse order: {d_order}")
    print(f"differing bytes, this process (1 thread) vs another process (2 threads): {d_proc}")
    return 1 if d_order or d_proc else 0


if __name__ == "__main__":
    raise SystemExit(main())
