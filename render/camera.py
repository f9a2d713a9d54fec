"""Pinhole cameras: intrinsics, poses in world ENU, and the OpenGL matrices that follow from them.

Camera body axes follow AirSim: x forward, y right, z down (FRD). A pose holds the camera position
in world ENU metres (float64) and the rotation taking body FRD vectors to ENU. Rendering is
camera-relative: the view matrix is a pure rotation and every chunk is drawn at (chunk origin -
camera position), so float32 on the GPU never sees large world coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..airsim_adapter.structs import rotation_matrix, yaw_quaternion


@dataclass(frozen=True)
class Intrinsics:
    """width x height pixels, horizontal field of view (degrees); square pixels, principal point
    at the image centre (AirSim's cameras)."""

    width: int = 256
    height: int = 144
    fov_deg: float = 90.0

    def __post_init__(self) -> None:
        if not (1 <= self.width <= 8192 and 1 <= self.height <= 8192):
            raise ValueError(f"image size must be 1..8192 pixels a side, got {self.width}x{self.height}")
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"horizontal field of view must be 1..170 degrees, got {self.fov_deg}")

    @property
    def focal(self) -> float:
        """Focal length in pixels."""
        return (self.width / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)

    def matrix(self) -> np.ndarray:
        """(3, 3) float64 K for pixel centres (u right, v down, pixel (0, 0) centred at 0.5, 0.5)."""
        f = self.focal
        return np.array([[f, 0, self.width / 2.0], [0, f, self.height / 2.0], [0, 0, 1.0]])

    def rays(self) -> np.ndarray:
        """(H, W, 3) float64 body-frame (FRD) directions through pixel centres with forward = 1."""
        v, u = np.mgrid[0:self.height, 0:self.width]
        return np.stack([np.ones(u.shape), (u + 0.5 - self.width / 2.0) / self.focal,
                         (v + 0.5 - self.height / 2.0) / self.focal], -1)


def _unit(q) -> np.ndarray:
    q = np.asarray(q, np.float64)
    n = float(np.linalg.norm(q))
    if n == 0.0:
        raise ValueError("orientation quaternion is zero")
    return q / n


NED_TO_ENU = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


@dataclass(frozen=True)
class Pose:
    """position: (3,) world ENU metres; body_to_enu: (3, 3) rotation, columns = the camera's forward,
    right and down axes in ENU."""

    position: tuple[float, float, float]
    body_to_enu: tuple[tuple[float, float, float], ...]

    @staticmethod
    def from_matrix(position, rotation: np.ndarray) -> "Pose":
        r = np.asarray(rotation, np.float64)
        return Pose(tuple(float(c) for c in position), tuple(tuple(float(c) for c in row) for row in r))

    @staticmethod
    def from_airsim(position_enu, orientation_ned) -> "Pose":
        """An AirSim camera: ENU position, orientation (w, x, y, z) of body FRD in NED."""
        return Pose.from_matrix(position_enu, NED_TO_ENU @ rotation_matrix(_unit(orientation_ned)))

    @staticmethod
    def from_angles(position_enu, yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> "Pose":
        """AirSim's angles: yaw clockwise from north, pitch up positive, roll right positive (degrees)."""
        q = yaw_quaternion(math.radians(yaw_deg), math.radians(pitch_deg), math.radians(roll_deg))
        return Pose.from_airsim(position_enu, q)

    @staticmethod
    def look_at(eye_enu, target_enu) -> "Pose":
        """A camera at eye looking at target, no roll (right axis horizontal)."""
        eye, target = np.asarray(eye_enu, np.float64), np.asarray(target_enu, np.float64)
        f = target - eye
        if np.linalg.norm(f) == 0.0:
            raise ValueError("look_at: eye and target are the same point")
        f /= np.linalg.norm(f)
        right = np.cross(f, [0.0, 0.0, 1.0])
        right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-9 else np.array([1.0, 0.0, 0.0])
        down = np.cross(f, right)
        return Pose.from_matrix(eye, np.stack([f, right, down], axis=1))

    @property
    def rotation(self) -> np.ndarray:
        return np.array(self.body_to_enu, np.float64)

    @property
    def forward(self) -> np.ndarray:
        return self.rotation[:, 0]

    @property
    def up(self) -> np.ndarray:
        return -self.rotation[:, 2]


def view_rotation(pose: Pose) -> np.ndarray:
    """(3, 3) ENU -> OpenGL eye (x right, y up, z backwards)."""
    r = pose.rotation
    return np.stack([r[:, 1], -r[:, 2], -r[:, 0]])


def projection(intr: Intrinsics, near: float, far: float) -> np.ndarray:
    """(4, 4) OpenGL perspective for the pinhole `intr` (pixel-exact: the image's pixel centres are
    the framebuffer's)."""
    f = intr.focal
    return np.array([[2.0 * f / intr.width, 0.0, 0.0, 0.0],
                     [0.0, 2.0 * f / intr.height, 0.0, 0.0],
                     [0.0, 0.0, -(far + near) / (far - near), -2.0 * far * near / (far - near)],
                     [0.0, 0.0, -1.0, 0.0]])
