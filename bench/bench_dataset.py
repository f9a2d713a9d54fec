"""Benchmark: the data engine's throughput, QA pairs per minute and frames per second on this CPU.

Usage: python bench/bench_dataset.py [--scenes 60] [--seed 7] [--out DIR] [--quick]
The full form runs `worldstream dataset build` as its defaults are (8 views of 512x384 per scene,
scene sites picked over a 24 km square of the default world) for --scenes scenes into a fresh
folder, and prints the QA pairs, frames, wall time per stage, QA pairs per minute, frames per
second and the time for 60 scenes (measured when --scenes 60, else extrapolated per scene from
this run), against the target: 60 scenes and at least 7,690 QA pairs (MetaEarth3D's size) in at
most 30 minutes on this 2-core CPU. It then scores the test split's ground truth (must be 100 %)
and the majority-answer baseline. --quick (CI): 2 scenes of 2 views at 160x120 in a 1 m/px world
of four levels at two given sites: the same figures, not the target's configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TARGET_SCENES, TARGET_QA, TARGET_MINUTES = 60, 7690, 30.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=TARGET_SCENES)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", help="dataset folder (default: a temporary one, removed after)")
    ap.add_argument("--quick", action="store_true", help="2 small scenes in a small world, for CI")
    args = ap.parse_args(argv)

    from worldstream.core import WorldSpec
    from worldstream.dataset import BuildSettings, build
    from worldstream.dataset.evaluate import evaluate, majority_predictions, read_jsonl

    if args.quick:
        settings = BuildSettings(seed=args.seed, scenes=2, views=2, width=160, height=120,
                                 centres=((3000.0, -3000.0), (2750.0, -3150.0)),
                                 spec=WorldSpec(seed=args.seed, base_resolution=8.0, levels=4))
    else:
        settings = BuildSettings(seed=args.seed, scenes=args.scenes, spec=WorldSpec(seed=args.seed))
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_dataset_")
    out = Path(args.out or tmp.name) / "dataset"
    try:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        card = build(settings, out, log=sys.stderr)
        wall = time.perf_counter() - t0
        t = card["timing"]
        qa, frames, scenes = card["qa_pairs"], card["frames"], card["scenes"]
        print(f"form: {'quick (not the target configuration)' if args.quick else 'full'}; {scenes} scenes x "
              f"{settings.views} views at {settings.width}x{settings.height}; load average at start {load:.2f}, "
              f"at end {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        print(f"QA pairs: {qa} ({', '.join(f'{k} {v}' for k, v in card['per_family'].items())}); "
              f"{card['candidates_before_balancing']} candidates before balancing")
        print(f"wall time: {wall:.1f} s (sites {t['sites']:.1f}, chunks {t['chunks']:.1f}, render {t['render']:.1f}, "
              f"qa {t['qa']:.1f}, write {t['write']:.1f}, assemble {t['assemble']:.1f})")
        print(f"QA pairs per minute: {qa / wall * 60:.1f}")
        print(f"frames per second: {frames / wall:.3f} overall; {frames / max(t['render'], 1e-9):.1f} drawing only")
        per_scene = (wall - t["sites"]) / scenes
        minutes = (t["sites"] + per_scene * TARGET_SCENES) / 60.0 if scenes != TARGET_SCENES else wall / 60.0
        qa60 = qa if scenes == TARGET_SCENES else qa / scenes * TARGET_SCENES
        how = "measured" if scenes == TARGET_SCENES else "extrapolated"
        print(f"60 scenes ({how}): {minutes:.1f} min, {qa60:.0f} QA pairs")
        met = "met" if qa60 >= TARGET_QA and minutes <= TARGET_MINUTES else "NOT met"
        print(f"target 60 scenes, >= {TARGET_QA} QA pairs in <= {TARGET_MINUTES:.0f} min: {met}")
        test = read_jsonl(out / "test.jsonl")
        train = read_jsonl(out / "train.jsonl")
        truth = evaluate(test, {it["id"]: it["messages"][1]["content"][0]["text"] for it in test})["overall"]
        base = evaluate(test, majority_predictions(train, test))["overall"]
        print(f"eval on test: ground truth {100 * truth:.2f} %, majority baseline {100 * base:.2f} %")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
