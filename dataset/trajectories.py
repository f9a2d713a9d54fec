"""Random 6-DOF camera trajectories over a scene: a gently curving flight line through the site,
with height above the surface, yaw, pitch and roll varying smoothly along it within the ranges asked.

Everything is drawn from one `numpy.random.Generator` seeded by (world seed, scene index), so a
scene's trajectory never depends on any other scene."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..render.camera import Pose

SurfaceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N,) x, y -> (N,) surface height (m, roofs and crowns)


@dataclass(frozen=True)
class Ranges:
    """altitude: (min, max) metres above the surface under the camera; pitch: (min, max) degrees
    (negative looks down); roll: largest |roll| in degrees; radius: metres from the site centre
    that the flight line stays within."""

    altitude: tuple[float, float] = (30.0, 150.0)
    pitch: tuple[float, float] = (-85.0, -35.0)
    roll: float = 6.0
    radius: float = 160.0

    def __post_init__(self) -> None:
        lo, hi = self.altitude
        if not 2.0 <= lo <= hi <= 5000.0:
            raise ValueError(f"altitude range must be MIN:MAX metres with 2 <= MIN <= MAX <= 5000, got {lo}:{hi}")
        lo, hi = self.pitch
        if not -90.0 <= lo <= hi <= 30.0:
            raise ValueError(f"pitch range must be MIN:MAX degrees with -90 <= MIN <= MAX <= 30, got {lo}:{hi}")
        if not 0.0 <= self.roll <= 45.0:
            raise ValueError(f"roll must be 0..45 degrees, got {self.roll}")
        if not self.radius > 0:
            raise ValueError(f"scene radius must be positive, got {self.radius}")


@dataclass(frozen=True)
class Stop:
    """One camera along a trajectory: x, y world ENU metres; agl: metres above the surface under
    it; yaw (clockwise from north), pitch (up positive), roll (right positive) in degrees (AirSim's)."""

    x: float
    y: float
    agl: float
    yaw: float
    pitch: float
    roll: float


def _smooth(rng: np.random.Generator, lo: float, hi: float, t: np.ndarray) -> np.ndarray:
    """Values in [lo, hi] varying smoothly over t in [0, 1]: a random line plus a random half sine."""
    a, b = rng.uniform(lo, hi, 2)
    wobble = rng.uniform(-0.25, 0.25) * (hi - lo) * np.sin(np.pi * t)
    return np.clip(a + (b - a) * t + wobble, lo, hi)


def trajectory(rng: np.random.Generator, centre: tuple[float, float], views: int, ranges: Ranges) -> list[Stop]:
    """`views` stops along a random flight line through the disc of ranges.radius about centre."""
    if views < 1:
        raise ValueError(f"views per scene must be at least 1, got {views}")
    t = np.linspace(0.0, 1.0, views)
    heading = rng.uniform(0.0, 2.0 * math.pi)  # radians, counter-clockwise from east
    turn = rng.uniform(-0.8, 0.8)  # radians turned over the whole line
    length = rng.uniform(0.8, 1.6) * ranges.radius
    offset = rng.uniform(-0.4, 0.4, 2) * ranges.radius
    angle = heading + turn * (t - 0.5)
    s = (t - 0.5) * length
    x = centre[0] + offset[0] + s * np.cos(angle)
    y = centre[1] + offset[1] + s * np.sin(angle)
    agl = _smooth(rng, *ranges.altitude, t)
    course = 90.0 - np.degrees(angle)  # clockwise from north
    yaw = (course + _smooth(rng, -70.0, 70.0, t) + rng.choice([0.0, 180.0])) % 360.0
    pitch = _smooth(rng, *ranges.pitch, t)
    roll = _smooth(rng, -ranges.roll, ranges.roll, t)
    return [Stop(*(float(v) for v in row)) for row in zip(x, y, agl, yaw, pitch, roll)]


def poses(stops: list[Stop], surface: SurfaceFn) -> list[Pose]:
    """Camera poses for stops: z = surface(x, y) + agl."""
    xs = np.array([s.x for s in stops])
    ys = np.array([s.y for s in stops])
    z = np.asarray(surface(xs, ys), np.float64)
    return [Pose.from_angles((s.x, s.y, float(zz) + s.agl), s.yaw, s.pitch, s.roll) for s, zz in zip(stops, z)]
