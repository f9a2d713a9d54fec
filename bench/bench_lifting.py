"""Benchmark: MetaEarth3D's lifting: heights from imagery, and multi-view facades, on procedural data, on this CPU.

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
Then the facade stage: it renders 8-view blocks (one per building) of the towns of seed 3 at
1 m/px as training data, trains two facade models with the same settings, with and without
cross-view local attention, paints the blocks of held-out chunks of seed 7's town, and prints:
- the multi-view consistency (PSNR / SSIM of each view carried into its neighbour through the
  geometry, `render.consistency`) over the painted wall pixels, beside the same figure for the
  procedural renders (the ceiling) and the paper's anchors; and the PSNR of the painted walls
  against the procedural ones;
- the time per chunk of the facade stage's steps: rendering the views, painting, baking.
`--picture PATH` also draws one block three ways (procedural facades; learned facades; learned
heights' mesh with learned facades) into PATH.

Usage: python bench/bench_lifting.py [--quick] [--train-steps N] [--sampling-steps N] [--stage S] [--picture P]
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
    ap.add_argument("--stage", choices=("all", "height", "facades"), default="all", help="which stages to measure")
    ap.add_argument("--facade-steps", type=int, help="facade optimizer steps (default 600, 30 with --quick)")
    ap.add_argument("--picture", help="write the three-way picture of one block here (needs --stage all)")
    args = ap.parse_args()
    import shutil

    height_model = None
    try:
        if args.stage in ("all", "height"):
            height_model = bench_heights(args)
        if args.stage in ("all", "facades"):
            bench_facades(args, height_model)
    finally:
        if height_model is not None:
            shutil.rmtree(height_model.parent, ignore_errors=True)
    return 0


def bench_heights(args):

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
    keep = tempfile.mkdtemp(prefix="bench_lifting_height_")
    import shutil

    shutil.copytree(out, Path(keep) / "height", ignore=shutil.ignore_patterns("training"))
    return Path(keep) / "height"


def walls_only(frame, mask):
    """The frame with its depth cleared outside `mask`, so consistency compares wall pixels only."""
    import dataclasses

    import numpy as np

    from worldstream.render import NO_HIT_DEPTH

    return dataclasses.replace(frame, depth_planar=np.where(mask, frame.depth_planar, NO_HIT_DEPTH).astype(np.float32))


def bench_facades(args, height_model) -> None:
    import dataclasses
    import shutil

    import numpy as np
    import torch

    from worldstream.core import ChunkKey, World, WorldSpec
    from worldstream.core.generators.learned.facade_data import prepare_blocks
    from worldstream.core.generators.learned.facade_sampling import FacadePainter, block_noise_seed
    from worldstream.core.generators.learned.facade_storage import load_facades
    from worldstream.core.generators.learned.facade_training import FacadeTrainConfig, train_facades
    from worldstream.exporters.chunk_mesh import chunk_mesh
    from worldstream.render import Renderer, RenderChunk
    from worldstream.render.consistency import view_consistency
    from worldstream.render.multiview import BlockViews, render_ring, vertical_mask

    torch.set_num_threads(1)
    quick = args.quick
    chunk = 64
    size = 32 if quick else 48
    tmp = Path(tempfile.mkdtemp(prefix="bench_lifting_facades_"))
    train_spec = WorldSpec(seed=3, chunk_size=chunk)
    towns = [(-8800.0, -3040.0)] if quick else [(-8800.0, -3040.0), (10912.0, -7008.0)]  # seed 3's towns
    span = 2 if quick else 3
    keys = [ChunkKey(6, int(cx // chunk) + dx, int(cy // chunk) + dy) for cx, cy in towns
            for dx in range(-(span // 2), span - span // 2) for dy in range(-(span // 2), span - span // 2)]
    t0 = time.perf_counter()
    blocks = prepare_blocks(train_spec, keys, tmp / "blocks", views=8, size=size, max_blocks=4 if quick else None)
    print(f"facade data: {blocks} blocks (8 unlit views of {size} px around each building) from {len(keys)} chunks "
          f"of seed 3 at 1 m/px, rendered in {time.perf_counter() - t0:.1f} s")
    steps = args.facade_steps or (30 if quick else 600)
    ddim = args.sampling_steps or (3 if quick else 10)
    if quick:
        base = dict(view_size=size, vae_channels=(8, 8), unet_channels=(8, 16), norm_num_groups=4, text_hidden=8,
                    batch_size=1, learning_rate=2e-3)
    else:
        base = dict(view_size=size, vae_channels=(32, 32), unet_channels=(32, 64), norm_num_groups=8, text_hidden=32,
                    batch_size=2, learning_rate=1e-3)
    models = {}
    for name, cross in (("with", True), ("without", False)):
        config = FacadeTrainConfig(**base, cross_view=cross, steps=steps, vae_steps=steps // 3,
                                   checkpoint_every=10**9, log_every=10)
        summary = train_facades(tmp / "blocks", tmp / name, config)
        models[name] = tmp / name
        print(f"facade model {name} cross-view attention: {summary['parameters']:,} parameters; {steps} steps "
              f"({config.vae_steps} VAE) in {summary['seconds']:.1f} s; diffusion loss "
              f"{summary['first_diffusion_loss']:.4f} -> {summary['final_diffusion_loss']:.4f}")

    held = WorldSpec(seed=7, chunk_size=chunk)
    world = World(held, cache_chunks=0)
    held_keys = [ChunkKey(6, 41, -50)] if quick else [ChunkKey(6, x, y) for x in (41, 42) for y in (-51, -50)]
    renderer = Renderer(lit=False)
    times = {"render": 0.0, "paint with": 0.0, "paint without": 0.0, "bake": 0.0}
    truth_scores = []
    try:
        painters = {name: FacadePainter(load_facades(folder)[0], steps=ddim) for name, folder in models.items()}
        scores = {name: [] for name in models}
        fidelity = {name: [] for name in models}
        count = 0
        for key in held_keys:
            c = world.chunk(key)
            mesh = chunk_mesh(c, held)
            rc = RenderChunk.from_mesh(c, mesh)
            learned = []
            for b in mesh.buildings:
                t1 = time.perf_counter()
                frames = render_ring(renderer, rc, b, 8, size)
                masks = [vertical_mask(f, 0.25) for f in frames]
                times["render"] += time.perf_counter() - t1
                if np.mean(masks) < 0.02:
                    continue
                try:
                    truth_scores.append(view_consistency([walls_only(f, m) for f, m in zip(frames, masks)],
                                                         ssim_coverage=0.5))
                except ValueError:  # no two neighbouring views see 64 common wall pixels: nothing to compare
                    continue
                count += 1
                views, mask = np.stack([f.scene for f in frames]), np.stack(masks)
                for name, painter in painters.items():
                    t1 = time.perf_counter()
                    painted = painter.paint(views, mask, block_noise_seed(held.seed, int(b.id)))
                    times[f"paint {name}"] += time.perf_counter() - t1
                    out = [dataclasses.replace(f, scene=p) for f, p in zip(frames, painted)]
                    scores[name].append(view_consistency([walls_only(f, m) for f, m in zip(out, masks)],
                                                         ssim_coverage=0.5))
                    err = (painted[mask].astype(np.float64) - views[mask]) ** 2
                    fidelity[name].append(10 * np.log10(255.0 ** 2 / max(err.mean(), 1e-10)))
                    if name == "with":
                        learned.append(BlockViews(int(b.id), tuple(out)))
            t1 = time.perf_counter()
            chunk_mesh(dataclasses.replace(c, facade_views=tuple(learned)), held)
            times["bake"] += time.perf_counter() - t1 - 0.0
    finally:
        renderer.close()
    print(f"held-out: {count} blocks in {len(held_keys)} chunks of seed 7's town (level 6, {chunk} px), 8 views of "
          f"{size} px, {ddim} DDIM steps; consistency over the painted wall pixels seen by neighbouring views")
    print(f"{'facades':<32}{'PSNR dB':>9}{'SSIM':>8}{'walls PSNR dB':>15}")
    for name in models:
        p = float(np.nanmean([s["psnr_db"] for s in scores[name]]))
        q = float(np.nanmean([s["ssim"] for s in scores[name]]))
        print(f"{name + ' cross-view attention':<32}{p:>9.2f}{q:>8.4f}{float(np.mean(fidelity[name])):>15.2f}")
    print(f"{'procedural renders (ceiling)':<32}{np.nanmean([s['psnr_db'] for s in truth_scores]):>9.2f}"
          f"{np.nanmean([s['ssim'] for s in truth_scores]):>8.4f}")
    print(f"{'paper (MetaEarth3D) with':<32}{28.64:>9.2f}{0.9076:>8.4f}")
    print(f"{'paper (MetaEarth3D) without':<32}{27.11:>9.2f}{0.8909:>8.4f}")
    n = len(held_keys)
    print("facade stage time per chunk (s): " + ", ".join(f"{k} {v / n:.2f}" for k, v in times.items())
          + " (bake: the whole chunk_mesh with the bake)")
    if args.picture:
        if height_model is None:
            raise SystemExit("--picture needs the height stage too (--stage all)")
        picture(args.picture, models["with"], height_model, ddim)
    shutil.rmtree(tmp, ignore_errors=True)


def picture(path: str, facades: Path, height_model, ddim: int) -> None:
    """One block three ways, lit: procedural facades | learned facades | learned heights' mesh (with learned facades)."""
    import dataclasses
    import shutil

    import numpy as np
    from PIL import Image

    from worldstream.core import ChunkKey, World, WorldSpec
    from worldstream.exporters.chunk_mesh import chunk_mesh
    from worldstream.render import Intrinsics, Renderer, RenderChunk
    from worldstream.render.multiview import ring_poses

    models = Path(tempfile.mkdtemp(prefix="bench_lifting_models_"))
    shutil.copytree(facades, models / "facades", ignore=shutil.ignore_patterns("training"))
    key = ChunkKey(6, 41, -50)
    procedural = WorldSpec(seed=7, chunk_size=64)
    panels = []
    renderer = Renderer()
    try:
        for parts in ((), ("facades",), ("facades", "height")):
            spec = procedural
            if parts:
                if "height" in parts:
                    shutil.copytree(height_model, models / "height")
                params = {"models": str(models), "steps": ddim, **({"height_first_level": 6} if "height" in parts else {})}
                spec = dataclasses.replace(procedural, generator="learned", generator_params=params)
            c = World(spec, cache_chunks=0).chunk(key)
            mesh = chunk_mesh(c, spec)
            b = max(mesh.buildings, key=lambda b: (b.roof - b.base) * np.ptp(np.array(b.footprint), axis=0).sum())
            pose = ring_poses(b.footprint, b.base, b.roof, 8)[1]
            frame = renderer.render([RenderChunk.from_mesh(c, mesh)], pose, Intrinsics(384, 288, 60.0), ("scene",))
            panels.append(frame.scene)
    finally:
        renderer.close()
        shutil.rmtree(models, ignore_errors=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(path, quality=90)
    print(f"picture: {path} (procedural facades | learned facades | learned heights' mesh with learned facades)")


if __name__ == "__main__":
    sys.exit(main())
