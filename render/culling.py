"""View-frustum culling of the pieces of a chunk: pure functions on numpy arrays.

A chunk's triangles (and its tree instances) are grouped into a grid of tiles over its ground
footprint (the same meshes, reordered once when uploaded); each tile keeps its index range and
bounding box, and a frame draws only the tiles whose box meets the frustum. Coarse chunks span
kilometres, mostly outside a narrow view, so this removes most of their triangles before the rasterizer sees them.
"""

from __future__ import annotations

import numpy as np

from .camera import Intrinsics, Pose


def tile_items(centres: np.ndarray, boxes: np.ndarray, tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """centres (K, 2) float64 xy of K items, boxes (K, 2, 3) float64 their min / max corners ->
    (order (K,) int64 that groups the items tile by tile, starts (M,) int64 and counts (M,) int64
    in items per non-empty tile of that order, (M, 2, 3) float64 box of each tile's items);
    tiles x tiles cells over the centres' xy bounds."""
    lo, hi = centres.min(axis=0), centres.max(axis=0)
    cell = np.clip(((centres - lo) / np.maximum(hi - lo, 1e-9) * tiles).astype(np.int64), 0, tiles - 1)
    tile = cell[:, 1] * tiles + cell[:, 0]
    order = np.argsort(tile, kind="stable")
    counts = np.bincount(tile, minlength=tiles * tiles)
    starts = (np.cumsum(counts) - counts)[counts > 0]
    counts = counts[counts > 0]
    ordered = boxes[order]
    tile_boxes = np.stack([np.minimum.reduceat(ordered[:, 0], starts), np.maximum.reduceat(ordered[:, 1], starts)], axis=1)
    return order, starts.astype(np.int64), counts.astype(np.int64), tile_boxes


def tile_triangles(positions: np.ndarray, triangles: np.ndarray, tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """positions (V, 3) float32, triangles (T, 3) uint32 -> (triangles reordered tile by tile (T, 3)
    uint32, starts (K,) int64 and counts (K,) int64 in triangles per non-empty tile, boxes (K, 2, 3)
    float64 min / max corner of each tile's triangles); tiles x tiles cells over the centroids' xy bounds."""
    a, b, c = (positions[triangles[:, i]].astype(np.float64) for i in range(3))  # (T, 3) corners
    centres = ((a + b + c) / 3.0)[:, :2]
    boxes = np.stack([np.minimum(np.minimum(a, b), c), np.maximum(np.maximum(a, b), c)], axis=1)
    order, starts, counts, tile_boxes = tile_items(centres, boxes, tiles)
    return np.ascontiguousarray(triangles[order]), starts, counts, tile_boxes


def square_tile_triangles(positions: np.ndarray, triangles: np.ndarray, tiles: int, extent: float
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Like tile_triangles, over the chunk's square [0, extent]^2 cut in tiles x tiles cells (row-major
    from the south-west), every tile present (empty ones with count 0), and within each tile the
    triangles wholly inside its square first -> (triangles (T, 3) uint32, starts (tiles^2,) int64,
    counts (tiles^2,) int64, inside (tiles^2,) int64: how many of a tile's triangles lie inside its
    square (the rest overhang into its neighbours), boxes (tiles^2, 2, 3) float64 (an empty tile's
    is empty: +inf min, -inf max))."""
    corners = positions[triangles.astype(np.int64)].astype(np.float64)  # (T, 3, 3)
    size = extent / tiles
    cell = np.clip((corners.mean(axis=1)[:, :2] / size).astype(np.int64), 0, tiles - 1)
    tile = cell[:, 1] * tiles + cell[:, 0]
    lo, hi = cell * size, (cell + 1) * size
    eps = 1e-3 * size
    inside = ((corners[:, :, :2] >= lo[:, None] - eps) & (corners[:, :, :2] <= hi[:, None] + eps)).all(axis=(1, 2))
    order = np.lexsort((~inside, tile))
    counts = np.bincount(tile, minlength=tiles * tiles).astype(np.int64)
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    inside_counts = np.bincount(tile, weights=inside, minlength=tiles * tiles).astype(np.int64)
    boxes = np.stack([np.full((tiles * tiles, 3), np.inf), np.full((tiles * tiles, 3), -np.inf)], axis=1)
    nonempty = counts > 0
    if nonempty.any():
        ordered = corners[order]
        boxes[nonempty, 0] = np.minimum.reduceat(ordered.min(axis=1), starts[nonempty])
        boxes[nonempty, 1] = np.maximum.reduceat(ordered.max(axis=1), starts[nonempty])
    return np.ascontiguousarray(triangles[order]).astype(np.uint32), starts, counts, inside_counts, boxes


def frustum_planes(pose: Pose, intr: Intrinsics, near: float) -> np.ndarray:
    """(5, 4) float64 inward planes (n, d) of the view frustum in camera-relative ENU (the camera at
    the origin): a point p is inside where n . p + d >= 0 for all five (four sides and near)."""
    r = pose.rotation
    forward, right, up = r[:, 0], r[:, 1], -r[:, 2]
    tx, ty = intr.width / 2.0 / intr.focal, intr.height / 2.0 / intr.focal
    normals = np.stack([forward * tx - right, forward * tx + right, forward * ty - up, forward * ty + up, forward])
    return np.concatenate([normals, [[0.0], [0.0], [0.0], [0.0], [-near]]], axis=1)


def boxes_in_frustum(boxes: np.ndarray, offset: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """boxes (K, 2, 3) min / max corners, offset (3,) added to them, planes (P, 4) -> (K,) bool:
    False only where the box lies wholly outside some plane (conservative)."""
    lo, hi = boxes[:, 0] + offset, boxes[:, 1] + offset
    n, d = planes[:, :3], planes[:, 3]
    farthest = np.where(n[None] > 0, hi[:, None], lo[:, None])  # (K, P, 3) corner furthest along each normal
    return ((farthest * n[None]).sum(axis=2) + d[None] >= 0).all(axis=1)


def nearest_distances(boxes: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """boxes (K, 2, 3) min / max corners, offset (3,) added to them (camera at the origin) -> (K,)
    float64 distance from the camera to the nearest point of each box (0 inside)."""
    nearest = np.clip(0.0, boxes[:, 0] + offset, boxes[:, 1] + offset)
    return np.sqrt((nearest * nearest).sum(axis=1))


def runs(visible: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous (first triangle, triangle count) ranges covering the visible tiles (starts ascending)."""
    return merged_ranges(starts[visible], counts[visible])


def merged_ranges(starts: np.ndarray, counts: np.ndarray) -> list[tuple[int, int]]:
    """(first, count) ranges, in ascending order of first, with touching ones merged and empty ones dropped."""
    out: list[tuple[int, int]] = []
    for s, c in zip(starts.tolist(), counts.tolist()):
        if not c:
            continue
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + c)
        else:
            out.append((s, c))
    return out
