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


def sample_normals(grid: np.ndarray, resolution: float) -> np.ndarray:
    """(H+1, W+1) height samples (row 0 north) -> (H+1, W+1, 3) float32 unit normals in ENU, one per
    sample, from central differences (one-sided on the border)."""
    g = grid.astype(np.float64)
    dz_drow, dz_dcol = np.gradient(g, resolution)
    n = np.stack([-dz_dcol, dz_drow, np.ones_like(g)], axis=-1)  # north = -row
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)
