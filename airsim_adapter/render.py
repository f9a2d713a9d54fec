"""Camera images by ray casting the generated surface: Scene (lit ortho colours under a sky),
DepthPlanar and DepthPerspective (metres, float32) and Segmentation (class colours).

Rays are marched over the DSM heightfield of a Ground (its fine and coarse mosaics) by the compiled
marcher in raymarch.py; shading, depth and classes are then pure functions on numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.biomes import PALETTE
from .raymarch import NO_HIT_DEPTH, march_rays
from .structs import rotation_matrix

SKY_RGB = np.array([156, 195, 230], np.float64)
SUN = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])
# Segmentation colours: class id -> RGB, the world's class palette (core.biomes.PALETTE); sky (0, 0, 0)
SEGMENTATION_RGB = np.zeros((256, 3), np.uint8)
for _cid, _rgb in PALETTE.items():
    SEGMENTATION_RGB[_cid] = _rgb


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera: width x height pixels, horizontal field of view (degrees)."""

    width: int = 256
    height: int = 144
    fov_deg: float = 90.0

    @property
    def focal(self) -> float:
        return (self.width / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)

    def matrix(self) -> np.ndarray:
        """(3, 3) K for pixel centres (u right, v down)."""
        f = self.focal
        return np.array([[f, 0, self.width / 2.0], [0, f, self.height / 2.0], [0, 0, 1.0]])


def camera_rays(intr: Intrinsics, orientation_ned) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions in world ENU, (H*W, 3), row-major from the top-left pixel, and the
    camera's forward axis in ENU (3,). orientation_ned: (w, x, y, z), camera body x forward,
    y right, z down (AirSim's camera frame)."""
    v, u = np.mgrid[0:intr.height, 0:intr.width]
    body = np.stack([np.full(u.shape, intr.focal), u + 0.5 - intr.width / 2.0, v + 0.5 - intr.height / 2.0], -1)
    body = body.reshape(-1, 3) / np.linalg.norm(body.reshape(-1, 3), axis=1, keepdims=True)
    ned = body @ rotation_matrix(orientation_ned).T
    to_enu = lambda a: np.stack([a[..., 1], a[..., 0], -a[..., 2]], -1)  # noqa: E731
    return to_enu(ned), to_enu(rotation_matrix(orientation_ned)[:, 0])


def march(ground, origin: np.ndarray, dirs: np.ndarray, max_range: float) -> np.ndarray:
    """(N,) distance along each unit ENU ray dirs (N, 3) from origin (3,) to the first surface of
    `ground` (a Ground around the camera), NO_HIT_DEPTH where none within max_range."""
    fine, coarse = ground.fine, ground.coarse
    return march_rays(np.asarray(origin, np.float64), np.ascontiguousarray(dirs, np.float64), float(max_range),
                      float(ground.top), fine.dsm, fine.west, fine.north, fine.resolution,
                      coarse.dsm, coarse.west, coarse.north, coarse.resolution)


def render(ground, position_enu: np.ndarray, orientation_ned, intr: Intrinsics, max_range: float = 6000.0) -> dict:
    """All image types from one ray cast: {"scene": (H, W, 3) uint8 RGB, "depth_planar",
    "depth_perspective": (H, W) float32 metres, "segmentation": (H, W, 3) uint8 RGB,
    "classes": (H, W) int16 class ids (-1 sky)}."""
    dirs, forward = camera_rays(intr, orientation_ned)
    origin = np.asarray(position_enu, np.float64)
    dist = march(ground, origin, dirs, max_range)
    hit = dist < NO_HIT_DEPTH
    pts = origin + np.where(hit, dist, 0.0)[:, None] * dirs
    classes = np.full(len(dirs), -1, np.int16)
    rgb = np.tile(SKY_RGB, (len(dirs), 1))
    if hit.any():
        sem, albedo = ground.layers(pts[hit, 0], pts[hit, 1])
        classes[hit] = sem
        e = 0.5
        hx = ground.surface(pts[hit, 0] + e, pts[hit, 1]) - ground.surface(pts[hit, 0] - e, pts[hit, 1])
        hy = ground.surface(pts[hit, 0], pts[hit, 1] + e) - ground.surface(pts[hit, 0], pts[hit, 1] - e)
        normal = np.stack([-hx / (2 * e), -hy / (2 * e), np.ones_like(hx)], -1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        shade = 0.45 + 0.65 * np.clip(normal @ SUN, 0.0, 1.0)
        haze = np.clip(dist[hit] / max_range, 0.0, 1.0)[:, None] ** 1.5
        rgb[hit] = (albedo * shade[:, None]) * (1 - haze) + SKY_RGB * haze
    h, w = intr.height, intr.width
    planar = np.where(hit, dist * (dirs @ forward), NO_HIT_DEPTH)
    seg = np.where(hit[:, None], SEGMENTATION_RGB[np.clip(classes, 0, 255)], 0).astype(np.uint8)
    return {"scene": np.clip(rgb, 0, 255).astype(np.uint8).reshape(h, w, 3),
            "depth_planar": planar.astype(np.float32).reshape(h, w),
            "depth_perspective": dist.astype(np.float32).reshape(h, w),
            "segmentation": seg.reshape(h, w, 3), "classes": classes.reshape(h, w)}
