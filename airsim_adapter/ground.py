"""What the simulator knows of the world around the vehicle: surface heights, classes and colours
sampled from the generated chunks (the DSM / semantic / ortho layers the streamed meshes are built
from), at a fine level near the vehicle and a coarse one out to the horizon."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.keys import ChunkKey
from ..core.world import World


@dataclass
class Mosaic:
    """One level's layers over an axis-aligned square of whole chunks.
    dsm: (H+1, W+1) float32 samples; semantic: (H, W) uint8; ortho: (H, W, 3) uint8; row 0 north."""

    level: int
    resolution: float
    west: float
    north: float
    dsm: np.ndarray
    dem: np.ndarray
    semantic: np.ndarray
    ortho: np.ndarray

    @property
    def east(self) -> float:
        return self.west + self.semantic.shape[1] * self.resolution

    @property
    def south(self) -> float:
        return self.north - self.semantic.shape[0] * self.resolution

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= self.west) & (x < self.east) & (y > self.south) & (y <= self.north)

    def height(self, x: np.ndarray, y: np.ndarray, layer: str = "dsm") -> np.ndarray:
        """Bilinear between samples, as the meshes interpolate; points outside are clamped."""
        grid = getattr(self, layer)
        u = np.clip((x - self.west) / self.resolution, 0, grid.shape[1] - 1.000001)
        v = np.clip((self.north - y) / self.resolution, 0, grid.shape[0] - 1.000001)
        c, r = u.astype(np.int64), v.astype(np.int64)
        fu, fv = u - c, v - r
        return ((grid[r, c] * (1 - fu) + grid[r, c + 1] * fu) * (1 - fv)
                + (grid[r + 1, c] * (1 - fu) + grid[r + 1, c + 1] * fu) * fv)

    def pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.semantic.shape
        c = np.clip(((x - self.west) / self.resolution).astype(np.int64), 0, cols - 1)
        r = np.clip(((self.north - y) / self.resolution).astype(np.int64), 0, rows - 1)
        return r, c


def build_mosaic(world: World, level: int, cx: float, cy: float, radius: float) -> Mosaic:
    """The level's chunks covering the square cx +- radius, cy +- radius, stitched."""
    spec = world.spec
    extent = spec.chunk_extent(level)
    x0, x1 = math.floor((cx - radius) / extent), math.floor((cx + radius) / extent)
    y0, y1 = math.floor((cy - radius) / extent), math.floor((cy + radius) / extent)
    n = spec.chunk_size
    cols, rows = (x1 - x0 + 1) * n, (y1 - y0 + 1) * n
    dsm = np.zeros((rows + 1, cols + 1), np.float32)
    dem = np.zeros((rows + 1, cols + 1), np.float32)
    semantic = np.zeros((rows, cols), np.uint8)
    ortho = np.zeros((rows, cols, 3), np.uint8)
    for i in range(x0, x1 + 1):
        for j in range(y0, y1 + 1):
            c = world.chunk(ChunkKey(level, i, j))
            r0, c0 = (y1 - j) * n, (i - x0) * n
            dsm[r0:r0 + n + 1, c0:c0 + n + 1] = c.dsm
            dem[r0:r0 + n + 1, c0:c0 + n + 1] = c.dem
            semantic[r0:r0 + n, c0:c0 + n] = c.semantic
            ortho[r0:r0 + n, c0:c0 + n] = c.ortho
    return Mosaic(level, spec.resolution(level), x0 * extent, (y1 + 1) * extent, dsm, dem, semantic, ortho)


class Ground:
    """Fine mosaic (finest level) within `near_m` of the last centre, coarse mosaic (16x coarser)
    within `far_m`; rebuilt when the vehicle moves past half their reach."""

    def __init__(self, world: World, near_m: float = 384.0, far_m: float = 6000.0):
        self.world = world
        self.near_m, self.far_m = near_m, far_m
        finest = world.spec.levels - 1
        self.fine_level, self.coarse_level = finest, max(0, finest - 4)
        self.fine: Mosaic | None = None
        self.coarse: Mosaic | None = None
        self._centres = [None, None]

    def around(self, x: float, y: float) -> "Ground":
        for i, (reach, level) in enumerate(((self.near_m, self.fine_level), (self.far_m, self.coarse_level))):
            c = self._centres[i]
            if c is None or max(abs(x - c[0]), abs(y - c[1])) > reach / 2:
                m = build_mosaic(self.world, level, x, y, reach)
                self._centres[i] = (x, y)
                if i == 0:
                    self.fine = m
                else:
                    self.coarse = m
        return self

    @property
    def top(self) -> float:
        """No surface the mosaics hold is higher (m)."""
        return float(max(self.fine.dsm.max(), self.coarse.dsm.max()))

    def surface(self, x, y) -> np.ndarray:
        """DSM height (m, world ENU z) at points: the fine level where it has them."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        inside = self.fine.contains(x, y)
        if inside.all():
            return self.fine.height(x, y)
        out = self.coarse.height(x, y)
        if inside.any():
            out[inside] = self.fine.height(x[inside], y[inside])
        return out

    def ground(self, x, y) -> np.ndarray:
        """Bare-earth (DEM) height at points."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        out = self.coarse.height(x, y, "dem")
        inside = self.fine.contains(x, y)
        return np.where(inside, self.fine.height(x, y, "dem"), out)

    def layers(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(semantic class ids, ortho RGB) at points, nearest pixel of the finest mosaic covering them."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        sem = np.empty(x.shape, np.uint8)
        rgb = np.empty(x.shape + (3,), np.uint8)
        inside = self.fine.contains(x, y)
        for m, mask in ((self.fine, inside), (self.coarse, ~inside)):
            r, c = m.pixel(x[mask], y[mask])
            sem[mask] = m.semantic[r, c]
            rgb[mask] = m.ortho[r, c]
        return sem, rgb
