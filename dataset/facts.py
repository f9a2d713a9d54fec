"""Per-frame facts: what one rendered view shows, measured on its images and on the world.

Everything a question or caption says comes from here: the camera (height above the bare earth,
compass heading), land-cover shares of the class image, the slope of the visible ground (pixels
unprojected through the depth image, slopes from the world's bare-earth heights), and the
sightings of annotated objects (visibility.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..airsim_adapter.dataset import class_shares
from ..core.biomes import CLASS_IDS
from ..render.camera import Intrinsics, Pose
from ..render.renderer import NO_HIT_DEPTH
from .visibility import Sighting

# land-cover groups of the class image, as questions name them (class names of core.biomes)
COVER_GROUPS: dict[str, tuple[str, ...]] = {
    "water": ("water",), "sand": ("sand",), "desert": ("desert",), "grassland": ("grass",),
    "forest": ("forest", "tree"), "rock": ("rock",), "snow": ("snow",), "farmland": ("farmland",),
    "roads": ("road",), "buildings": ("building",), "paved ground": ("urban_ground",), "sky": ("sky",),
}
GROUND_CLASSES = tuple(CLASS_IDS[c] for c in ("water", "sand", "desert", "grass", "forest", "rock", "snow",
                                              "farmland", "road", "urban_ground"))
TERRAIN = ("flat", "rolling", "hilly", "steep")  # by the median slope of the visible ground
TERRAIN_LIMITS = (3.0, 8.0, 16.0)  # degrees
SLOPE = ("flat", "gentle", "moderate", "steep")  # slope classes of one ground point
SLOPE_LIMITS = (5.0, 15.0, 30.0)  # degrees
SAMPLE_GRID = (16, 12)  # ground samples across x down the image
SLOPE_STEP = 2.0  # metres: half the finite-difference baseline of a slope
COMPASS = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")


def compass(yaw_deg: float) -> str:
    """The nearest of the 8 compass directions to a heading (degrees clockwise from north)."""
    return COMPASS[int(round((yaw_deg % 360.0) / 45.0)) % 8]


def slope_queries(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (4N,) points whose bare-earth heights give the slopes at (N,) world points (`slopes`)."""
    d = SLOPE_STEP
    return np.concatenate([x + d, x - d, x, x]), np.concatenate([y, y, y + d, y - d])


def slopes(z: np.ndarray) -> np.ndarray:
    """(N,) slope in degrees from the (4N,) heights at `slope_queries` (central differences)."""
    z = np.asarray(z, np.float64).reshape(4, -1)
    gx, gy = (z[0] - z[1]) / (2 * SLOPE_STEP), (z[2] - z[3]) / (2 * SLOPE_STEP)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def classify(value: float, limits: tuple[float, ...], names: tuple[str, ...]) -> str:
    return names[int(np.searchsorted(limits, value, side="right"))]


@dataclass(frozen=True)
class GroundSample:
    """A ground pixel: u, v pixel centre; x, y, z the world point it shows; slope in degrees."""

    u: float
    v: float
    x: float
    y: float
    z: float
    slope: float


@dataclass(frozen=True)
class FrameFacts:
    """index: frame number in its scene; pose, intr: the camera; agl: camera metres above the bare
    earth under it; yaw, pitch, roll: degrees (AirSim's); cover: {COVER_GROUPS name: share of image
    pixels} (largest first, absent groups left out); samples: ground samples; terrain: TERRAIN class
    of their median slope (None with under 12 samples); median_slope: degrees; sightings: every
    annotated object in the instance image."""

    index: int
    pose: Pose
    intr: Intrinsics
    agl: float
    yaw: float
    pitch: float
    roll: float
    cover: dict[str, float]
    samples: tuple[GroundSample, ...]
    terrain: str | None
    median_slope: float
    sightings: tuple[Sighting, ...]

    @property
    def visible(self) -> tuple[Sighting, ...]:
        return tuple(s for s in self.sightings if s.visible)

    @property
    def heading(self) -> str:
        return compass(self.yaw)


def cover_shares(classes: np.ndarray) -> dict[str, float]:
    """(H, W) uint8 class image -> {COVER_GROUPS name: share of pixels}, largest first (sky: class 0)."""
    ids, counts = np.unique(classes, return_counts=True)
    per = dict(zip(ids.tolist(), counts.tolist()))
    sky = per.pop(0, 0)
    by_class = class_shares(per, sky)
    groups = {g: sum(by_class.get(c, 0.0) for c in members) for g, members in COVER_GROUPS.items()}
    return {g: round(v, 6) for g, v in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0}


def sample_points(depth: np.ndarray, classes: np.ndarray, pose: Pose, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ground pixels on a SAMPLE_GRID lattice unprojected through planar depth (m): ((N, 2) pixel
    centres u, v; (N, 3) world ENU points)."""
    gx, gy = SAMPLE_GRID
    us = ((np.arange(gx) + 0.5) * intr.width / gx).astype(int)
    vs = ((np.arange(gy) + 0.5) * intr.height / gy).astype(int)
    v, u = np.meshgrid(vs, us, indexing="ij")
    v, u = v.reshape(-1), u.reshape(-1)
    d = depth[v, u].astype(np.float64)
    keep = np.isin(classes[v, u], GROUND_CLASSES) & (d < NO_HIT_DEPTH)
    u, v, d = u[keep], v[keep], d[keep]
    f = intr.focal
    body = np.stack([np.ones(len(u)), (u + 0.5 - intr.width / 2) / f, (v + 0.5 - intr.height / 2) / f], axis=1)
    world = np.asarray(pose.position) + (body * d[:, None]) @ pose.rotation.T
    return np.stack([u + 0.5, v + 0.5], axis=1).astype(np.float64), world.reshape(-1, 3)


def ground_samples(uv: np.ndarray, world: np.ndarray, slope: np.ndarray) -> tuple[GroundSample, ...]:
    return tuple(GroundSample(float(a), float(b), *(float(c) for c in w), float(s))
                 for (a, b), w, s in zip(uv, world, slope))


def frame_facts(index: int, pose: Pose, intr: Intrinsics, angles: tuple[float, float, float], classes: np.ndarray,
                samples: tuple[GroundSample, ...], ground_under_camera: float, sightings: list[Sighting]) -> FrameFacts:
    """The facts of one frame from its class image (H, W) uint8, its ground samples and the bare
    earth height under the camera."""
    slopes_ = np.array([s.slope for s in samples])
    median = float(np.median(slopes_)) if len(slopes_) else 0.0
    terrain = classify(median, TERRAIN_LIMITS, TERRAIN) if len(slopes_) >= 12 else None
    yaw, pitch, roll = angles
    return FrameFacts(index, pose, intr, float(pose.position[2]) - ground_under_camera, yaw % 360.0, pitch, roll,
                      cover_shares(classes), samples, terrain, median, tuple(sightings))


def near_limit(value: float, limits: tuple[float, ...], margin: float) -> bool:
    """Whether value lies within margin of a class limit (too close to call)."""
    return any(abs(value - lim) < margin for lim in limits)


def angle_name(du: float, dv: float) -> tuple[str, float]:
    """Image direction of an offset (du right, dv down, pixels) as one of 8 names, and how many
    degrees it lies from the nearest sector border."""
    names = ("right", "upper right", "above", "upper left", "left", "lower left", "below", "lower right")
    a = math.degrees(math.atan2(-dv, du)) % 360.0
    sector = int(((a + 22.5) % 360.0) // 45.0)
    border = abs(((a + 22.5) % 45.0) - 22.5)
    return names[sector], 22.5 - border
