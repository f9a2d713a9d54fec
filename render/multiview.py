"""Multi-view renders around a block (MetaEarth3D's lateral stage): N cameras on a circle around a
building, the unlit views of its chunk's coarse mesh, and the mask of vertical faces in them.

The facade model sees each view with its vertical faces (|n . z_up| < tau, from the renderer's
normal target) masked out and paints them; `render.bake` carries the painted views back onto the
facade atlas. The same views of the procedural facades are the model's training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .camera import Intrinsics, Pose
from .renderer import NO_HIT_DEPTH, Frame, Renderer
from .scene import RenderChunk

RING_MARGIN = 14.0  # metres between the footprint's farthest corner and the circle of cameras
RING_RISE = 4.0  # metres the cameras stand above the middle of the walls
RING_FOV = 60.0  # degrees, horizontal


@dataclass(frozen=True, eq=False)
class BlockViews:
    """The views of one building's block that paint its facades: building id and its frames (scene:
    the painted colours, depth_planar: the coarse mesh's depth, pose, intrinsics)."""

    building: int
    frames: tuple[Frame, ...]


def ring_poses(footprint, base: float, roof: float, views: int = 8) -> list[Pose]:
    """`views` cameras 360 / views degrees apart (view k at k * 360 / views degrees counter-clockwise
    from east) on a circle around the footprint ((K, 2) ENU metres), looking at the middle of the walls."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    foot = np.asarray(footprint, np.float64)
    centre = np.array([*foot.mean(axis=0), (base + roof) / 2.0])
    radius = float(np.linalg.norm(foot - foot.mean(axis=0), axis=1).max()) + RING_MARGIN
    return [Pose.look_at(centre + [radius * math.cos(a), radius * math.sin(a), RING_RISE], centre)
            for a in np.arange(views) * 2.0 * math.pi / views]


def vertical_mask(frame: Frame, tau: float) -> np.ndarray:
    """(H, W) bool: pixels whose surface is vertical, |n . z_up| < tau (from the normal target)."""
    if frame.normals is None or frame.depth_planar is None:
        raise ValueError("a vertical-face mask needs the frame's normals and depth")
    nz = frame.normals[..., 2].astype(np.float32) / 127.5 - 1.0
    return (np.abs(nz) < tau) & (frame.depth_planar < NO_HIT_DEPTH)


def render_ring(renderer: Renderer, chunk: RenderChunk, building, views: int, size: int) -> list[Frame]:
    """The unlit views (scene, depth, normals) of `chunk` around `building` (core.settlements.Building),
    `size` x `size` px each; `renderer` should be a `Renderer(lit=False)`."""
    intr = Intrinsics(size, size, RING_FOV)
    return [renderer.render([chunk], pose, intr, outputs=("scene", "depth", "normals"))
            for pose in ring_poses(building.footprint, building.base, building.roof, views)]
