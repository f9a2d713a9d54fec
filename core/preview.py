"""Region mosaics for people to look at: ortho albedo lit by a hillshade of the surface."""

from __future__ import annotations

import math

import numpy as np

from .heightfield import surface_normals
from .keys import ChunkKey
from .world import World


def hillshade(grid: np.ndarray, resolution: float, azimuth_deg: float = 315.0, altitude_deg: float = 45.0) -> np.ndarray:
    """(H+1, W+1) height samples -> (H, W) float32 shade in [0, 1] (sun from azimuth, clockwise from north)."""
    az, alt = math.radians(azimuth_deg), math.radians(altitude_deg)
    sun = np.array([math.sin(az) * math.cos(alt), math.cos(az) * math.cos(alt), math.sin(alt)], dtype=np.float32)
    return np.clip(surface_normals(grid, resolution) @ sun, 0.0, 1.0).astype(np.float32)


def level_for(world: World, size_m: float, max_pixels: int) -> int:
    """The coarsest level showing `size_m` metres in at least `max_pixels` pixels (else the finest)."""
    for level in range(world.spec.levels):
        if size_m / world.spec.resolution(level) >= max_pixels:
            return level
    return world.spec.levels - 1


def region(world: World, cx: float, cy: float, size_m: float, level: int) -> dict[str, np.ndarray]:
    """Mosaic of ortho (H, W, 3), semantic (H, W) and DSM samples (H+1, W+1) over the square of side
    `size_m` centred on (cx, cy), at `level`; row 0 north."""
    spec = world.spec
    res = spec.resolution(level)
    n = spec.chunk_size
    half = size_m / 2.0
    c0, c1 = math.floor((cx - half) / res), math.ceil((cx + half) / res)
    r0, r1 = math.floor((cy - half) / res), math.ceil((cy + half) / res)
    kx0, kx1, ky0, ky1 = c0 // n, (c1 - 1) // n, r0 // n, (r1 - 1) // n
    w_pix, h_pix = (kx1 - kx0 + 1) * n, (ky1 - ky0 + 1) * n
    ortho = np.zeros((h_pix, w_pix, 3), np.uint8)
    semantic = np.zeros((h_pix, w_pix), np.uint8)
    dsm = np.zeros((h_pix + 1, w_pix + 1), np.float32)
    for ky in range(ky0, ky1 + 1):
        for kx in range(kx0, kx1 + 1):
            c = world.chunk(ChunkKey(level, kx, ky))
            i0, j0 = (ky1 - ky) * n, (kx - kx0) * n
            ortho[i0:i0 + n, j0:j0 + n] = c.ortho
            semantic[i0:i0 + n, j0:j0 + n] = c.semantic
            dsm[i0:i0 + n + 1, j0:j0 + n + 1] = c.dsm
    # crop to the requested square (pixel columns c0..c1, rows counted from the north)
    j_a, j_b = c0 - kx0 * n, c1 - kx0 * n
    top = (ky1 + 1) * n
    i_a, i_b = top - r1, top - r0
    return {"ortho": ortho[i_a:i_b, j_a:j_b], "semantic": semantic[i_a:i_b, j_a:j_b],
            "dsm": dsm[i_a:i_b + 1, j_a:j_b + 1], "resolution": np.float64(res)}


def shaded_ortho(ortho: np.ndarray, dsm: np.ndarray, resolution: float, exaggeration: float = 2.0) -> np.ndarray:
    """Ortho albedo multiplied by a soft hillshade: (H, W, 3) uint8."""
    shade = hillshade(dsm * exaggeration, resolution)
    light = 0.35 + 0.9 * shade
    return np.clip(ortho.astype(np.float32) * light[..., None], 0, 255).astype(np.uint8)
