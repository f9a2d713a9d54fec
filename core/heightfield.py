"""Derived quantities of height grids on the shared-border sample grid (numpy)."""

from __future__ import annotations

import numpy as np


def surface_normals(grid: np.ndarray, resolution: float) -> np.ndarray:
    """(H+1, W+1) height samples (row 0 north) -> (H, W, 3) float32 unit normals in ENU, one per
    pixel, from the central differences of its four corner samples."""
    g = grid.astype(np.float64)
    dzdx = ((g[:-1, 1:] + g[1:, 1:]) - (g[:-1, :-1] + g[1:, :-1])) * (0.5 / resolution)
    dzdy = ((g[:-1, :-1] + g[:-1, 1:]) - (g[1:, :-1] + g[1:, 1:])) * (0.5 / resolution)
    n = np.stack([-dzdx, -dzdy, np.ones_like(dzdx)], axis=-1)
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)
