"""Buildings as closed boxes: flat roof, four walls, a floor under the ground; normals point out.

Each building gets 24 vertices (4 roof, 4 floor, 4 per wall) so that every face has its own flat
normal. Footprints are counter-clockwise, so the outward normal of wall a -> b is (dy, -dx).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.settlements import Building


@dataclass(frozen=True, eq=False)
class BuildingMesh:
    """positions: (V, 3) float64 ENU metres relative to the chunk origin; normals: (V, 3) float32;
    roof_triangles / floor_triangles / wall_triangles: (T, 3) int32, counter-clockwise from outside;
    feature: (V,) uint32 row of the vertex's building in `buildings`;
    wall_start: (W, 2) float64, wall_direction: (W, 2) float64 unit, one per wall face (4 per
    building, in wall_triangles order // 2), for texturing: a wall point p has facade coordinates
    s = (p - start) . direction and height above the building base."""

    positions: np.ndarray
    normals: np.ndarray
    roof_triangles: np.ndarray
    floor_triangles: np.ndarray
    wall_triangles: np.ndarray
    feature: np.ndarray
    wall_start: np.ndarray
    wall_direction: np.ndarray
    buildings: tuple[Building, ...]


def owned_buildings(buildings: tuple[Building, ...], bounds: tuple[float, float, float, float]) -> tuple[Building, ...]:
    """The buildings whose footprint centre lies in [west, east) x [south, north): each building
    belongs to exactly one chunk of a level, so neighbours never draw it twice."""
    west, south, east, north = bounds
    out = []
    for b in buildings:
        cx = sum(p[0] for p in b.footprint) / len(b.footprint)
        cy = sum(p[1] for p in b.footprint) / len(b.footprint)
        if west <= cx < east and south <= cy < north:
            out.append(b)
    return tuple(out)


def building_mesh(buildings: tuple[Building, ...], origin: tuple[float, float]) -> BuildingMesh:
    """Boxes for rectangular (4-corner) footprints; origin: chunk origin (east, north) in metres."""
    n = len(buildings)
    fp = np.array([b.footprint for b in buildings], dtype=np.float64).reshape(n, 4, 2)
    fp -= np.asarray(origin, dtype=np.float64)
    base = np.array([b.base for b in buildings], dtype=np.float64).reshape(n, 1)
    roof = np.array([b.roof for b in buildings], dtype=np.float64).reshape(n, 1)

    def lifted(xy, z):
        return np.concatenate([xy, np.broadcast_to(z[..., None], xy.shape[:-1] + (1,))], axis=-1)

    roof_v = lifted(fp, np.repeat(roof, 4, 1))  # (n, 4, 3)
    floor_v = lifted(fp, np.repeat(base, 4, 1))
    a = fp
    b = np.roll(fp, -1, axis=1)
    d = b - a
    length = np.linalg.norm(d, axis=-1, keepdims=True)
    direction = d / np.maximum(length, 1e-9)
    walls = np.stack([lifted(a, np.repeat(base, 4, 1)), lifted(b, np.repeat(base, 4, 1)),
                      lifted(b, np.repeat(roof, 4, 1)), lifted(a, np.repeat(roof, 4, 1))], axis=2)  # (n,4,4,3)
    positions = np.concatenate([roof_v, floor_v, walls.reshape(n, 16, 3)], axis=1)  # (n, 24, 3)

    out_normal = np.concatenate([direction[..., 1:2], -direction[..., 0:1], np.zeros((n, 4, 1))], axis=-1)
    normals = np.concatenate([np.broadcast_to([0.0, 0.0, 1.0], (n, 4, 3)), np.broadcast_to([0.0, 0.0, -1.0], (n, 4, 3)),
                              np.repeat(out_normal, 4, axis=1)], axis=1)

    first = (np.arange(n, dtype=np.int64) * 24)[:, None, None]
    roof_t = first + np.array([[0, 1, 2], [0, 2, 3]])
    floor_t = first + np.array([[4, 6, 5], [4, 7, 6]])
    w = 8 + 4 * np.arange(4)[:, None, None] + np.array([[0, 1, 2], [0, 2, 3]])  # (4, 2, 3)
    wall_t = first[:, None] + w[None]
    return BuildingMesh(
        positions=positions.reshape(-1, 3), normals=normals.reshape(-1, 3).astype(np.float32),
        roof_triangles=roof_t.reshape(-1, 3).astype(np.int32), floor_triangles=floor_t.reshape(-1, 3).astype(np.int32),
        wall_triangles=wall_t.reshape(-1, 3).astype(np.int32),
        feature=np.repeat(np.arange(n, dtype=np.uint32), 24),
        wall_start=a.reshape(-1, 2), wall_direction=direction.reshape(-1, 2), buildings=tuple(buildings))
