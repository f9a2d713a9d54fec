"""AirSim's structs as the official client (airsim 1.8.1) reads them: msgpack maps keyed by field
name (x_val, w_val, ...). Pure functions from numpy / plain values to those maps."""

from __future__ import annotations

import math

import numpy as np


def vector3r(v) -> dict:
    return {"x_val": float(v[0]), "y_val": float(v[1]), "z_val": float(v[2])}


def quaternionr(q) -> dict:
    """q = (w, x, y, z)."""
    return {"w_val": float(q[0]), "x_val": float(q[1]), "y_val": float(q[2]), "z_val": float(q[3])}


def from_vector3r(d) -> np.ndarray:
    if isinstance(d, dict):
        return np.array([d.get("x_val", 0.0), d.get("y_val", 0.0), d.get("z_val", 0.0)], dtype=np.float64)
    if isinstance(d, (list, tuple)) and len(d) == 3:  # Colosseum-style arrays
        return np.array(d, dtype=np.float64)
    raise ValueError(f"expected a Vector3r map {{x_val, y_val, z_val}}, got {d!r:.120}")


def yaw_quaternion(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> tuple[float, float, float, float]:
    """AirSim's to_quaternion(pitch, roll, yaw) in NED (radians) -> (w, x, y, z)."""
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    return (cy * cr * cp + sy * sr * sp, cy * sr * cp - sy * cr * sp, cy * cr * sp + sy * sr * cp,
            sy * cr * cp - cy * sr * sp)


def rotation_matrix(q) -> np.ndarray:
    """(3, 3) matrix of unit quaternion (w, x, y, z): body vector -> frame vector."""
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def pose(position, orientation) -> dict:
    return {"position": vector3r(position), "orientation": quaternionr(orientation)}


def geo_point(lat: float, lon: float, alt: float) -> dict:
    return {"latitude": float(lat), "longitude": float(lon), "altitude": float(alt)}


def kinematics(position, orientation, velocity, acceleration=(0.0, 0.0, 0.0), angular_velocity=(0.0, 0.0, 0.0)) -> dict:
    return {"position": vector3r(position), "orientation": quaternionr(orientation),
            "linear_velocity": vector3r(velocity), "angular_velocity": vector3r(angular_velocity),
            "linear_acceleration": vector3r(acceleration), "angular_acceleration": vector3r((0.0, 0.0, 0.0))}


def collision_info(has_collided=False, normal=(0, 0, 0), impact_point=(0, 0, 0), position=(0, 0, 0),
                   penetration_depth=0.0, time_stamp=0, object_name="", object_id=-1) -> dict:
    return {"has_collided": bool(has_collided), "normal": vector3r(normal), "impact_point": vector3r(impact_point),
            "position": vector3r(position), "penetration_depth": float(penetration_depth),
            "time_stamp": int(time_stamp), "object_name": object_name, "object_id": int(object_id)}


def rc_data(timestamp: int = 0) -> dict:
    out = {"timestamp": int(timestamp), "pitch": 0.0, "roll": 0.0, "throttle": 0.0, "yaw": 0.0,
           "is_initialized": False, "is_valid": False}
    out.update({f"switch{i}": 0 for i in range(1, 9)})
    return out


def image_response(data_uint8: bytes, data_float, position, orientation, time_stamp: int, width: int,
                   height: int, image_type: int, pixels_as_float: bool, compress: bool, message: str = "") -> dict:
    return {"image_data_uint8": data_uint8, "image_data_float": data_float, "camera_position": vector3r(position),
            "camera_orientation": quaternionr(orientation), "time_stamp": int(time_stamp), "message": message,
            "pixels_as_float": bool(pixels_as_float), "compress": bool(compress), "width": int(width),
            "height": int(height), "image_type": int(image_type)}
