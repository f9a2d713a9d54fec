"""Error-bounded terrain meshes from a height grid, with borders that neighbours share exactly.

A chunk's (n+1) x (n+1) height samples become a triangulated irregular network whose vertices are
a subset of the samples:

- border vertices come from a 1-D simplification of each edge's profile alone (within max_error),
  so the two chunks that share an edge (same level) pick the same vertices from the same
  bit-equal samples;
- the interior comes from pydelatin's greedy refinement (Garland-Heckbert) at max_error / 2, run
  on the grid whose border is replaced by the simplified profile; each boundary triangle is then
  split into a fan through the border vertices its edge skips. A fan moves the surface by at most
  what Delatin allowed at those samples (max_error / 2), so every sample stays within max_error;
- the error is then measured at every sample (rasterised triangles) and recorded. Should Delatin
  ever put a border vertex elsewhere than the simplified profile's, the mesh is rebuilt by
  Delaunay refinement instead (union of vertices, worst samples added until within max_error).

Coordinates here are sample indices: column (east) and row (south, row 0 = north edge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydelatin import Delatin

from ..core.errors import WorldstreamError

if TYPE_CHECKING:
    from scipy.spatial import Delaunay


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
    fanned = _delatin_with_fans(g, border, max_error)
    if fanned is not None:
        points, tris = fanned
        worst = float(mesh_error(points, g[points[:, 1], points[:, 0]], tris, g).max())
        if worst <= max_error * (1 + 1e-6) + 1e-6:
            return _result(points, tris, g, worst, n)
    return _refined_mesh(g, border, max_error, max_rounds)


def _delatin_with_fans(g: np.ndarray, border: np.ndarray, max_error: float):
    """(points (V, 2) int64 col,row; triangles (T, 3)) or None when Delatin chose a border vertex
    outside `border`."""
    n = g.shape[0] - 1
    flat = g.copy()
    for line, fixed in ((np.s_[0, :], border[border[:, 1] == 0][:, 0]), (np.s_[n, :], border[border[:, 1] == n][:, 0]),
                        (np.s_[:, 0], border[border[:, 0] == 0][:, 1]), (np.s_[:, n], border[border[:, 0] == n][:, 1])):
        profile = g[line].astype(np.float64)
        flat[line] = np.interp(np.arange(n + 1), fixed, profile[fixed]).astype(np.float32)
        flat[line][fixed] = g[line][fixed]
    d = Delatin(flat, width=n + 1, height=n + 1, max_error=max_error * 0.5)
    pts = _delatin_points(d, n)
    tris = d.triangles.astype(np.int64)
    on_border = (pts[:, 0] == 0) | (pts[:, 0] == n) | (pts[:, 1] == 0) | (pts[:, 1] == n)
    border_keys = set(map(tuple, border.tolist()))
    if not all(tuple(p) in border_keys for p in pts[on_border].tolist()):
        return None
    # only border vertices are ever looked up (the extra ones and the fans' chains)
    index = {tuple(p): i for i, p in zip(np.flatnonzero(on_border).tolist(), pts[on_border].tolist())}
    extra = [tuple(p) for p in border.tolist() if tuple(p) not in index]
    for j, p in enumerate(extra):
        index[p] = len(pts) + j
    points = np.concatenate([pts, np.array(extra, dtype=np.int64).reshape(-1, 2)])
    # only triangles with an edge on the border can skip border vertices
    pc = points[tris]  # (T, 3, 2)
    edge_on = np.zeros(len(tris), dtype=bool)
    for i in range(3):
        u, v = pc[:, i], pc[:, (i + 1) % 3]
        edge_on |= (((u[:, 0] == 0) & (v[:, 0] == 0)) | ((u[:, 0] == n) & (v[:, 0] == n))
                    | ((u[:, 1] == 0) & (v[:, 1] == 0)) | ((u[:, 1] == n) & (v[:, 1] == n)))
    out = [tris[~edge_on]]
    fans = []
    queue = [tuple(t) for t in tris[edge_on].tolist()]
    while queue:  # a corner triangle may have two border edges: fan one, then look again
        a, b, c = queue.pop()
        for (u, v, w) in ((a, b, c), (b, c, a), (c, a, b)):
            side = _shared_side(points[u], points[v], n)
            if side is not None:
                split = _fan(points, u, v, w, side, border, index)
                if len(split) > 1:
                    queue.extend(split)
                    break
        else:
            fans.append((a, b, c))
    out.append(np.array(fans, dtype=np.int64).reshape(-1, 3))
    return points, np.concatenate(out)


def _delatin_points(d: Delatin, n: int) -> np.ndarray:
    """Delatin's vertices as (col, row) sample indices: its y counts from the grid's last row."""
    xy = np.round(d.vertices[:, :2]).astype(np.int64)
    return np.stack([xy[:, 0], n - xy[:, 1]], axis=1)


def _shared_side(pu, pv, n: int):
    """The border line (axis, value) both points lie on, or None."""
    for axis in (0, 1):
        for value in (0, n):
            if pu[axis] == value and pv[axis] == value:
                return axis, value
    return None


def _fan(points, u, v, w, side, border, index):
    """Split triangle (u, v, w), whose edge u-v lies on a border line, at the border vertices
    strictly between u and v; keeps the winding of (u, v, w)."""
    axis, value = side
    other = 1 - axis
    lo, hi = points[u][other], points[v][other]
    on_line = border[border[:, axis] == value]
    between = on_line[(on_line[:, other] > min(lo, hi)) & (on_line[:, other] < max(lo, hi))]
    if len(between) == 0:
        return [(u, v, w)]
    between = between[np.argsort(between[:, other])]
    if lo > hi:
        between = between[::-1]
    chain = [u] + [index[tuple(p)] for p in between.tolist()] + [v]
    return [(chain[i], chain[i + 1], w) for i in range(len(chain) - 1)]


def mesh_error(points: np.ndarray, heights: np.ndarray, tris: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """|mesh - grid| at every sample, (n+1, n+1) float64. Each triangle is evaluated at the samples
    of its bounding box that it holds (exact barycentric test on integer coordinates), all at once.
    points: (V, 2) int (col, row); heights: (V,); tris: (T, 3)."""
    n = grid.shape[0] - 1
    p = points.astype(np.int64)
    corners = p[tris]  # (T, 3, 2)
    c0, c1 = corners[:, :, 0].min(1), corners[:, :, 0].max(1)
    r0, r1 = corners[:, :, 1].min(1), corners[:, :, 1].max(1)
    w, h = c1 - c0 + 1, r1 - r0 + 1
    k = w * h
    tri = np.repeat(np.arange(len(tris)), k)
    local = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
    cc = c0[tri] + local % w[tri]
    rr = r0[tri] + local // w[tri]
    ax, ay = corners[:, 0, 0], corners[:, 0, 1]
    e1x, e1y = corners[:, 1, 0] - ax, corners[:, 1, 1] - ay
    e2x, e2y = corners[:, 2, 0] - ax, corners[:, 2, 1] - ay
    det = e1x * e2y - e1y * e2x
    flip = np.where(det < 0, -1, 1)  # compare signed barycentrics against |det|
    px, py = cc - ax[tri], rr - ay[tri]
    f = flip[tri]
    nb = (px * e2y[tri] - e2x[tri] * py) * f  # barycentrics times |det|, exact in integers
    nc = (e1x[tri] * py - px * e1y[tri]) * f
    inside = (nb >= 0) & (nc >= 0) & (nb + nc <= (det * flip)[tri])
    planes = _planes(p.astype(np.float64)[tris], heights.astype(np.float64)[tris])
    value = np.full((n + 1, n + 1), np.nan)
    t, x, y = tri[inside], cc[inside], rr[inside]
    value[y, x] = planes[t, 0] * x + planes[t, 1] * y + planes[t, 2]
    if np.isnan(value).any():
        raise WorldstreamError("terrain mesh leaves samples uncovered")
    return np.abs(value - grid.astype(np.float64))


def _refined_mesh(g: np.ndarray, border: np.ndarray, max_error: float, max_rounds: int) -> TerrainMesh:
    """The fallback: Delaunay of border and Delatin vertices, refined until within max_error. (scipy
    is imported here: a worker that never needs the fallback saves its 29 MB.)"""
    from scipy.spatial import Delaunay

    n = g.shape[0] - 1
    d = Delatin(g, width=n + 1, height=n + 1, max_error=max_error)
    inner = _delatin_points(d, n)
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

    return _result(points, tri.simplices, g, worst, n)


def _result(points: np.ndarray, simplices: np.ndarray, g: np.ndarray, worst: float, n: int) -> TerrainMesh:
    tris = simplices.astype(np.int32)
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
