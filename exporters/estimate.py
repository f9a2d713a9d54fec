"""What an export will cost before it starts: chunks per level, bytes and CPU time, extrapolated
from a few chunks per level generated and exported here (measured) to the whole region
(extrapolated). Pure functions, except `measure`, which times real exports.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from ..core.keys import ChunkKey
from ..core.spec import WorldSpec
from .formats import export_key


@dataclass(frozen=True)
class LevelSample:
    """Chunks of one level exported here: seconds and bytes of each (all formats asked)."""

    level: int
    seconds: tuple[float, ...]
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class LevelEstimate:
    """One level of a plan: chunks to export; the measured median CPU seconds and bytes a chunk
    (over `sampled` chunks); and the extrapolated totals (CPU hours, gigabytes)."""

    level: int
    resolution_m: float
    chunks: int
    sampled: int
    seconds_per_chunk: float
    bytes_per_chunk: float

    @property
    def cpu_hours(self) -> float:
        return self.chunks * self.seconds_per_chunk / 3600.0

    @property
    def gigabytes(self) -> float:
        return self.chunks * self.bytes_per_chunk / 1e9


def sample_keys(keys: list[ChunkKey], count: int) -> list[ChunkKey]:
    """`count` keys spread evenly over `keys` (all of them if fewer), deterministic."""
    if count >= len(keys):
        return list(keys)
    step = len(keys) / count
    return [keys[int(i * step + step / 2)] for i in range(count)]


def measure(spec: WorldSpec, keys: list[ChunkKey], formats: tuple[str, ...], warm_up: bool = True) -> LevelSample:
    """Export `keys` (one level) in this process, one at a time, each timed in CPU seconds of this
    process (what a CPU hour counts; other jobs on the machine do not inflate it), on one torch
    thread as a worker of `generate` runs. warm_up: first export, untimed, a chunk far from the
    keys (imports and first-call costs, without warming anything the keys share)."""
    spec_json = spec.to_json()
    if warm_up and keys:
        far = ChunkKey(keys[0].level, keys[0].x + 7919, keys[0].y - 7919)
        export_key(spec_json, far.path(), formats)
    seconds, sizes = [], []
    for k in keys:
        t = time.process_time()
        files = export_key(spec_json, k.path(), formats)
        seconds.append(time.process_time() - t)
        sizes.append(sum(len(v) for v in files.values()))
    return LevelSample(keys[0].level if keys else -1, tuple(seconds), tuple(sizes))


def estimate(spec: WorldSpec, counts: dict[int, int], samples: dict[int, LevelSample]) -> list[LevelEstimate]:
    """Per level, `counts[level]` chunks at the median time and size of `samples[level]`."""
    out = []
    for level, n in sorted(counts.items()):
        s = samples[level]
        if not s.seconds:
            raise ValueError(f"level {level}: no chunk measured, so nothing to extrapolate from")
        out.append(LevelEstimate(level, spec.resolution(level), n, len(s.seconds), statistics.median(s.seconds),
                                 statistics.median(s.sizes)))
    return out


def wall_hours(rows: list[LevelEstimate], workers: int) -> float:
    """Hours for `workers` processes that each export as fast as the measuring one (no contention)."""
    return sum(r.cpu_hours for r in rows) / max(workers, 1)
