"""Benchmark: MetaEarth3D's lifting, height part. Heights from imagery on procedural data, on this CPU.

Trains a small height model (`train_height`) on (ortho, DEM, DSM) chunks exported from one
procedural world (seed 3), then samples the heights of a held-out region of another world
(seed 7, a town and its fields) one level finer than the procedural heights it starts from, with
the region's own ortho as the guide. Prints:
- height RMSE (DEM and DSM, metres) against the procedural ground truth, beside the RMSE of the
  coarser level alone (what the model starts from: `upsample_corners` of the level above);
- the Mean Seam Gradient of the DSM at the window borders (mean |difference| across the
  stitching lines, metres) and its ratio to the gradient inside windows, with and without shared
  latent noise (50% overlap in both);
- training time, and the time per chunk (chunk_size^2 px of DEM + DSM, amortised over the region)
  and per window.

Usage: python bench/bench_lifting.py [--quick] [--train-steps N] [--sampling-steps N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def export_pairs(folder: Path, seed: int, chunk_size: int, centres: list[tuple[float, float]],
                 levels: tuple[int, ...], span: int) -> int:
    """Chunk folders as `generate --format sidecars` writes them (ortho.png, height.tif, dem.tif),
    `span` x `span` chunks around each centre at each level; returns the number written."""
    from worldstream.core import ChunkKey, World, WorldSpec
    from worldstream.exporters.sidecars import chunk_sidecars

    spec = WorldSpec(seed=seed, chunk_size=chunk_size)
    world = World(spec, cache_chunks=0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "world.json").write_text(spec.to_json())
    count = 0
    for level in levels:
        extent = spec.chunk_extent(level)
        for cx, cy in centres:
            x0, y0 = int(cx // extent) - span // 2, int(cy // extent) - span // 2
            for x in range(x0, x0 + span):
                for y in range(y0, y0 + span):
                    files = chunk_sidecars(world.chunk(ChunkKey(level, x, y)), spec)
                    d = folder / "chunks" / str(level) / str(x) / str(y)
                    d.mkdir(parents=True, exist_ok=True)
                    for name in ("ortho.png", "height.tif", "dem.tif"):
                        (d / name).write_bytes(files[name])
                    count += 1
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny model, short training, a small region (CI)")
    ap.add_argument("--train-steps", type=int, help="optimizer steps (default 300, 40 with --quick)")
    ap.add_argument("--sampling-steps", type=int, help="DDIM steps per window (default 10, 3 with --quick)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from worldstream.core import WorldSpec
    from worldstream.core.generators.learned.cascade import Cascade
    from worldstream.core.generators.learned.generator import ProceduralRaster, height_layer, ortho_layer
    from worldstream.core.generators.learned.height_range import upsample_corners
    from worldstream.core.generators.learned.height_sampling import HeightWindowModel
    from worldstream.core.generators.learned.height_storage import load_height
    from worldstream.core.generators.learned.height_training import HeightTrainConfig, train_height
    from worldstream.core.generators.learned.tiling import Tiling
    from worldstream.core.generators.procedural import ProceduralGenerator
    from worldstream.core.seams import seam_stats

    torch.set_num_threads(1)
    quick = args.quick
    steps = args.train_steps or (40 if quick else 300)
    ddim = args.sampling_steps or (3 if quick else 10)
    chunk = 32 if quick else 64
    tmp = tempfile.TemporaryDirectory()
    data = Path(tmp.name) / "data"
    t0 = time.perf_counter()
    towns = [(2830.0, -3150.0)] if quick else [(2830.0, -3150.0), (900.0, 1200.0), (-4000.0, 2500.0)]
    pairs = export_pairs(data, 3, chunk, towns, (5, 6), 2 if quick else 3)
    print(f"training data: {pairs} procedural chunks of seed 3 ({chunk} px, 2 and 1 m/px), exported in "
          f"{time.perf_counter() - t0:.1f} s")
    if quick:
        config = HeightTrainConfig(window=16, vae_channels=(8, 8), unet_channels=(16, 32), norm_num_groups=4,
                                   embedding_dim=8, text_hidden=16, steps=steps, batch_size=8, learning_rate=2e-3,
                                   checkpoint_every=10**9)
    else:
        config = HeightTrainConfig(window=32, vae_channels=(16, 16), unet_channels=(32, 64), norm_num_groups=8,
                                   embedding_dim=16, text_hidden=32, steps=steps, batch_size=16, learning_rate=1e-3,
                                   checkpoint_every=10**9)
    out = Path(tmp.name) / "height"
    summary = train_height(data, out, config)
    print(f"model: {summary['parameters']:,} parameters, window {config.window} px; {steps} steps in "
          f"{summary['seconds']:.1f} s (training time); loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f}; "
          f"range scheme clips {100 * summary['clipped_fraction']:.3f}% of training samples")

    net, _ = load_height(out)
    spec = WorldSpec(seed=7, chunk_size=chunk)
    procedural = ProceduralGenerator(spec)
    truth_heights = ProceduralRaster.of(procedural, height_layer, cache_chunks=64)
    ortho = ProceduralRaster(truth_heights.world, ortho_layer)
    level = 6
    side = 48 if quick else 192
    row0, col0 = 3150 - side // 2, 2830 - side // 2  # seed 7's hillside town, level 6 (1 m/px)
    truth = truth_heights(level, row0, col0, side, side)
    coarse = truth_heights(level - 1, row0 // 2, col0 // 2, side // 2, side // 2)
    baseline = upsample_corners(torch.from_numpy(coarse)).numpy()
    model = HeightWindowModel(net, steps=ddim)
    n = model.window
    print(f"held-out region: seed 7, {side} x {side} samples at level {level} ({spec.resolution(level):g} m/px) "
          f"from procedural level {level - 1}; {ddim} DDIM steps; window {n}, stride {n // 2}")
    print(f"{'noise':<22}{'RMSE DEM':>10}{'RMSE DSM':>10}{'seam grad':>11}{'interior':>10}{'MSG ratio':>10}"
          f"{'windows':>9}{'s/window':>10}{'s/chunk':>9}")

    def rmse(a, b) -> float:
        return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))

    for name, shared in (("shared (ours)", True), ("independent", False)):
        cascade = Cascade(model, Tiling(n, shared_noise=shared), 5, truth_heights, level, spec.resolution,
                          guide=ortho)
        t1 = time.perf_counter()
        heights = cascade.region(level, row0, col0, side, side)
        dt = time.perf_counter() - t1
        seams = seam_stats(heights[1], n // 2, ((-row0) % (n // 2), (-col0) % (n // 2)))
        per_chunk = dt * chunk * chunk / (side * side)
        print(f"{name:<22}{rmse(heights[0], truth[0]):>10.3f}{rmse(heights[1], truth[1]):>10.3f}"
              f"{seams.seam:>11.4f}{seams.interior:>10.4f}{seams.ratio:>10.3f}{cascade.windows_sampled:>9}"
              f"{dt / cascade.windows_sampled:>10.3f}{per_chunk:>9.2f}")
    base_seams = seam_stats(baseline[1], n // 2, ((-row0) % (n // 2), (-col0) % (n // 2)))
    print(f"{'coarser level alone':<22}{rmse(baseline[0], truth[0]):>10.3f}{rmse(baseline[1], truth[1]):>10.3f}"
          f"{base_seams.seam:>11.4f}{base_seams.interior:>10.4f}{base_seams.ratio:>10.3f}")
    print(f"time per chunk: {chunk} x {chunk} px of DEM + DSM, amortised over the region, on 1 thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
