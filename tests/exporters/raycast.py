"""Test helper: vectorised ray casting against triangle soups (Moller-Trumbore), numpy only."""

from __future__ import annotations

import numpy as np


def first_hits(origins: np.ndarray, dirs: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """origins, dirs: (R, 3); tris: (T, 3, 3) world positions, counter-clockwise from the front.
    Returns (distance (R,) with inf where nothing is hit, front (R,) bool: the nearest hit faces
    the ray)."""
    v0, v1, v2 = tris[:, 0], tris[:, 1], tris[:, 2]
    e1, e2 = v1 - v0, v2 - v0
    normal = np.cross(e1, e2)
    best = np.full(len(origins), np.inf)
    front = np.zeros(len(origins), dtype=bool)
    for start in range(0, len(origins), 256):
        o = origins[start:start + 256, None, :]
        d = dirs[start:start + 256, None, :]
        p = np.cross(d, e2[None])
        det = np.einsum("rtk,tk->rt", p, e1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = o - v0[None]
        u = np.einsum("rtk,rtk->rt", s, p) * inv
        q = np.cross(s, e1[None])
        v = np.einsum("rtk,rtk->rt", d, q) * inv
        t = np.einsum("tk,rtk->rt", e2, q) * inv
        eps = 1e-9
        hit = ok & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (t > 1e-6)
        t = np.where(hit, t, np.inf)
        idx = np.argmin(t, axis=1)
        tmin = t[np.arange(len(t)), idx]
        best[start:start + 256] = tmin
        facing = np.einsum("rk,rk->r", dirs[start:start + 256], normal[idx]) < 0
        front[start:start + 256] = np.isfinite(tmin) & facing
    return best, front
