"""Error-bounded terrain meshes from a height grid, with borders that neighbours share exactly.

A chunk's (n+1) x (n+1) height samples become a triangulated irregular network whose vertices are
a subset of the samples:

- border vertices come from a 1-D simplification of each edge's profile alone, so the two chunks
  that share an edge (same level) pick the same vertices from the same bit-equal samples;
- interior vertices come from pydelatin's greedy refinement (Garland-Heckbert);
- the union is Delaunay-triangulated and refined until every sample lies within `max_error`
  (vertically) of the mesh; the measured maximum is the mesh's geometric error.

Coordinates here are sample indices: column (east) and row (south, row 0 = north edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydelatin import Delatin
from scipy.spatial import Delaunay

from ..core.errors import WorldstreamError


@dataclass(frozen=True, eq=False)
class TerrainMesh:
    """cols, rows: (V,) int32 sample indices; heights: (V,) float32 metres; triangles: (T, 3) int32,
    counter-clockwise seen from above (east-north-up); max_error: measured max |mesh - samples| (m);
    border: (B,) vertex indices around the edge, counter-clockwise from the south-west corner."""

    cols: np.ndarray
    rows: np.ndarray
    heights: np.ndarray
    triangles: np.ndarray
    max_error: float
    border: np.ndarray


def simplify_profile(profile: np.ndarray, max_error: float) -> np.ndarray:
    """Indices (sorted, ends included) of a vertical Douglas-Peucker simplification of a 1-D height
    profile: linear interpolation between kept samples is within max_error of every sample.

    profile: (m,) float; the result depends on the profile values alone (ties go to the lowest index).
    """
    p = np.asarray(profile, dtype=np.float64)
    keep = np.zeros(p.size, dtype=bool)
    keep[[0, -1]] = True
    stack = [(0, p.size - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        t = np.arange(1, b - a, dtype=np.float64) / (b - a)
        dev = np.abs(p[a + 1:b] - (p[a] + (p[b] - p[a]) * t))
        i = int(np.argmax(dev))
        if dev[i] > max_error:
            m = a + 1 + i
            keep[m] = True
            stack.extend(((a, m), (m, b)))
    return np.flatnonzero(keep)


def _border_points(grid: np.ndarray, max_error: float) -> np.ndarray:
    """(B, 2) int (col, row) border vertices of every edge, each edge simplified on its own."""
    n = grid.shape[0] - 1
    north = simplify_profile(grid[0, :], max_error)
    south = simplify_profile(grid[n, :], max_error)
    west = simplify_profile(grid[:, 0], max_error)
    east = simplify_profile(grid[:, n], max_error)
    pts = np.concatenate([
        np.stack([north, np.zeros_like(north)], 1), np.stack([south, np.full_like(south, n)], 1),
        np.stack([np.zeros_like(west), west], 1), np.stack([np.full_like(east, n), east], 1)])
    return np.unique(pts, axis=0)


def _interpolate(tri: Delaunay, heights: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mesh heights at (K, 2) points and the index of the triangle holding each."""
    simplex = tri.find_simplex(points)
    if (simplex < 0).any():
        raise WorldstreamError("terrain triangulation does not cover its grid")
    plane = _planes(tri.points[tri.simplices], heights[tri.simplices])[simplex]
    return plane[:, 0] * points[:, 0] + plane[:, 1] * points[:, 1] + plane[:, 2], simplex


def _planes(corners: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(T, 3) coefficients (a, b, c) of z = a x + b y + c through each triangle's corners.
    corners: (T, 3, 2) float64; z: (T, 3) float64."""
    d1 = corners[:, 1] - corners[:, 0]
    d2 = corners[:, 2] - corners[:, 0]
    dz1 = z[:, 1] - z[:, 0]
    dz2 = z[:, 2] - z[:, 0]
    det = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    a = (dz1 * d2[:, 1] - dz2 * d1[:, 1]) / det
    b = (dz2 * d1[:, 0] - dz1 * d2[:, 0]) / det
    return np.stack([a, b, z[:, 0] - a * corners[:, 0, 0] - b * corners[:, 0, 1]], axis=1)


def _triangle_keys(simplices: np.ndarray) -> np.ndarray:
    """One int64 per triangle from its sorted vertex indices (< 2^21 vertices)."""
    s = np.sort(simplices.astype(np.int64), axis=1)
    return (s[:, 0] << 42) | (s[:, 1] << 21) | s[:, 2]


def terrain_mesh(grid: np.ndarray, max_error: float, max_rounds: int = 64) -> TerrainMesh:
    """Mesh an (n+1, n+1) float32 height grid within max_error metres (vertical, at every sample)."""
    if grid.ndim != 2 or grid.shape[0] != grid.shape[1] or grid.shape[0] < 2:
        raise WorldstreamError(f"expected a square (n+1, n+1) height grid, got shape {grid.shape}")
    if not np.isfinite(grid).all():
        raise WorldstreamError("height grid holds NaN or infinite samples")
    if not max_error > 0:
        raise WorldstreamError(f"max_error must be > 0 metres, got {max_error}")
    n = grid.shape[0] - 1
    g = np.ascontiguousarray(grid, dtype=np.float32)
    border = _border_points(g, max_error)
    d = Delatin(g, width=n + 1, height=n + 1, max_error=max_error)
    inner = np.round(d.vertices[:, :2]).astype(np.int64)
    inner = inner[(inner[:, 0] > 0) & (inner[:, 0] < n) & (inner[:, 1] > 0) & (inner[:, 1] < n)]
    points = np.unique(np.concatenate([border, inner]), axis=0)

    samples = np.stack(np.meshgrid(np.arange(n + 1), np.arange(n + 1)), -1).reshape(-1, 2).astype(np.float64)
    truth = g.reshape(-1).astype(np.float64)
    approx = np.empty_like(truth)
    simplex = np.zeros(truth.size, dtype=np.int64)
    stale = np.arange(truth.size)  # samples whose triangle changed since the last round
    old_keys = None
    for _ in range(max_rounds):
        tri = Delaunay(points.astype(np.float64))
        keys = _triangle_keys(tri.simplices)
        if old_keys is not None:
            order = np.argsort(keys)
            pos = np.searchsorted(keys, old_keys, sorter=order).clip(0, keys.size - 1)
            found = keys[order[pos]] == old_keys
            survivor = np.where(found, order[pos], -1)
            simplex = survivor[simplex]
            stale = np.flatnonzero(simplex < 0)
        if stale.size:
            approx[stale], simplex[stale] = _interpolate(tri, g[points[:, 1], points[:, 0]].astype(np.float64),
                                                         samples[stale])
        old_keys = keys
        err = np.abs(approx - truth)
        worst = float(err.max())
        if worst <= max_error:
            break
        # add the worst sample of every triangle that is out of tolerance
        bad = np.flatnonzero(err > max_error)
        order = bad[np.lexsort((-err[bad], simplex[bad]))]
        first = order[np.r_[True, simplex[order][1:] != simplex[order][:-1]]]
        points = np.concatenate([points, samples[first].astype(np.int64)])
    else:
        raise WorldstreamError(f"terrain mesh did not reach {max_error} m in {max_rounds} rounds")

    tris = tri.simplices.astype(np.int32)
    p = points.astype(np.float64)
    # rows grow southwards, so counter-clockwise in ENU is clockwise in (col, row)
    cross = ((p[tris[:, 1], 0] - p[tris[:, 0], 0]) * (p[tris[:, 2], 1] - p[tris[:, 0], 1])
             - (p[tris[:, 1], 1] - p[tris[:, 0], 1]) * (p[tris[:, 2], 0] - p[tris[:, 0], 0]))
    flip = cross > 0
    tris[flip] = tris[flip][:, ::-1]
    return TerrainMesh(cols=points[:, 0].astype(np.int32), rows=points[:, 1].astype(np.int32),
                       heights=g[points[:, 1], points[:, 0]], triangles=tris, max_error=worst,
                       border=_border_loop(points, n))


def _border_loop(points: np.ndarray, n: int) -> np.ndarray:
    """Border vertex indices counter-clockwise in ENU, starting at the south-west corner."""
    c, r = points[:, 0], points[:, 1]
    on = (c == 0) | (c == n) | (r == 0) | (r == n)
    idx = np.flatnonzero(on)
    c, r = c[idx], r[idx]
    # walk: south edge west->east, east edge south->north, north edge east->west, west edge north->south
    key = np.where(r == n, c,
                   np.where(c == n, n + (n - r),
                            np.where(r == 0, 2 * n + (n - c), 3 * n + r)))
    return idx[np.argsort(key, kind="stable")].astype(np.int32)
