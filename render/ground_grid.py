"""Coarse stand-ins for the far parts of a chunk's ground: pure functions on numpy arrays.

Level 0 is the coarsest level the streaming selection has, so the chunks out to the horizon keep
their level-0 triangulation however far they are: at 256 px across, most of those triangles are
smaller than a pixel, and a CPU rasterizer pays for each one. A chunk's ground (terrain, water and
cliffs: every surface but buildings) is a height field, so it is first sampled on the chunk's own
(n + 1) x (n + 1) sample grid (the triangles' own interpolation, top surface where two overlap),
and then, for each cull tile and each stride in STRIDES, a regular grid over every stride-th
sample stands in for the tile, with its measured vertical error against the samples. A frame
picks per visible tile the coarsest stride whose error projects under a pixel (`choose_strides`).

Neighbouring tiles at different strides (and the neighbouring chunk) need not meet edge to edge:
each tile's grid hangs a skirt along its four edges, deep enough for the worst error of the tiles
around it, so the cracks between them are walled, not open to the sky.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .culling import nearest_distances
from .raster import lattice_points

STRIDES = (4, 8, 16, 32)  # samples between grid nodes; a tile spans a multiple of the largest


@dataclass(frozen=True, eq=False)
class GroundGrid:
    """A chunk's ground grids. positions, normals: (V, 3) float32 ENU relative to the chunk origin;
    uv: (V, 2) float32 (v down, as the exporters' terrain); triangles: (T, 3) uint32, stride-major:
    for stride index k and tile t (row-major over tiles x tiles from the south-west), the range
    starts[k, t] .. + counts[k, t] holds that tile's grid and skirt; errors: (tiles * tiles, K)
    float64 metres, max vertical error of each tile at each stride; boxes: (tiles * tiles, 2, 3)
    float64 min / max corner of each tile's samples."""

    positions: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    errors: np.ndarray
    boxes: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.positions.nbytes * 2 + self.uv.nbytes + self.triangles.nbytes


def sample_surfaces(surfaces, n: int, extent: float) -> np.ndarray | None:
    """(positions (V, 3), triangles (T, 3)) pairs in chunk-local ENU over [0, extent]^2 -> (n + 1,
    n + 1) float64 heights at the sample points (x, y) = (col, row) * extent / n, row 0 south: the
    highest triangle over each point. None when some point has no triangle over it."""
    res = extent / n
    heights = np.full((n + 1) * (n + 1), -np.inf)
    for positions, triangles in surfaces:
        p = positions.astype(np.float64)[triangles.astype(np.int64)]  # (T, 3 corners, 3)
        tri, col, row, weights = lattice_points(p[:, :, :2] / res, n + 1, n + 1)
        z = (p[tri, :, 2] * weights).sum(axis=1)
        np.maximum.at(heights, row * (n + 1) + col, z)
    if not np.isfinite(heights).all():
        return None
    return heights.reshape(n + 1, n + 1)


def coarse_errors(heights: np.ndarray, tiles: int, strides=STRIDES) -> np.ndarray:
    """(n + 1, n + 1) heights -> (tiles * tiles, K) float64: per tile, the largest vertical
    distance between its samples and the grid over every stride-th sample (each cell split along
    its south-west to north-east diagonal, as `ground_grid` meshes it)."""
    n = heights.shape[0] - 1
    rows, cols = np.mgrid[0:n + 1, 0:n + 1]
    out = np.zeros((tiles * tiles, len(strides)))
    for k, s in enumerate(strides):
        r0, c0 = np.minimum(rows // s, n // s - 1), np.minimum(cols // s, n // s - 1)
        fr, fc = (rows - r0 * s) / s, (cols - c0 * s) / s  # north and east fractions within the cell
        node = heights[::s, ::s]
        z00, z11 = node[r0, c0], node[r0 + 1, c0 + 1]
        z_corner = np.where(fr > fc, node[r0 + 1, c0], node[r0, c0 + 1])  # north-west or south-east corner
        low, high = np.minimum(fr, fc), np.maximum(fr, fc)
        z = z00 + low * (z11 - z00) + (high - low) * (z_corner - z00)
        out[:, k] = _per_tile(np.abs(heights - z), tiles).max(axis=(1, 2))
    return out


def _per_tile(samples: np.ndarray, tiles: int) -> np.ndarray:
    """(n + 1, n + 1) -> (tiles * tiles, t + 1, t + 1): each tile's samples, its edges included."""
    t = (samples.shape[0] - 1) // tiles
    return np.stack([samples[tr * t:tr * t + t + 1, tc * t:tc * t + t + 1] for tr in range(tiles) for tc in range(tiles)])


def ground_grid(heights: np.ndarray, extent: float, tiles: int, strides=STRIDES) -> GroundGrid:
    """The grids of every tile at every stride, with skirts, for (n + 1, n + 1) sample heights
    (row 0 south) over a chunk `extent` metres wide; n must be a multiple of tiles * max(strides)."""
    n = heights.shape[0] - 1
    t = n // tiles
    if n % tiles or t % max(strides):
        raise ValueError(f"a {n}-sample chunk in {tiles} x {tiles} tiles: expected tiles of a multiple of {max(strides)} samples")
    res = extent / n
    errors = coarse_errors(heights, tiles, strides)
    # a tile's skirt reaches below the worst error of the tiles around it (any stride), plus a margin
    worst = errors.max(axis=1).reshape(tiles, tiles)
    padded = np.pad(worst, 1, mode="edge")
    around = np.max([padded[1 + dr:1 + dr + tiles, 1 + dc:1 + dc + tiles]
                     for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0).reshape(-1)
    drop = 2.0 * around + 0.25 * res
    gy, gx = np.gradient(heights, res)
    normal_grid = np.stack([-gx, -gy, np.ones_like(gx)], axis=-1)
    normal_grid /= np.linalg.norm(normal_grid, axis=-1, keepdims=True)

    positions, normals, triangles = [], [], []
    starts = np.zeros((len(strides), tiles * tiles), np.int64)
    counts = np.zeros_like(starts)
    base = first = 0
    tr, tc = np.divmod(np.arange(tiles * tiles), tiles)
    for k, s in enumerate(strides):
        m, q = n // s, t // s  # cells per side of the chunk and of a tile at this stride
        rr, cc = np.mgrid[0:m + 1, 0:m + 1] * s
        positions.append(np.stack([cc * res, rr * res, heights[rr, cc]], axis=-1).reshape(-1, 3))
        normals.append(normal_grid[rr, cc].reshape(-1, 3))
        # tile (0, 0) in the lattice's node numbers; every other tile is it shifted by its first node
        local = np.arange(q + 1)[:, None] * (m + 1) + np.arange(q + 1)[None, :]
        sw, se, nw, ne = local[:-1, :-1], local[:-1, 1:], local[1:, :-1], local[1:, 1:]
        cells = np.concatenate([np.stack([sw, se, ne], -1).reshape(-1, 3), np.stack([sw, ne, nw], -1).reshape(-1, 3)])
        ring = np.concatenate([local[0, :], local[1:, -1], local[-1, -2::-1], local[-2:0:-1, 0]])  # edge nodes, in order
        shift = (tr * q * (m + 1) + tc * q)[:, None]  # (tiles^2, 1)
        tops = ring[None, :] + shift  # (tiles^2, 4q) lattice nodes of each tile's edge
        bottoms = positions[-1][tops] - np.stack([np.zeros_like(drop), np.zeros_like(drop), drop], axis=1)[:, None]
        skirt_base = base + len(positions[-1])
        positions.append(bottoms.reshape(-1, 3))
        normals.append(normals[-1][tops].reshape(-1, 3))
        a, b = tops + base, np.roll(tops, -1, axis=1) + base
        ba = skirt_base + np.arange(tiles * tiles)[:, None] * len(ring) + np.arange(len(ring))[None, :]
        bb = np.roll(ba, -1, axis=1)
        skirts = np.concatenate([np.stack([a, ba, bb], -1), np.stack([a, bb, b], -1)], axis=1)  # (tiles^2, 8q, 3)
        tris = np.concatenate([cells[None] + shift[:, :, None] + base, skirts], axis=1)  # (tiles^2, per tile, 3)
        per_tile = tris.shape[1]
        starts[k] = first + np.arange(tiles * tiles) * per_tile
        counts[k] = per_tile
        triangles.append(tris.reshape(-1, 3))
        first += tris.shape[0] * per_tile
        base = skirt_base + bottoms.shape[0] * bottoms.shape[1]
    pos = np.concatenate(positions)
    boxes = _tile_boxes(heights, tiles, res, drop)
    uv = np.stack([pos[:, 0] / extent, 1.0 - pos[:, 1] / extent], axis=1)
    return GroundGrid(pos.astype(np.float32), np.concatenate(normals).astype(np.float32), uv.astype(np.float32),
                      np.concatenate(triangles).astype(np.uint32), starts, counts, errors, boxes)


def _tile_boxes(heights: np.ndarray, tiles: int, res: float, drop: np.ndarray) -> np.ndarray:
    """(tiles * tiles, 2, 3) min / max corners of each tile's samples, its skirt's depth included."""
    t = (heights.shape[0] - 1) // tiles
    blocks = _per_tile(heights, tiles)
    tr, tc = np.divmod(np.arange(tiles * tiles), tiles)
    lo = np.stack([tc * t * res, tr * t * res, blocks.min(axis=(1, 2)) - drop], axis=1)
    hi = np.stack([(tc + 1) * t * res, (tr + 1) * t * res, blocks.max(axis=(1, 2))], axis=1)
    return np.stack([lo, hi], axis=1)


def choose_strides(grid: GroundGrid, offset: np.ndarray, focal: float, max_error_px: float = 1.0) -> np.ndarray:
    """(tiles * tiles,) int64: per tile, the index into STRIDES of the coarsest grid whose error,
    seen from the camera at the nearest point of the tile's box (offset: chunk origin - camera,
    ENU (3,)), stays under max_error_px pixels for a camera of `focal` pixels; -1 where even the
    finest is too coarse (the tile keeps the chunk's own triangles)."""
    allowed = grid.errors * focal <= max_error_px * nearest_distances(grid.boxes, offset)[:, None]  # (tiles, K)
    coarsest = len(STRIDES) - 1 - np.argmax(allowed[:, ::-1], axis=1)
    return np.where(allowed.any(axis=1), coarsest, -1)


def next_to(tiles_mask: np.ndarray, tiles: int) -> np.ndarray:
    """(tiles * tiles,) bool -> (tiles * tiles,) bool: tiles with one of their eight neighbours in the mask."""
    m = np.pad(tiles_mask.reshape(tiles, tiles), 1)
    near = np.zeros((tiles, tiles), bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                near |= m[1 + dr:1 + dr + tiles, 1 + dc:1 + dc + tiles]
    return near.reshape(-1)
