"""What a frame shows of each object, from its instance image, and which objects count as visible.

An object counts as **visible** when both hold:
- its pixels in the instance image are at least MIN_VISIBLE_SHARE (30 %) of its silhouette: the
  area of the convex hull of its solid's corners projected into the camera (objects.SceneObject.
  vertices), i.e. what it would cover with nothing in front of it and the image unbounded. A house
  half behind a tree, or cut by the image border to a third, is not visible;
- it covers at least max(MIN_PIXELS, MIN_IMAGE_SHARE * width * height) pixels (8 px, or 0.02 % of
  the image: 39 px at 512 x 384).
Objects with a corner behind the camera's near plane have no silhouette and are never visible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial import QhullError

from ..render.camera import Intrinsics, Pose
from .objects import SceneObject

MIN_VISIBLE_SHARE = 0.3
MIN_PIXELS = 8
MIN_IMAGE_SHARE = 2e-4
NEAR_M = 0.5  # the renderer's near plane


def min_pixels(intr: Intrinsics) -> int:
    """The fewest pixels a visible object covers in an image of this size."""
    return max(MIN_PIXELS, int(np.ceil(MIN_IMAGE_SHARE * intr.width * intr.height)))


def project(points, pose: Pose, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) world ENU points -> ((N, 2) float64 pixel coordinates u right, v down, with pixel (i, j)
    covering [j, j + 1) x [i, i + 1); (N,) float64 depth along the optical axis, m)."""
    p = np.asarray(points, np.float64).reshape(-1, 3) - np.asarray(pose.position, np.float64)
    body = p @ pose.rotation  # (forward, right, down)
    depth = body[:, 0]
    safe = np.where(np.abs(depth) > 1e-9, depth, 1e-9)
    f = intr.focal
    uv = np.stack([f * body[:, 1] / safe + intr.width / 2.0, f * body[:, 2] / safe + intr.height / 2.0], axis=1)
    return uv, depth


def silhouette_area(obj: SceneObject, pose: Pose, intr: Intrinsics) -> float:
    """Pixels of the convex hull of the object's projected solid (inf if a corner is behind the near plane)."""
    uv, depth = project(obj.vertices(), pose, intr)
    if (depth <= NEAR_M).any():
        return float("inf")
    try:
        return float(ConvexHull(uv).volume)  # a 2-D hull's "volume" is its area
    except (QhullError, ValueError):
        return 0.0


@dataclass(frozen=True)
class InstanceStats:
    """Per instance id present in an instance image: ids (K,) uint32 (0 excluded), pixels (K,)
    int64, boxes (K, 4) int64 [left, top, right, bottom) in pixels."""

    ids: np.ndarray
    pixels: np.ndarray
    boxes: np.ndarray


def instance_stats(instances: np.ndarray) -> InstanceStats:
    """(H, W) uint32 instance image -> pixel counts and bounding boxes of every id in it."""
    flat = np.asarray(instances).reshape(-1)
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    h, w = instances.shape
    rows, cols = np.divmod(np.arange(flat.size), w)
    k = len(ids)
    lo_c, lo_r = np.full(k, w), np.full(k, h)
    hi_c, hi_r = np.full(k, -1), np.full(k, -1)
    np.minimum.at(lo_c, inverse, cols), np.minimum.at(lo_r, inverse, rows)
    np.maximum.at(hi_c, inverse, cols), np.maximum.at(hi_r, inverse, rows)
    boxes = np.stack([lo_c, lo_r, hi_c + 1, hi_r + 1], axis=1).astype(np.int64)
    keep = ids != 0
    return InstanceStats(ids[keep].astype(np.uint32), counts[keep].astype(np.int64), boxes[keep])


@dataclass(frozen=True)
class Sighting:
    """One object in one frame: pixels it covers in the instance image; silhouette: its convex
    silhouette's area (px, inf when partly behind the camera); share = pixels / silhouette; box:
    [left, top, right, bottom) pixels of its visible pixels; centre_uv: its 3D centre projected
    (pixels); distance: metres from the camera to its 3D centre; visible: the rule above."""

    object: SceneObject
    pixels: int
    silhouette: float
    share: float
    box: tuple[int, int, int, int]
    centre_uv: tuple[float, float]
    distance: float
    visible: bool


def sightings(instances: np.ndarray, objects: dict[int, SceneObject], pose: Pose, intr: Intrinsics) -> list[Sighting]:
    """Every annotated object present in the instance image, in id order. Ids without an annotation
    (none are expected: every drawn chunk's annotations are passed) are left out."""
    stats = instance_stats(instances)
    least = min_pixels(intr)
    cam = np.asarray(pose.position, np.float64)
    out = []
    for oid, px, box in zip(stats.ids.tolist(), stats.pixels.tolist(), stats.boxes.tolist()):
        obj = objects.get(int(oid))
        if obj is None:
            continue
        area = silhouette_area(obj, pose, intr)
        share = px / area if area > 0 else 0.0
        uv, _ = project(np.array([obj.centre]), pose, intr)
        dist = float(np.linalg.norm(np.asarray(obj.centre) - cam))
        out.append(Sighting(obj, int(px), area, float(share), tuple(int(b) for b in box),
                            (float(uv[0, 0]), float(uv[0, 1])), dist,
                            bool(share >= MIN_VISIBLE_SHARE and px >= least)))
    return out
