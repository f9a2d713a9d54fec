"""Benchmark: chunk export (mesh + textures + GLB) per level, triangle budget, bytes.

Usage: python bench/bench_export.py [--per-level N] [--seed S] [--quick]
Prints, one thread:
- ms to export one chunk (terrain mesh, buildings, facade atlas and bake, textures, GLB), per
  level and overall median (target <= 100 ms), with the chunk generation time beside it as the
  in-run baseline, and the same for chunks that hold buildings;
- triangles against the regular grid of the same samples at max error 0.5 m on the hilliest
  chunks (target <= 20%);
- GLB bytes per chunk and per km^2 at 1 m/px;
- compressed GLBs (`--compress`: meshopt geometry, WebP base colour) against the default ones per
  level: kB, % smaller (target 60-67 %), ms to encode one (the GLB writer alone, both ways) and
  to decode one as a client does (meshopt views, then every image; plain: the images).
"""

from __future__ import annotations

import io
import statistics
import time

import numpy as np
import torch

from per_level import parse_per_level_args, spread_key


def main(argv=None) -> dict:
    args, n = parse_per_level_args(__doc__.splitlines()[0], argv)
    torch.set_num_threads(1)
    from worldstream.core import ChunkKey, World, WorldSpec
    from worldstream.exporters.chunk_glb import chunk_glb, export_glb
    from worldstream.exporters.chunk_mesh import chunk_mesh
    from worldstream.exporters.terrain_mesh import terrain_mesh

    spec = WorldSpec(seed=args.seed)
    world = World(spec, cache_chunks=0)
    export_glb(world.chunk(ChunkKey(6, 0, 0)), spec, chunk_mesh(world.chunk(ChunkKey(6, 0, 0)), spec))  # warm-up
    print(f"seed {args.seed}, {n} chunks per level, one thread")
    print(f"{'level':>5} {'m/px':>5} {'export ms':>10} {'p90':>7} {'max':>7} {'generate ms':>12} "
          f"{'tris':>7} {'geom err m':>10} {'GLB kB':>8} {'bldgs':>6}")
    results: dict = {"export_ms": {}, "town_ms": [], "glb_l6": [], "compressed": {}}
    codec = _codec()
    packed = {}  # level -> [(plain bytes, compressed bytes, plain / compressed encode ms, plain / compressed decode ms)]
    all_times = []
    hilly = []
    for level in range(spec.levels):
        times, gen, tris, err, size, nb = [], [], [], [], [], []
        for i in range(n):
            key = spread_key(level, i)
            t0 = time.perf_counter()
            c = world.chunk(key)
            t1 = time.perf_counter()
            m = chunk_mesh(c, spec)
            files = export_glb(c, spec, m)
            t2 = time.perf_counter()
            gen.append((t1 - t0) * 1000)
            times.append((t2 - t1) * 1000)
            tris.append(m.triangle_count)
            err.append(m.geometric_error)
            size.append(len(files["mesh.glb"]))
            nb.append(len(m.buildings))
            if codec:
                packed.setdefault(level, []).append(_compressed_figures(c, spec, m, chunk_glb, codec))
            if m.buildings:
                results["town_ms"].append(times[-1])
            if level == spec.levels - 1:
                results["glb_l6"].append(size[-1])
            if level >= 4:
                hilly.append((float(np.ptp(c.dem)), key, c))
        all_times.extend(times)
        results["export_ms"][level] = statistics.median(times)
        s = sorted(times)
        print(f"{level:>5} {spec.resolution(level):>5g} {statistics.median(times):>10.1f} {s[int(0.9 * (len(s) - 1))]:>7.1f} "
              f"{s[-1]:>7.1f} {statistics.median(gen):>12.1f} {statistics.median(tris):>7.0f} {max(err):>10.3f} "
              f"{statistics.median(size) / 1000:>8.1f} {statistics.mean(nb):>6.0f}")
    overall = statistics.median(all_times)
    results["median_ms"] = overall
    print(f"export median over all chunks: {overall:.1f} ms (target <= 100 ms)")

    # chunks with buildings: a town around (3000, -3000) at the building levels
    for level in range(4, spec.levels):
        for i in range(max(2, n // 3)):
            e = spec.chunk_extent(level)
            key = ChunkKey.at(spec, 3000.0 + (i - 1) * e, -3000.0 + (i % 2) * e, level)
            c = world.chunk(key)
            t1 = time.perf_counter()
            m = chunk_mesh(c, spec)
            export_glb(c, spec, m)
            results["town_ms"].append((time.perf_counter() - t1) * 1000)
            hilly.append((float(np.ptp(c.dem)), key, c))
    t = sorted(results["town_ms"])
    print(f"chunks with buildings ({len(t)}, levels 4-{spec.levels - 1}): median {statistics.median(t):.1f} ms, "
          f"max {t[-1]:.1f} ms")

    hilly = sorted((h for h in hilly if h[1].level == spec.levels - 1), key=lambda h: -h[0])[:4] + \
        sorted((h for h in hilly if h[1].level < spec.levels - 1), key=lambda h: -h[0])[:2]
    hilly.sort(key=lambda h: (-h[1].level, -h[0]))
    ratios = []
    for relief, key, c in hilly:
        tm = terrain_mesh(c.dem, 0.5)
        ratio = len(tm.triangles) / (2 * c.size * c.size)
        ratios.append(ratio)
        print(f"hilly {key.path():>12} relief {relief:6.1f} m: {len(tm.triangles):6d} triangles at 0.5 m "
              f"(measured {tm.max_error:.3f} m) = {100 * ratio:.2f}% of the grid")
    finest = [r for (_, k, _), r in zip(hilly, ratios) if k.level == spec.levels - 1]
    results["triangle_ratio"] = max(finest)
    print(f"worst triangle ratio at 0.5 m on the 1 m/px level: {100 * max(finest):.2f}% of the regular grid "
          f"(target <= 20%); on the 4 m/px stress chunks: {100 * max(ratios):.2f}%")
    l6 = statistics.median(results["glb_l6"])
    km2 = (spec.chunk_extent(spec.levels - 1) / 1000.0) ** 2
    print(f"GLB at 1 m/px (level {spec.levels - 1}): median {l6 / 1000:.1f} kB per chunk, {l6 / km2 / 1e6:.2f} MB per km^2")
    _print_compressed(packed, codec, results)
    return results


def _codec():
    """exporters.compress.decode_glb, or None (printed as skipped) without the meshopt package."""
    try:
        from worldstream.exporters.compress import decode_glb, require_meshopt
        require_meshopt()
    except Exception as exc:  # noqa: BLE001 - the reason is printed
        print(f"compressed GLBs: skipped ({exc})")
        return None
    return decode_glb


def _compressed_figures(c, spec, m, chunk_glb, decode_glb) -> tuple[int, int, float, float, float, float]:
    """(plain bytes, compressed bytes, plain / compressed GLB encode ms, plain / compressed decode ms)."""
    sizes, enc, dec = [], [], []
    for compress in (False, True):
        t0 = time.perf_counter()
        glb = chunk_glb(c, spec, m, compress=compress)
        t1 = time.perf_counter()
        _decode(glb, decode_glb)
        dec.append((time.perf_counter() - t1) * 1000)
        enc.append((t1 - t0) * 1000)
        sizes.append(len(glb))
    return sizes[0], sizes[1], enc[0], enc[1], dec[0], dec[1]


def _decode(glb: bytes, decode_glb) -> None:
    """What a client does before drawing: meshopt views decoded, every image decoded to pixels."""
    from PIL import Image

    doc, binary = decode_glb(glb)
    for image in doc.get("images", []):
        v = doc["bufferViews"][image["bufferView"]]
        Image.open(io.BytesIO(binary[v.get("byteOffset", 0):v.get("byteOffset", 0) + v["byteLength"]])).load()


def _print_compressed(packed: dict, codec, results: dict) -> None:
    if not codec:
        return
    print(f"{'level':>5} {'GLB kB':>8} {'packed kB':>10} {'smaller %':>10} {'enc ms':>7} {'packed enc ms':>14} "
          f"{'dec ms':>7} {'packed dec ms':>14}")
    for level, rows in packed.items():
        plain, small = sum(r[0] for r in rows), sum(r[1] for r in rows)
        med = [statistics.median(r[i] for r in rows) for i in range(6)]
        results["compressed"][level] = 100.0 * (1.0 - small / plain)
        print(f"{level:>5} {med[0] / 1000:>8.1f} {med[1] / 1000:>10.1f} {100.0 * (1.0 - small / plain):>10.1f} "
              f"{med[2]:>7.1f} {med[3]:>14.1f} {med[4]:>7.1f} {med[5]:>14.1f}")
    rows = [r for rs in packed.values() for r in rs]
    plain, small = sum(r[0] for r in rows), sum(r[1] for r in rows)
    results["compressed_pct"] = 100.0 * (1.0 - small / plain)
    print(f"compressed GLBs over all {len(rows)} chunks: {plain / 1e6:.2f} MB -> {small / 1e6:.2f} MB, "
          f"{results['compressed_pct']:.1f}% smaller (target 60-67%); median encode "
          f"{statistics.median(r[3] for r in rows):.1f} ms (plain {statistics.median(r[2] for r in rows):.1f} ms), "
          f"decode {statistics.median(r[5] for r in rows):.1f} ms (plain {statistics.median(r[4] for r in rows):.1f} ms) per chunk")


if __name__ == "__main__":
    main()
