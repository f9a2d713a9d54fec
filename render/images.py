"""A Frame as AirSim's image types (conventions in docs/airsim.md): pure functions on numpy arrays.

Scene: sRGB. DepthPlanar / DepthPerspective: float32 metres, NO_HIT_DEPTH (65504) where nothing is
hit. DepthVis: planar depth / 100 m clipped to 1 (AirSim's DepthVis scale), white far away.
DisparityNormalized: AirSim's (baseline f / depth) normalised to 0..1, here f / depth / f_max where
f_max = focal / near (0 for sky). Segmentation: the world's class palette (sky black).
SurfaceNormals: world ENU normals as n * 127.5 + 127.5.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..core.biomes import PALETTE
from .renderer import NO_HIT_DEPTH, Frame

IMAGE_TYPES = {0: "scene", 1: "depth_planar", 2: "depth_perspective", 3: "depth_vis", 4: "disparity_normalized",
               5: "segmentation", 6: "surface_normals"}
SEGMENTATION_RGB = np.zeros((256, 3), np.uint8)
for _cid, _rgb in PALETTE.items():
    SEGMENTATION_RGB[_cid] = _rgb
DEPTH_VIS_METRES = 100.0


def segmentation(classes: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 palette colours."""
    return SEGMENTATION_RGB[classes]


def depth_vis(depth_planar: np.ndarray) -> np.ndarray:
    """(H, W) float32 metres -> (H, W) float32 in [0, 1]."""
    return np.clip(depth_planar / DEPTH_VIS_METRES, 0.0, 1.0).astype(np.float32)


def disparity_normalized(depth_planar: np.ndarray, near: float = 0.5) -> np.ndarray:
    """(H, W) float32 metres -> (H, W) float32 in [0, 1]: near / depth (0 where nothing is hit)."""
    hit = depth_planar < NO_HIT_DEPTH
    return np.where(hit, np.clip(near / np.maximum(depth_planar, near), 0.0, 1.0), 0.0).astype(np.float32)


def image_of(frame: Frame, name: str) -> np.ndarray:
    """One AirSim image type of a frame: (H, W, 3) uint8 or (H, W) float32."""
    if name == "scene":
        return frame.scene
    if name == "depth_planar":
        return frame.depth_planar
    if name == "depth_perspective":
        return frame.depth_perspective
    if name == "depth_vis":
        return depth_vis(frame.depth_planar)
    if name == "disparity_normalized":
        return disparity_normalized(frame.depth_planar)
    if name == "segmentation":
        return segmentation(frame.classes)
    if name == "surface_normals":
        return frame.normals
    raise ValueError(f"unknown image type {name!r}; expected one of {', '.join(IMAGE_TYPES.values())}")


def outputs_for(names) -> set[str]:
    """The renderer targets that the image types `names` need."""
    need = set()
    for n in names:
        need.add({"scene": "scene", "segmentation": "ids", "surface_normals": "normals"}.get(n, "depth"))
    return need


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) or (H, W) uint8 -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
