"""What the per-level benchmarks (bench_chunks, bench_export) share: their arguments and the
deterministic spread of chunk keys they time."""

from __future__ import annotations

import argparse


def parse_per_level_args(description: str, argv=None) -> tuple[argparse.Namespace, int]:
    """(--per-level N, --seed S, --quick) -> (args, chunks per level: 3 with --quick)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--per-level", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 chunks per level, for CI")
    args = ap.parse_args(argv)
    return args, 3 if args.quick else args.per_level


def spread_key(level: int, i: int):
    """The i-th benchmark key of a level: spread over +-10 chunk extents, deterministic."""
    from worldstream.core import ChunkKey

    return ChunkKey(level, (i * 7919) % 21 - 10, (i * 104729) % 21 - 10)
