"""The ray marcher behind the simulator's cameras, compiled with numba: one thread per ray batch,
each ray stepping over the two-tier DSM (fine mosaic where it has data, coarse elsewhere) with
steps that cannot pass through a slope of up to MAX_SLOPE, then refined by bisection.

Vertical building walls may be cut by at most the minimum step (MIN_STEP_M, growing with distance
by MIN_STEP_PER_M). Compiled on first use and cached next to this file (about 5 s once).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

MAX_SLOPE = 2.0
MIN_STEP_M = 0.5
MIN_STEP_PER_M = 0.002  # steps may grow with distance: a third of a 256 px, 90 deg pixel's footprint
MAX_STEPS = 160
BISECTIONS = 8
NO_HIT_DEPTH = 65504.0  # metres for rays that reach no surface (the float16 maximum, as Unreal's depth)


@njit(cache=True, inline="always")
def _bilinear(grid, west, north, res, x, y):
    rows, cols = grid.shape
    u = min(max((x - west) / res, 0.0), cols - 1.000001)
    v = min(max((north - y) / res, 0.0), rows - 1.000001)
    c, r = int(u), int(v)
    fu, fv = u - c, v - r
    return ((grid[r, c] * (1 - fu) + grid[r, c + 1] * fu) * (1 - fv)
            + (grid[r + 1, c] * (1 - fu) + grid[r + 1, c + 1] * fu) * fv)


@njit(cache=True, inline="always")
def _surface(x, y, fine, fw, fn, fr, coarse, cw, cn, cr):
    rows, cols = fine.shape
    if x >= fw and x < fw + (cols - 1) * fr and y <= fn and y > fn - (rows - 1) * fr:
        return _bilinear(fine, fw, fn, fr, x, y)
    return _bilinear(coarse, cw, cn, cr, x, y)


@njit(cache=True, parallel=True)
def march_rays(origin, dirs, max_range, top, fine, fw, fn, fr, coarse, cw, cn, cr):
    """(N,) float64 distance along each unit ENU ray in dirs (N, 3) from origin (3,) to the first
    surface hit, NO_HIT_DEPTH where none within max_range. fine / coarse: (H+1, W+1) float32 DSM
    samples with their west and north edges and metres per pixel; top: no surface is higher."""
    n = dirs.shape[0]
    out = np.empty(n)
    ox, oy, oz = origin[0], origin[1], origin[2]
    for i in prange(n):
        dx, dy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
        out[i] = NO_HIT_DEPTH
        t = 0.0
        if oz > top:
            if dz >= -1e-9:
                continue
            t = (oz - top) / -dz
        rate = max(-dz, 0.0) + MAX_SLOPE * math.hypot(dx, dy) + 1e-3
        prev = t
        hit = False
        for _ in range(MAX_STEPS):
            if t >= max_range:
                break
            pz = oz + t * dz
            gap = pz - _surface(ox + t * dx, oy + t * dy, fine, fw, fn, fr, coarse, cw, cn, cr)
            if gap <= 0.0:
                hit = True
                break
            if pz > top and dz >= 0.0:
                break
            prev = t
            t += max(gap / rate * 0.9, max(MIN_STEP_M, MIN_STEP_PER_M * t))
        if not hit:
            continue
        lo, hi = prev, t
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            if oz + mid * dz - _surface(ox + mid * dx, oy + mid * dy, fine, fw, fn, fr, coarse, cw, cn, cr) <= 0.0:
                hi = mid
            else:
                lo = mid
        out[i] = hi
    return out


def warm_up() -> None:
    """Compile (or load from the cache) before the first frame is asked for."""
    grid = np.zeros((2, 2), np.float32)
    march_rays(np.array([0.0, 0.0, 1.0]), np.array([[0.0, 0.0, -1.0]]), 10.0, 0.0, grid, 0.0, 1.0, 1.0,
               grid, 0.0, 1.0, 1.0)
