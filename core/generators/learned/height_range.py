"""The height model's range scheme: metres <-> the model's [-1, 1] space, per window, from the coarser level.

MetaEarth3D normalises each window's valid heights into 8 bits, which loses the metres. Here a
window's heights h (metres, on the level's sample grid) are written relative to the coarser
level's heights under the same window, which the sampler knows before it samples the window:

    ref = upsample_corners(coarse)                    the coarser level's surface at this level's samples
    s   = min_scale + relief_gain * (max(coarse) - min(coarse))    one scale per window, metres
    y   = clip((h - ref) / s, -1, 1)                  what the model denoises
    h   = ref + s * y                                 back to metres

`coarse` is the (C, n/2, n/2) window of the level above, on the shared-border sample grid: a
level's even samples lie exactly on the coarser level's samples. In training, `coarse` comes from
the target itself (`coarse_heights`: a [1, 2, 1] tent filter, then every second sample), as the
coarser level's own heights would be. So |h - ref| <= s everywhere, by construction: a level can
depart from the one above by at most its window's scale, and never drifts from it.
Everything here is a pure function of its arrays (torch, float32, any leading batch shape).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ...errors import GeneratorError


@dataclass(frozen=True)
class HeightRange:
    """min_scale: the smallest window scale, metres; relief_gain: the scale's growth with the
    coarser window's relief (max - min, metres)."""

    min_scale: float = 8.0
    relief_gain: float = 0.25

    def __post_init__(self) -> None:
        for name in ("min_scale", "relief_gain"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                raise GeneratorError(f"height range {name} must be a finite number >= 0, got {v!r}")
        if not self.min_scale > 0:
            raise GeneratorError(f"height range min_scale must be > 0 metres, got {self.min_scale!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def scale(self, coarse: torch.Tensor) -> torch.Tensor:
        """coarse (..., C, m, m) metres -> (..., 1, 1, 1) float32 window scale in metres (one per window,
        shared by the channels so DSM - DEM keeps its sign and size)."""
        flat = coarse.to(torch.float32).flatten(-3)
        relief = flat.amax(dim=-1) - flat.amin(dim=-1)
        return (self.min_scale + self.relief_gain * relief)[..., None, None, None]

    def normalise(self, heights: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """heights (..., C, n, n), coarse (..., C, n/2, n/2) metres -> (..., C, n, n) float32 in [-1, 1]."""
        ref = upsample_corners(coarse)
        return ((heights.to(torch.float32) - ref) / self.scale(coarse)).clamp(-1.0, 1.0)

    def metres(self, normalised: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """normalised (..., C, n, n) in [-1, 1], coarse (..., C, n/2, n/2) -> (..., C, n, n) float32 metres."""
        return upsample_corners(coarse) + self.scale(coarse) * normalised.to(torch.float32).clamp(-1.0, 1.0)


def upsample_corners(coarse: torch.Tensor) -> torch.Tensor:
    """(..., C, m, m) samples of the coarser level -> (..., C, 2m, 2m) float32 at this level's samples.

    Sample k of this level lies at coarse position k / 2: even samples copy the coarse ones, odd
    samples are the mean of their two (four) neighbours. The last odd row and column lie past the
    window's last coarse sample and repeat it."""
    c = coarse.to(torch.float32)
    nxt_r = torch.cat([c[..., 1:, :], c[..., -1:, :]], dim=-2)
    rows = torch.stack([c, (c + nxt_r) * 0.5], dim=-2).flatten(-3, -2)  # (..., 2m, m)
    nxt_c = torch.cat([rows[..., 1:], rows[..., -1:]], dim=-1)
    return torch.stack([rows, (rows + nxt_c) * 0.5], dim=-1).flatten(-2)


def coarse_heights(heights: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) samples -> (..., C, ceil(H/2), ceil(W/2)) float32: the coarser level's samples as
    a [1, 2, 1] / 4 tent filter (edges replicated) taken at every even sample."""
    h = heights.to(torch.float32)
    lead = h.shape[:-2]
    x = h.reshape(-1, 1, *h.shape[-2:])
    k = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float32)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), (k[:, None] * k[None, :])[None, None])
    x = x[..., ::2, ::2]
    return x.reshape(*lead, *x.shape[-2:])
