"""Benchmark: seams of the unbounded tiling, naive vs overlap only vs overlap + shared noise.

Trains a small cascade model on procedural orthos for a short while (or loads --models DIR: a
worldstream cascade or a diffusers StableDiffusionUpscalePipeline folder), then
samples the same region with the three tilings, cascading from the procedural root two levels up,
and prints MetaEarth's seam statistic for each: the mean absolute gradient across stitching lines
(the window starts) over the same statistic inside the windows. Target: the full method within 10%
of 1 and clearly below both ablations.

Usage: python bench/bench_seams.py [--quick] [--models DIR] [--out DIR (PNG of each variant)]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path



def training_images(folder: Path, chunk_size: int) -> None:
    from PIL import Image

    from worldstream.core import ChunkKey, World, WorldSpec

    world = World(WorldSpec(seed=3, chunk_size=chunk_size), cache_chunks=0)
    for level in (3, 4, 5, 6):
        for x in range(2):
            for y in range(2):
                Image.fromarray(world.chunk(ChunkKey(level, x + 3, y)).ortho).save(folder / f"l{level}_{x}_{y}.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short training, 5 DDIM steps and a small region (CI)")
    ap.add_argument("--models", help="a models folder to measure instead of training one here")
    ap.add_argument("--train-steps", type=int, help="optimizer steps of the model trained here")
    ap.add_argument("--sampling-steps", type=int, help="DDIM steps per window (default 10, 5 with --quick)")
    ap.add_argument("--region", type=int, help="side of the measured region, pixels")
    ap.add_argument("--out", help="folder for a PNG of each variant")
    args = ap.parse_args()
    args.sampling_steps = args.sampling_steps or (5 if args.quick else 10)

    import torch

    from worldstream.core import WorldSpec
    from worldstream.core.generators.learned.cascade import Cascade
    from worldstream.core.generators.learned.generator import ProceduralOrtho, open_window_model, to_uint8
    from worldstream.core.generators.learned.tiling import Tiling
    from worldstream.core.generators.learned.training import TrainConfig, train_cascade
    from worldstream.core.generators.procedural import ProceduralGenerator
    from worldstream.core.seams import seam_stats

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    if args.models:
        models = Path(args.models)
        print(f"model: {models}")
    else:
        steps = args.train_steps or (120 if args.quick else 400)
        window, channels = (16, (16, 32)) if args.quick else (32, (32, 64))
        data = Path(tmp.name) / "data"
        data.mkdir()
        training_images(data, 128)
        models = Path(tmp.name) / "models"
        config = TrainConfig(sample_size=window, block_out_channels=channels, condition_channels=16, norm_num_groups=8,
                             resolution_embedding_dim=16, steps=steps, batch_size=16, learning_rate=1e-3,
                             checkpoint_every=10**9, log_every=10, default_mpp=4.0)
        summary = train_cascade(data, models, config)
        print(f"model trained here: {summary['parameters']:,} parameters, window {window} px, {steps} steps in "
              f"{summary['seconds']:.0f} s on {len(list(data.iterdir()))} procedural orthos; loss "
              f"{summary['first_loss']:.4f} -> {summary['final_loss']:.4f}")
    model, n = open_window_model(str(models), {"steps": args.sampling_steps})
    side = args.region or 6 * n
    spec = WorldSpec(seed=3, chunk_size=128)
    root = ProceduralOrtho(ProceduralGenerator(spec))
    level = 6
    first = level - 2 * (model.scale_factor.bit_length() - 1) + 1  # two learned steps above the root
    print(f"region: {side} x {side} px at level {level} ({spec.resolution(level):g} m/px), "
          f"{args.sampling_steps} DDIM steps, cascade from procedural level {first - 1}")
    print(f"{'tiling':<26}{'seam grad':>11}{'interior':>11}{'ratio':>8}{'windows':>9}{'s/window':>10}")
    ratios = {}
    for name, tiling in (("naive (abutting)", Tiling(n, overlap=False, shared_noise=False)),
                         ("overlap only", Tiling(n, shared_noise=False)),
                         ("overlap + shared noise", Tiling(n))):
        cascade = Cascade(model, tiling, 5, root, first, spec.resolution)
        t0 = time.perf_counter()
        img = cascade.region(level, -4 * n, 2 * n, side, side)
        dt = time.perf_counter() - t0
        period, offset = tiling.seam_lines()
        # the region starts on a window start, so the lines lie at multiples of the stride from its corner
        stats = seam_stats(img.transpose(1, 2, 0), period, (offset, offset))
        ratios[name] = stats.ratio
        print(f"{name:<26}{stats.seam:>11.4f}{stats.interior:>11.4f}{stats.ratio:>8.3f}{cascade.windows_sampled:>9}"
              f"{dt / cascade.windows_sampled:>10.4f}")
        if args.out:
            from PIL import Image
            Path(args.out).mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(img)).save(Path(args.out) / f"{name.split()[0]}.png")
    full, naive, overlap = ratios["overlap + shared noise"], ratios["naive (abutting)"], ratios["overlap only"]
    ok = abs(full - 1.0) <= 0.10 and full < naive and full < overlap
    print(f"target (full within 10% of interior, below both ablations): {'met' if ok else 'NOT met'}")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
