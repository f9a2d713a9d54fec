"""Every coordinate frame of the project, in one module (see DESIGN.md section 4).

| frame   | axes                                          | units |
|---------|-----------------------------------------------|-------|
| world   | ENU: x east, y north, z up                    | m     |
| glTF    | y up, right-handed: (E, U, -N)                | m     |
| AirSim  | NED relative to PlayerStart: x N, y E, z down | m     |
| Unreal  | left-handed z up: X north, Y east, Z up       | cm    |

Unreal's mapping is glTFRuntime's default basis (Unreal X = -Z_gltf, Y = X_gltf, Z = Y_gltf, scale
100), so a chunk loaded by glTFRuntime lands exactly where `enu_to_unreal` says.
All functions take (..., 3) float64 arrays (or anything np.asarray accepts) and return float64.
"""

from __future__ import annotations

import numpy as np

# WGS84
WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
WGS84_B = WGS84_A * (1.0 - WGS84_F)
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
WGS84_EP2 = WGS84_E2 / (1.0 - WGS84_E2)


def _vec3(p) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.shape[-1:] != (3,):
        raise ValueError(f"expected points of shape (..., 3), got {a.shape}")
    return a


def enu_to_gltf(p) -> np.ndarray:
    p = _vec3(p)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def gltf_to_enu(p) -> np.ndarray:
    p = _vec3(p)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def enu_to_airsim(p, player_start_enu=(0.0, 0.0, 0.0)) -> np.ndarray:
    """World ENU -> AirSim NED relative to PlayerStart (given in world ENU)."""
    d = _vec3(p) - _vec3(player_start_enu)
    return np.stack([d[..., 1], d[..., 0], -d[..., 2]], axis=-1)


def airsim_to_enu(p, player_start_enu=(0.0, 0.0, 0.0)) -> np.ndarray:
    p = _vec3(p)
    return np.stack([p[..., 1], p[..., 0], -p[..., 2]], axis=-1) + _vec3(player_start_enu)


def enu_to_unreal(p, unreal_origin_enu=(0.0, 0.0, 0.0)) -> np.ndarray:
    """World ENU metres -> Unreal centimetres, with world point `unreal_origin_enu` at Unreal (0, 0, 0)."""
    d = _vec3(p) - _vec3(unreal_origin_enu)
    return np.stack([d[..., 1], d[..., 0], d[..., 2]], axis=-1) * 100.0


def unreal_to_enu(p, unreal_origin_enu=(0.0, 0.0, 0.0)) -> np.ndarray:
    p = _vec3(p) / 100.0
    return np.stack([p[..., 1], p[..., 0], p[..., 2]], axis=-1) + _vec3(unreal_origin_enu)


def gltf_to_unreal(p) -> np.ndarray:
    """glTFRuntime's default conversion: (x, y, z)_gltf metres -> (-z, x, y) * 100 cm."""
    p = _vec3(p)
    return np.stack([-p[..., 2], p[..., 0], p[..., 1]], axis=-1) * 100.0


def gltf_to_tiles(p) -> np.ndarray:
    """glTF y-up content -> 3D Tiles z-up tile frame, as clients apply it: (x, y, z) -> (x, -z, y)."""
    p = _vec3(p)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def geodetic_to_ecef(lat_deg, lon_deg, alt_m) -> np.ndarray:
    """WGS84 geodetic (degrees, metres above the ellipsoid) -> ECEF metres, shape (..., 3)."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    h = np.asarray(alt_m, dtype=np.float64)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)
    x = (n + h) * np.cos(lat) * np.cos(lon)
    y = (n + h) * np.cos(lat) * np.sin(lon)
    z = (n * (1.0 - WGS84_E2) + h) * np.sin(lat)
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def ecef_to_geodetic(p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF metres -> (lat deg, lon deg, alt m); Bowring's start plus two Newton-style refinements
    (sub-millimetre anywhere from the Earth's centre region out to orbit)."""
    p = _vec3(p)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    lon = np.arctan2(y, x)
    r = np.hypot(x, y)
    beta = np.arctan2(z * WGS84_A, r * WGS84_B)
    lat = np.arctan2(z + WGS84_EP2 * WGS84_B * np.sin(beta) ** 3, r - WGS84_E2 * WGS84_A * np.cos(beta) ** 3)
    for _ in range(2):
        beta = np.arctan2((1.0 - WGS84_F) * np.sin(lat), np.cos(lat))
        lat = np.arctan2(z + WGS84_EP2 * WGS84_B * np.sin(beta) ** 3, r - WGS84_E2 * WGS84_A * np.cos(beta) ** 3)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)
    cos_lat = np.cos(lat)
    # the two forms of the height are stable near the equator and near the poles respectively
    alt = np.where(np.abs(cos_lat) > 1e-3, r / np.where(cos_lat == 0, 1, cos_lat) - n,
                   np.abs(z) / np.maximum(np.abs(np.sin(lat)), 1e-300) - n * (1.0 - WGS84_E2))
    return np.degrees(lat), np.degrees(lon), alt


def enu_rotation(lat_deg: float, lon_deg: float) -> np.ndarray:
    """3x3 matrix whose columns are east, north, up at (lat, lon), in ECEF axes."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    sl, cl, so, co = np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)
    east = [-so, co, 0.0]
    north = [-sl * co, -sl * so, cl]
    up = [cl * co, cl * so, sl]
    return np.array([east, north, up], dtype=np.float64).T


def enu_to_ecef_matrix(lat_deg: float, lon_deg: float, alt_m: float) -> np.ndarray:
    """4x4 (row-major numpy) transform from local ENU at the anchor to ECEF.

    3D Tiles wants it column-major: `enu_to_ecef_matrix(...).T.ravel().tolist()`.
    """
    m = np.eye(4)
    m[:3, :3] = enu_rotation(lat_deg, lon_deg)
    m[:3, 3] = geodetic_to_ecef(lat_deg, lon_deg, alt_m)
    return m


def enu_to_geodetic(p, origin) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World ENU metres -> WGS84 (lat, lon, alt), `origin` being the world's GeoOrigin."""
    m = enu_to_ecef_matrix(origin.lat, origin.lon, origin.alt)
    p = _vec3(p)
    ecef = p @ m[:3, :3].T + m[:3, 3]
    return ecef_to_geodetic(ecef)


def geodetic_to_enu(lat_deg, lon_deg, alt_m, origin) -> np.ndarray:
    """WGS84 (lat, lon, alt) -> world ENU metres, `origin` being the world's GeoOrigin."""
    m = enu_to_ecef_matrix(origin.lat, origin.lon, origin.alt)
    d = geodetic_to_ecef(lat_deg, lon_deg, alt_m) - m[:3, 3]
    return d @ m[:3, :3]
