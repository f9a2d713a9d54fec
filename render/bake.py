"""Texture back-projection (MetaEarth3D's bake): the texels of a chunk's facade atlas painted from
views of the chunk. Pure numpy on the views' images, so it works on any set of views: renders of
the procedural facades (to test it), or the learned multi-view inpainting's outputs.

For every texel of the atlas that a facade triangle covers, its 3D point and normal come from that
triangle (`atlas_texels`); a view sees the point when its depth image, at the pixel the point
projects to, agrees with the point's own depth (a z-buffer test); of the views that see it, the one
facing it most squarely (largest n . d_view) paints it, sampled bilinearly (`bake`). Texels no view
sees keep what the atlas held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raster import lattice_points
from .renderer import Frame
from .scene import RenderChunk

MIN_FACING = 0.2  # cos of the most oblique view a texel takes its colour from (78 deg)


@dataclass(frozen=True, eq=False)
class AtlasTexels:
    """The atlas texels facade triangles cover: covered (H, W) bool; points (H, W, 3) float64 world
    ENU metres and normals (H, W, 3) float32 unit (zero where not covered)."""

    covered: np.ndarray
    points: np.ndarray
    normals: np.ndarray


def atlas_texels(chunk: RenderChunk, instance: int | None = None) -> AtlasTexels:
    """The texels of `chunk`'s facade atlas covered by its facade surfaces' triangles (those of the
    building `instance` only, if given), each with the point and normal where it lies."""
    if chunk.facade is None:
        raise ValueError("the chunk has no facade atlas to bake")
    h, w = chunk.facade.shape[:2]
    covered = np.zeros((h, w), bool)
    points = np.zeros((h, w, 3))
    normals = np.zeros((h, w, 3), np.float32)
    origin = np.array([chunk.origin[0], chunk.origin[1], 0.0])
    for s in chunk.surfaces:
        if s.texture != "facade":
            continue
        tris = s.triangles.astype(np.int64)
        if instance is not None:
            tris = tris[(s.instance[tris] == instance).all(axis=1)]
        corners = s.uv.astype(np.float64)[tris] * [w, h] - 0.5  # texel centres on the integer lattice
        tri, col, row, weights = lattice_points(corners, w, h)
        v = tris[tri]  # (K, 3) vertex indices
        p = (s.positions.astype(np.float64)[v] * weights[:, :, None]).sum(axis=1) + origin
        n = (s.normals.astype(np.float64)[v] * weights[:, :, None]).sum(axis=1)
        covered[row, col] = True
        points[row, col] = p
        normals[row, col] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return AtlasTexels(covered, points, normals)


def bake(atlas: np.ndarray, texels: AtlasTexels, views: list[Frame]) -> tuple[np.ndarray, np.ndarray]:
    """atlas (H, W, 3) uint8 and its texels, views (frames with scene and depth_planar) -> (the
    atlas with every texel a view sees painted from its best view (H, W, 3) uint8, that view's
    index per texel (H, W) int16, -1 where none sees it)."""
    rows, cols = np.nonzero(texels.covered)
    p, n = texels.points[rows, cols], texels.normals[rows, cols].astype(np.float64)
    best = np.full(len(p), -1, np.int64)
    best_facing = np.full(len(p), MIN_FACING)
    samples = np.zeros((len(p), 3))
    for i, view in enumerate(views):
        if view.scene is None or view.depth_planar is None:
            raise ValueError(f"view {i} lacks the scene or depth image a bake needs")
        u, v, depth = project(view, p)
        to_camera = np.asarray(view.pose.position, np.float64) - p
        facing = (n * to_camera).sum(axis=1) / np.maximum(np.linalg.norm(to_camera, axis=1), 1e-12)
        h, w = view.depth_planar.shape
        inside = (depth > 0) & (u >= 0.5) & (u <= w - 0.5) & (v >= 0.5) & (v <= h - 0.5)
        col = np.clip(np.floor(u).astype(np.int64), 0, w - 1)
        row = np.clip(np.floor(v).astype(np.int64), 0, h - 1)
        seen = inside & (np.abs(view.depth_planar[row, col] - depth) <= 0.05 + 0.01 * depth)  # the z-buffer test
        better = seen & (facing > best_facing)
        best[better], best_facing[better] = i, facing[better]
        samples[better] = bilinear(view.scene, u[better] - 0.5, v[better] - 0.5)
    out = atlas.copy()
    chosen = np.full(texels.covered.shape, -1, np.int16)
    painted = best >= 0
    out[rows[painted], cols[painted]] = np.clip(np.rint(samples[painted]), 0, 255).astype(np.uint8)
    chosen[rows, cols] = best
    return out, chosen


def project(view: Frame, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) world ENU points -> image coordinates u, v (pixels, (0, 0) the top-left corner) and
    planar depth (metres along the optical axis; <= 0 behind the camera), each (N,) float64."""
    body = (points - np.asarray(view.pose.position, np.float64)) @ view.pose.rotation  # FRD
    depth = body[:, 0]
    safe = np.where(depth > 1e-9, depth, 1.0)
    f = view.intrinsics.focal
    return f * body[:, 1] / safe + view.intrinsics.width / 2.0, f * body[:, 2] / safe + view.intrinsics.height / 2.0, depth


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W, C) image at pixel-centre coordinates x (col), y (row) -> (N, C) float64, edges clamped."""
    h, w = image.shape[:2]
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0), np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
