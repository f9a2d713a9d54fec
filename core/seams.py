"""Seam statistics of stitched images: the mean absolute gradient across stitching lines vs inside tiles.

MetaEarth's measure of tiling quality: a seamless mosaic changes across a stitching line as much
as anywhere else (ratio 1); a visible seam shows as a ratio above 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import WorldstreamError


class SeamMetricError(WorldstreamError, ValueError):
    """The image or the line grid cannot be measured."""


@dataclass(frozen=True)
class SeamStats:
    seam: float  # mean |difference| between the two pixels either side of a stitching line
    interior: float  # the same over every other pair of neighbouring pixels
    lines: int  # stitching lines measured (vertical + horizontal)

    @property
    def ratio(self) -> float:
        return self.seam / self.interior if self.interior > 0 else float("inf")

    def as_dict(self) -> dict:
        return {"seam_gradient": self.seam, "interior_gradient": self.interior, "ratio": self.ratio,
                "lines": self.lines}


def seam_stats(image: np.ndarray, period: int, offset: tuple[int, int] = (0, 0)) -> SeamStats:
    """Seam statistics of an (H, W) or (H, W, C) image whose tiles start every `period` pixels.

    offset: (row, col) of one stitching line's first pixel, i.e. lines lie between pixel k - 1
    and k wherever k % period == offset (per axis). Image borders are not lines.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise SeamMetricError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 2:
        raise SeamMetricError(f"period must be an integer number of pixels >= 2, got {period!r}")
    h, w = img.shape[:2]
    if h <= period or w <= period:
        raise SeamMetricError(f"a {h} x {w} image holds no stitching line every {period} px")
    dx = np.abs(np.diff(img, axis=1)).mean(axis=2)  # (H, W-1): between column k-1 and k at index k-1
    dy = np.abs(np.diff(img, axis=0)).mean(axis=2)  # (H-1, W)
    col_line = (np.arange(1, w) % period) == offset[1] % period
    row_line = (np.arange(1, h) % period) == offset[0] % period
    seam_sum = dx[:, col_line].sum() + dy[row_line, :].sum()
    seam_n = dx[:, col_line].size + dy[row_line, :].size
    inner_sum = dx[:, ~col_line].sum() + dy[~row_line, :].sum()
    inner_n = dx[:, ~col_line].size + dy[~row_line, :].size
    return SeamStats(seam=float(seam_sum / seam_n), interior=float(inner_sum / inner_n),
                     lines=int(col_line.sum() + row_line.sum()))
