"""Multi-view consistency, as MetaEarth3D measures its facade views: view i's colours carried into
view j through the geometry (j's depth image unprojected, projected into i, kept where i's depth
image agrees: the same z-buffer test as the bake) and compared with view j's own colours over
those pixels, as PSNR and SSIM. Pure numpy / scipy on frames (scene + planar depth + pose)."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from .bake import bilinear, project
from .renderer import NO_HIT_DEPTH, Frame

SSIM_SIGMA = 1.5  # Gaussian window of SSIM (Wang et al. 2004)
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def surface_points(view: Frame) -> tuple[np.ndarray, np.ndarray]:
    """The world ENU point (H, W, 3) float64 each pixel of `view` sees, and where it sees one (H, W) bool."""
    rays = view.intrinsics.rays()  # FRD, forward = 1: scaled by planar depth they end on the surface
    depth = view.depth_planar.astype(np.float64)
    hit = depth < NO_HIT_DEPTH
    points = (rays * depth[..., None]) @ view.pose.rotation.T + np.asarray(view.pose.position, np.float64)
    return points, hit


def reproject(source: Frame, target: Frame) -> tuple[np.ndarray, np.ndarray]:
    """source's scene colours at target's pixels through the geometry: ((H, W, 3) float64 colours,
    (H, W) bool: target pixels whose surface point source also sees)."""
    points, hit = surface_points(target)
    flat = points.reshape(-1, 3)
    u, v, depth = project(source, flat)
    h, w = source.depth_planar.shape
    inside = hit.reshape(-1) & (depth > 0) & (u >= 0.5) & (u <= w - 0.5) & (v >= 0.5) & (v <= h - 0.5)
    col = np.clip(np.floor(u).astype(np.int64), 0, w - 1)
    row = np.clip(np.floor(v).astype(np.int64), 0, h - 1)
    seen = inside & (np.abs(source.depth_planar[row, col] - depth) <= 0.05 + 0.01 * np.abs(depth))
    colours = np.zeros((len(flat), 3))
    colours[seen] = bilinear(source.scene, u[seen] - 0.5, v[seen] - 0.5)
    return colours.reshape(*hit.shape, 3), seen.reshape(hit.shape)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, 8-bit peak) of a and b (H, W, 3) over the mask's pixels."""
    mse = float(np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2))
    return 10.0 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, coverage: float = 0.9) -> float:
    """Mean SSIM of the luma of a and b (H, W, 3) over the mask's pixels whose Gaussian window lies
    mostly (`coverage`, 90 %) inside the mask; windows weigh masked pixels only."""
    luma = np.array([0.299, 0.587, 0.114])
    x, y, m = a.astype(np.float64) @ luma, b.astype(np.float64) @ luma, mask.astype(np.float64)
    weight = gaussian_filter(m, SSIM_SIGMA)

    def mean(f):
        return gaussian_filter(f * m, SSIM_SIGMA) / np.maximum(weight, 1e-12)

    mx, my = mean(x), mean(y)
    vx, vy, cov = mean(x * x) - mx * mx, mean(y * y) - my * my, mean(x * y) - mx * my
    s = ((2 * mx * my + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    where = mask & (weight >= coverage)
    return float(s[where].mean()) if where.any() else float("nan")


def view_consistency(views: list[Frame], circular: bool = True, ssim_coverage: float = 0.9) -> dict:
    """PSNR and SSIM of each view's neighbour carried into it (i -> i + 1, and the last into the
    first when circular), averaged over the pairs (SSIM over the pairs where it is defined), with
    the share of pixels compared; ssim_coverage: see `ssim`."""
    pairs = [(i, i + 1) for i in range(len(views) - 1)] + ([(len(views) - 1, 0)] if circular and len(views) > 2 else [])
    scores = []
    for i, j in pairs:
        carried, seen = reproject(views[i], views[j])
        if seen.sum() < 64:
            continue
        target = views[j].scene.astype(np.float64)
        scores.append((psnr(carried, target, seen), ssim(carried, target, seen, ssim_coverage), float(seen.mean())))
    if not scores:
        raise ValueError("no pair of neighbouring views sees a common surface")
    p, s, share = (float(np.nanmean(c)) if not np.isnan(c).all() else float("nan") for c in zip(*scores))
    return {"psnr_db": p, "ssim": s, "pairs": len(scores), "overlap": share}
