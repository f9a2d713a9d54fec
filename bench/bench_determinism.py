"""Benchmark: the same region generated in two orders and in other processes that run other CPU
kernels; prints differing bytes.

The other processes stand in for other x86-64 CPUs: they run with 2 threads and with the SIMD
kernels that a CPU without AVX-512 would get (torch ATen's AVX2 kernels, oneDNN capped at AVX2,
numpy without its AVX-512 loops); the full form also tries ATen's scalar kernels and each setting
alone. The procedural world and its exports must not change by one byte under any of them.

Usage: python bench/bench_determinism.py [--quick]
Exit status 1 if any byte differs (must be 0).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys

NO_AVX512_NUMPY = "AVX512F,AVX512CD,AVX512_KNL,AVX512_KNM,AVX512_SKX,AVX512_CLX,AVX512_CNL,AVX512_ICL,AVX512_SPR"
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "NPY_DISABLE_CPU_FEATURES": NO_AVX512_NUMPY}
KERNEL_VARIANTS = {  # name -> environment of a child process; the first one is the quick form's
    "2 threads, AVX2-only kernels": AVX2_ONLY,
    "ATen scalar kernels": {"ATEN_CPU_CAPABILITY": "default"},
    "oneDNN capped at AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "numpy without AVX-512": {"NPY_DISABLE_CPU_FEATURES": NO_AVX512_NUMPY},
}

# plus three chunks of the town around (3000, -3000), so building meshes and facade atlases are covered
TOWN = [(4, 3, -4), (5, 5, -6), (6, 11, -12)]
REGION = [(level, x, y) for level in (2, 4, 6) for x in range(-1, 2) for y in range(-1, 2)] + TOWN


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
    ap.add_argument("--quick", action="store_true",
                    help="levels 4 and 6 only, 2 x 2 chunks around the origin (and the town's), for CI")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    keys = [k for k in REGION if not args.quick or (k[0] >= 4 and (k in TOWN or max(k[1], k[2]) <= 0))]
    if args.child:
        for k, blob in region_bytes(keys, int(args.child)).items():
            print(k[0], k[1], k[2], blob.hex())
        return 0
    variants = list(KERNEL_VARIANTS.items())[:1 if args.quick else None]
    children = {name: start_child(env, args.quick) for name, env in variants}  # they run beside the two passes here
    forward = region_bytes(keys, 1)
    backward = region_bytes(list(reversed(keys)), 1)
    others = {name: child_bytes(child) for name, child in children.items()}

    def differing(a, b):
        total = 0
        for k in keys:
            x, y = a[k], b[k]
            total += abs(len(x) - len(y)) + sum(1 for p, q in zip(x, y) if p != q) if x != y else 0
        return total

    size = sum(len(v) for v in forward.values())
    digest = hashlib.sha256(b"".join(forward[k] for k in keys)).hexdigest()[:16]
    print(f"{len(keys)} chunks, {size} bytes (arrays + sidecars + GLB + tile.json), sha256 {digest}")
    total = differing(forward, backward)
    print(f"differing bytes, forward vs reverse order: {total}")
    for name, other in others.items():
        d = differing(forward, other)
        total += d
        print(f"differing bytes, this process (1 thread) vs another process ({name}): {d}")
    return 1 if total else 0


def start_child(env: dict[str, str], quick: bool) -> subprocess.Popen:
    """A child process generating the region on 2 threads under `env`; read it with child_bytes."""
    return subprocess.Popen([sys.executable, __file__, "--child", "2"] + (["--quick"] if quick else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def child_bytes(child: subprocess.Popen) -> dict:
    """The region's bytes as a child process printed them (key -> bytes)."""
    out, err = child.communicate()
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args, out, err)
    other = {}
    for line in filter(None, out.split("\n")):
        l, x, y, h = line.split()
        other[(int(l), int(x), int(y))] = bytes.fromhex(h)
    return other


if __name__ == "__main__":
    raise SystemExit(main())
