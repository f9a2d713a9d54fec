"""Triangles rasterized onto an integer lattice on the CPU, exactly: pure numpy.

Used where the answer is needed per lattice point and not as an image: a chunk's ground sampled on
its own height grid (`ground_grid`), a facade atlas's texels located on their triangles (`bake`).
"""

from __future__ import annotations

import numpy as np

EDGE_EPS = 1e-6  # barycentric slack: points on a shared edge belong to both triangles


def lattice_points(corners: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """corners (T, 3, 2) float64 triangle corners in lattice units (col, row) -> every lattice point
    (col in 0..width-1, row in 0..height-1) inside a triangle, edges included, once per triangle
    covering it: (triangle (K,) int64, col (K,) int64, row (K,) int64, weights (K, 3) float64
    barycentric). Triangles of no area cover nothing."""
    g = np.asarray(corners, np.float64)
    area = (g[:, 1, 0] - g[:, 0, 0]) * (g[:, 2, 1] - g[:, 0, 1]) - (g[:, 2, 0] - g[:, 0, 0]) * (g[:, 1, 1] - g[:, 0, 1])
    keep = np.flatnonzero(np.abs(area) > 1e-9)
    g, area = g[keep], area[keep]
    lo = np.maximum(np.ceil(g.min(axis=1) - EDGE_EPS), 0).astype(np.int64)
    hi = np.minimum(np.floor(g.max(axis=1) + EDGE_EPS), [width - 1, height - 1]).astype(np.int64)
    w, h = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0), np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    count = w * h
    tri = np.repeat(np.arange(len(g)), count)
    k = np.arange(len(tri)) - np.repeat(np.cumsum(count) - count, count)  # index within the triangle's box
    col = lo[tri, 0] + k % w[tri]
    row = lo[tri, 1] + k // w[tri]
    a, b, c = g[tri, 0], g[tri, 1], g[tri, 2]
    l1 = ((b[:, 0] - col) * (c[:, 1] - row) - (c[:, 0] - col) * (b[:, 1] - row)) / area[tri]
    l2 = ((c[:, 0] - col) * (a[:, 1] - row) - (a[:, 0] - col) * (c[:, 1] - row)) / area[tri]
    l3 = 1.0 - l1 - l2
    inside = (l1 >= -EDGE_EPS) & (l2 >= -EDGE_EPS) & (l3 >= -EDGE_EPS)
    return keep[tri[inside]], col[inside], row[inside], np.stack([l1, l2, l3], axis=1)[inside]
