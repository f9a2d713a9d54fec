"""ChunkKey: the immutable address of a chunk in the unbounded LOD quadtree.

Chunk (level, x, y) covers world east in [x, x + 1) * E and north in [y, y + 1) * E, where E is the
chunk extent at that level (WorldSpec.chunk_extent). x and y are signed and unbounded in principle;
they are limited to |x|, |y| <= 2**40 so that sample indices stay exact in int64 and float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ChunkKeyError
from .spec import WorldSpec

MAX_INDEX = 2**40
MAX_LEVEL = 30


@dataclass(frozen=True, order=True)
class ChunkKey:
    level: int
    x: int
    y: int

    def __post_init__(self) -> None:
        for name in ("level", "x", "y"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ChunkKeyError(f"ChunkKey.{name} must be an integer, got {v!r}")
        if not 0 <= self.level <= MAX_LEVEL:
            raise ChunkKeyError(f"ChunkKey.level must be in [0, {MAX_LEVEL}], got {self.level}")
        if abs(self.x) > MAX_INDEX or abs(self.y) > MAX_INDEX:
            raise ChunkKeyError(f"ChunkKey x, y must be within +-2**40, got ({self.x}, {self.y})")

    def parent(self) -> "ChunkKey":
        if self.level == 0:
            raise ChunkKeyError("level-0 chunks have no parent")
        return ChunkKey(self.level - 1, self.x >> 1, self.y >> 1)  # >> floors for negatives too

    def children(self) -> tuple["ChunkKey", "ChunkKey", "ChunkKey", "ChunkKey"]:
        """South-west, south-east, north-west, north-east."""
        l, x, y = self.level + 1, 2 * self.x, 2 * self.y
        return (ChunkKey(l, x, y), ChunkKey(l, x + 1, y), ChunkKey(l, x, y + 1), ChunkKey(l, x + 1, y + 1))

    def neighbours(self, diagonal: bool = True) -> tuple["ChunkKey", ...]:
        steps = [(1, 0), (0, 1), (-1, 0), (0, -1)]
        if diagonal:
            steps += [(1, 1), (-1, 1), (-1, -1), (1, -1)]
        return tuple(ChunkKey(self.level, self.x + dx, self.y + dy) for dx, dy in steps)

    def bounds(self, spec: WorldSpec) -> tuple[float, float, float, float]:
        """(west, south, east, north) in world metres (float64, exact)."""
        e = spec.chunk_extent(self.level)
        return (self.x * e, self.y * e, (self.x + 1) * e, (self.y + 1) * e)

    def origin(self, spec: WorldSpec) -> tuple[float, float]:
        """South-west corner in world metres: the origin chunk-relative vertices are stored against."""
        w, s, _, _ = self.bounds(spec)
        return (w, s)

    def sample_origin(self, spec: WorldSpec) -> tuple[int, int]:
        """Global integer sample index (column, row) of the chunk's south-west sample at its level."""
        return (self.x * spec.chunk_size, self.y * spec.chunk_size)

    @classmethod
    def at(cls, spec: WorldSpec, x: float, y: float, level: int) -> "ChunkKey":
        """The key of the chunk containing world point (x, y) metres at `level`."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ChunkKeyError(f"world point must be finite, got ({x}, {y})")
        e = spec.chunk_extent(level)
        return cls(level, math.floor(x / e), math.floor(y / e))

    def path(self) -> str:
        return f"{self.level}/{self.x}/{self.y}"

    @classmethod
    def parse(cls, text: str) -> "ChunkKey":
        """Inverse of `path` ("level/x/y")."""
        parts = text.strip().split("/")
        try:
            if len(parts) != 3:
                raise ValueError
            return cls(*(int(p) for p in parts))
        except ValueError:
            raise ChunkKeyError(f"expected a chunk key as 'level/x/y' with integers, got {text!r}") from None


def keys_in_radius(spec: WorldSpec, cx: float, cy: float, radius: float, level: int) -> list[ChunkKey]:
    """Keys at `level` of every chunk intersecting the square [cx +- radius] x [cy +- radius]."""
    if not radius >= 0:
        raise ChunkKeyError(f"radius must be a non-negative number of metres, got {radius!r}")
    e = spec.chunk_extent(level)
    x0, y0 = math.floor((cx - radius) / e), math.floor((cy - radius) / e)
    x1 = max(x0, math.ceil((cx + radius) / e) - 1)
    y1 = max(y0, math.ceil((cy + radius) / e) - 1)
    return [ChunkKey(level, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
