"""What the simulator knows of the world around the vehicle: surface heights, classes and colours
sampled from the generated chunks (the DSM / semantic / ortho layers the streamed meshes are built
from), at a fine level near the vehicle and a coarse one out to the horizon."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np

from ..core.keys import ChunkKey
from ..core.world import World
from ..unreal_bridge.products import LAYERS


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


def mosaic_window(spec, level: int, cx: float, cy: float, radius: float) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) inclusive chunk indices of the level covering cx +- radius, cy +- radius."""
    extent = spec.chunk_extent(level)
    return (math.floor((cx - radius) / extent), math.floor((cx + radius) / extent),
            math.floor((cy - radius) / extent), math.floor((cy + radius) / extent))


def stitch(spec, level: int, window: tuple[int, int, int, int], layers: dict) -> Mosaic:
    """One Mosaic from the layers of every chunk in the window: layers[(x, y)] = {"dsm", "dem",
    "semantic", "ortho"} arrays (a Chunk's, or decoded sidecars)."""
    x0, x1, y0, y1 = window
    n = spec.chunk_size
    cols, rows = (x1 - x0 + 1) * n, (y1 - y0 + 1) * n
    dsm = np.zeros((rows + 1, cols + 1), np.float32)
    dem = np.zeros((rows + 1, cols + 1), np.float32)
    semantic = np.zeros((rows, cols), np.uint8)
    ortho = np.zeros((rows, cols, 3), np.uint8)
    for i in range(x0, x1 + 1):
        for j in range(y0, y1 + 1):
            c = layers[(i, j)]
            r0, c0 = (y1 - j) * n, (i - x0) * n
            dsm[r0:r0 + n + 1, c0:c0 + n + 1] = c["dsm"]
            dem[r0:r0 + n + 1, c0:c0 + n + 1] = c["dem"]
            semantic[r0:r0 + n, c0:c0 + n] = c["semantic"]
            ortho[r0:r0 + n, c0:c0 + n] = c["ortho"]
    extent = spec.chunk_extent(level)
    return Mosaic(level, spec.resolution(level), x0 * extent, (y1 + 1) * extent, dsm, dem, semantic, ortho)


def window_keys(level: int, window: tuple[int, int, int, int]) -> list[ChunkKey]:
    x0, x1, y0, y1 = window
    return [ChunkKey(level, i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1)]


def build_mosaic(world: World, level: int, cx: float, cy: float, radius: float) -> Mosaic:
    """The level's chunks covering the square cx +- radius, cy +- radius, generated here and stitched."""
    window = mosaic_window(world.spec, level, cx, cy, radius)
    layers = {}
    for key in window_keys(level, window):
        c = world.chunk(key)
        layers[(key.x, key.y)] = {"dsm": c.dsm, "dem": c.dem, "semantic": c.semantic, "ortho": c.ortho}
    return stitch(world.spec, level, window, layers)


async def fetch_mosaic(service, level: int, cx: float, cy: float, radius: float) -> Mosaic:
    """The same mosaic as build_mosaic, its chunks' layers fetched through a ChunkService (the
    server's memory LRU, disk cache and worker pool: arrays a worker generated, or sidecars decoded
    once), stitched off the event loop."""
    window = mosaic_window(service.spec, level, cx, cy, radius)
    keys = window_keys(level, window)
    layers = await asyncio.gather(*(service.product(k, LAYERS) for k in keys))
    return await asyncio.to_thread(stitch, service.spec, level, window,
                                   {(k.x, k.y): a for k, a in zip(keys, layers)})


PREFETCH = 0.25


class Ground:
    """Fine mosaic (finest level) within `near_m` of its centre, coarse mosaic (16x coarser) within
    `far_m`: fetched in the background through the chunk service as the vehicle moves (prefetch),
    built on the spot only where they do not cover the vehicle with half their reach to spare."""

    def __init__(self, world: World, near_m: float = 384.0, far_m: float = 6000.0):
        self.world = world
        self.near_m, self.far_m = near_m, far_m
        finest = world.spec.levels - 1
        self.fine_level, self.coarse_level = finest, max(0, finest - 4)
        self.fine: Mosaic | None = None
        self.coarse: Mosaic | None = None
        self._centres = [None, None]
        self.built_in_place = 0  # tier builds that blocked (start, teleports, prefetch behind)

    def _tiers(self) -> tuple[tuple[float, int], tuple[float, int]]:
        return (self.near_m, self.fine_level), (self.far_m, self.coarse_level)

    def _set(self, tier: int, mosaic: Mosaic, centre: tuple[float, float]) -> None:
        self._centres[tier] = centre
        if tier == 0:
            self.fine = mosaic
        else:
            self.coarse = mosaic

    def around(self, x: float, y: float) -> "Ground":
        """Make sure both tiers cover (x, y) with half their reach to spare, building here (and
        blocking) where they do not: at start, after a teleport, or when prefetch fell behind."""
        for i, (reach, level) in enumerate(self._tiers()):
            c = self._centres[i]
            if c is None or max(abs(x - c[0]), abs(y - c[1])) > reach / 2:
                self._set(i, build_mosaic(self.world, level, x, y, reach), (x, y))
                self.built_in_place += 1
        return self

    async def prefetch(self, x: float, y: float, service) -> int:
        """Keep the tiers ahead of a moving vehicle without blocking: past PREFETCH of a tier's
        reach from its centre, fetch the tier around (x, y) through `service` (a ChunkService) and
        swap it in. Returns how many tiers were replaced."""
        replaced = 0
        for i, (reach, level) in enumerate(self._tiers()):
            c = self._centres[i]
            if c is not None and max(abs(x - c[0]), abs(y - c[1])) <= reach * PREFETCH:
                continue
            mosaic = await fetch_mosaic(service, level, x, y, reach)
            self._set(i, mosaic, (x, y))
            replaced += 1
        return replaced

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
