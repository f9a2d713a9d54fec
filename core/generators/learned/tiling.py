"""Unbounded tiling in scale space: the fixed global window grid, blending weights and noise fields.

Every level has its own global raster: pixel (row, col) with col = the global pixel index east
(as ChunkKey.sample_origin counts it) and row = -(pixel index north) - 1, so rows grow southwards
as in images and a level-(L+1) pixel (r, c) lies inside the level-L pixel (r // 2, c // 2).

Windows of `size` pixels sit on a fixed grid with stride size / 2 (50% overlap; stride = size for
the naive ablation); window (i, j) covers rows [i * stride, i * stride + size) and the same for
columns. A window's initial noise is cut from one position-hashed Gaussian field per level, so
wherever windows overlap they start from identical noise; the ablations key noise by window instead.
Everything here is a pure function of integers: no RNG state, no dependence on request order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import GeneratorError
from ...hashing import M32, hash2, salt

NOISE_TAG = 0x6E6F6973  # "nois": keeps the noise field's hashes apart from every other use of the seed


@dataclass(frozen=True)
class Tiling:
    """How a level's raster is cut into windows.

    size: window side in pixels (even); overlap: 50% overlapping windows blended with smooth weights
    (False: abutting windows, the naive ablation); shared_noise: initial noise cut from the global
    position-hashed field (False: every window gets noise of its own, the ablations).
    """

    size: int
    overlap: bool = True
    shared_noise: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 4 or self.size % 2:
            raise GeneratorError(f"window size must be an even number of pixels >= 4, got {self.size!r}")

    @property
    def stride(self) -> int:
        return self.size // 2 if self.overlap else self.size

    def origin(self, i: int, j: int) -> tuple[int, int]:
        """Global (row, col) of window (i, j)'s top-left pixel."""
        return i * self.stride, j * self.stride

    def covering(self, row0: int, col0: int, height: int, width: int) -> list[tuple[int, int]]:
        """Indices (i, j) of every window that touches the rectangle, row-major (the blending order)."""
        if height <= 0 or width <= 0:
            raise GeneratorError(f"a region needs a positive size, got {height} x {width}")
        s, n = self.stride, self.size
        i0, i1 = -((n - 1 - row0) // s), (row0 + height - 1) // s  # first i with i*s + n > row0
        j0, j1 = -((n - 1 - col0) // s), (col0 + width - 1) // s
        return [(i, j) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)]

    def seam_lines(self) -> tuple[int, int]:
        """(period, offset) of the raster lines where windows start: the stitching lines of this tiling."""
        return self.stride, 0


def blend_weights(tiling: Tiling) -> np.ndarray:
    """(size, size) float32 blending weights of one window.

    Overlapping windows use the squared sine (Hann) profile sampled at pixel centres, positive
    everywhere; at 50% overlap the two windows over a pixel sum to exactly 1 per axis, so a region
    made of identical windows comes back unchanged. Abutting windows weigh 1.
    """
    n = tiling.size
    if not tiling.overlap:
        return np.ones((n, n), dtype=np.float32)
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    w = np.sin(np.pi * t) ** 2
    return np.outer(w, w).astype(np.float32)


def gaussian_field(key: int, row0: int, col0: int, height: int, width: int, channels: int) -> torch.Tensor:
    """(channels, height, width) float32 standard normal noise at global pixels, on the CPU.

    Pure function of (key, row, col, channel): Box-Muller on two coordinate hashes, in float64, so
    any rectangle cut from the field holds the same values wherever it is cut from.
    """
    rows = torch.arange(row0, row0 + height, dtype=torch.int64).reshape(-1, 1)
    cols = torch.arange(col0, col0 + width, dtype=torch.int64).reshape(1, -1)
    out = torch.empty((channels, height, width), dtype=torch.float32)
    for ch in range(channels):
        k = salt(key, ch)
        u1 = ((hash2(cols, rows, k) >> 8).to(torch.float64) + 0.5) * (1.0 / 16777216.0)
        u2 = ((hash2(cols, rows, k ^ 0x5BD1E995) >> 8).to(torch.float64) + 0.5) * (1.0 / 16777216.0)
        out[ch] = (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)).to(torch.float32)
    return out


def window_noise(seed: int, level: int, tiling: Tiling, i: int, j: int, channels: int, cell: int = 1) -> torch.Tensor:
    """(channels, size / cell, size / cell) float32 initial noise of window (i, j) at `level`.

    cell: raster pixels per noise pixel (1 for models that denoise pixels; a latent upscaler's
    latents are coarser than its output). Shared noise: the window's rectangle of the level's
    global field, on the grid `cell` times coarser than the raster. Otherwise a field of the
    window's own, so overlapping windows start from unrelated noise (the ablations)."""
    if tiling.stride % cell:
        raise GeneratorError(f"window stride {tiling.stride} must be a multiple of the noise cell {cell}")
    m = tiling.size // cell
    if tiling.shared_noise:
        row0, col0 = tiling.origin(i, j)
        return gaussian_field(salt(seed, NOISE_TAG, level), row0 // cell, col0 // cell, m, m, channels)
    return gaussian_field(salt(seed, NOISE_TAG, level, i & M32, j & M32, 1), 0, 0, m, m, channels)


def blend(tiling: Tiling, windows: dict[tuple[int, int], np.ndarray], row0: int, col0: int, height: int,
          width: int) -> np.ndarray:
    """The (C, height, width) float32 region at (row0, col0) as the weighted mean of `windows`.

    windows: (i, j) -> (C, size, size) float32 for every window `tiling.covering` names. Windows
    are added in row-major (i, j) order, so each pixel sums the same terms in the same order
    whatever region it is asked as part of: results are bit-identical across requests."""
    weights = blend_weights(tiling)
    acc = None
    wsum = np.zeros((height, width), dtype=np.float32)
    n = tiling.size
    for i, j in tiling.covering(row0, col0, height, width):
        win = windows[(i, j)]
        if acc is None:
            acc = np.zeros((win.shape[0], height, width), dtype=np.float32)
        r, c = tiling.origin(i, j)
        r_lo, r_hi = max(r, row0), min(r + n, row0 + height)
        c_lo, c_hi = max(c, col0), min(c + n, col0 + width)
        w = weights[r_lo - r:r_hi - r, c_lo - c:c_hi - c]
        acc[:, r_lo - row0:r_hi - row0, c_lo - col0:c_hi - col0] += win[:, r_lo - r:r_hi - r, c_lo - c:c_hi - c] * w
        wsum[r_lo - row0:r_hi - row0, c_lo - col0:c_hi - col0] += w
    return acc / wsum
