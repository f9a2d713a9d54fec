"""Buildings as closed solids: walls, a floor under the ground, and flat, gabled or hipped roofs.

Every face has its own vertices, so each keeps its flat normal; all faces are counter-clockwise
from outside. A footprint is a rectangle (Building.footprint, counter-clockwise); its corners are
taken in a canonical order c0..c3 that starts on a long side (c0 -> c1 runs along the ridge), so
walls 0 and 2 are the eaves sides and walls 1 and 3 the ends. The roof faces are exactly the
planes of `settlements.roof_surface`, so depth renders and the DSM agree:

- flat: one quad at the eaves;
- gabled: two slopes from the long sides' eaves to the ridge over the centre line; the end walls
  are pentagons reaching up to the ridge (gables), textured with the other walls;
- hipped: two trapezoids on the long sides and two triangles on the ends, all of one pitch.

Per building: 38 vertex slots (roof 14: south quad, north quad, west and east triangles; floor
4; walls 4 x 5: base a, base b, eave b, apex, eave a). Slots a kind does not use are left out of
the triangle lists (and dropped when the chunk mesh compacts its primitives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.settlements import Building

ROOF_SLOTS, FLOOR_FIRST, WALL_FIRST, SLOTS = 14, 14, 18, 38
_KIND = {"flat": 0, "gabled": 1, "hipped": 2}


@dataclass(frozen=True, eq=False)
class BuildingMesh:
    """positions: (V, 3) float64 ENU metres relative to the chunk origin; normals: (V, 3) float32;
    roof_triangles / floor_triangles / wall_triangles: (T, 3) int32, counter-clockwise from outside;
    feature: (V,) uint32 row of the vertex's building in `buildings`;
    wall_start: (W, 2) float64, wall_direction: (W, 2) float64 unit, one per wall (4 per building,
    canonical order: wall k runs from corner c_k to c_k+1); wall_face: (Tw,) int64 wall of each
    wall triangle (gable triangles belong to their end wall). For texturing, every building's
    walls unroll into one strip: wall_s (V,) metres along the strip (the facade runs on around the
    corners; s = strip offset of the wall + (p - start) . direction) and wall_z (V,) metres above
    the base, both NaN off the walls; strip_length (N,) perimeter, strip_height (N,) ridge minus
    base, eave_height (N,) eaves minus base, flat (N,) bool: a flat roof (the walls end in a parapet)."""

    positions: np.ndarray
    normals: np.ndarray
    roof_triangles: np.ndarray
    floor_triangles: np.ndarray
    wall_triangles: np.ndarray
    feature: np.ndarray
    wall_start: np.ndarray
    wall_direction: np.ndarray
    wall_face: np.ndarray
    wall_s: np.ndarray
    wall_z: np.ndarray
    strip_length: np.ndarray
    strip_height: np.ndarray
    eave_height: np.ndarray
    flat: np.ndarray
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


def canonical_corners(fp: np.ndarray) -> np.ndarray:
    """(N, 4, 2) rectangular footprints, counter-clockwise -> the same corners counter-clockwise
    starting on a long side: c0 -> c1 when |c1 - c0| >= |c2 - c1| (as `roof_surface` decides)."""
    w = np.linalg.norm(fp[:, 1] - fp[:, 0], axis=1)
    h = np.linalg.norm(fp[:, 2] - fp[:, 1], axis=1)
    along_x = w >= h
    return np.where(along_x[:, None, None], fp, np.roll(fp, -1, axis=1))


def building_mesh(buildings: tuple[Building, ...], origin: tuple[float, float]) -> BuildingMesh:
    """Meshes for rectangular (4-corner, any orientation) footprints; origin: chunk origin (east,
    north) in metres."""
    n = len(buildings)
    fp = np.array([b.footprint for b in buildings], dtype=np.float64).reshape(n, 4, 2)
    c = canonical_corners(fp) - np.asarray(origin, dtype=np.float64)
    base = np.array([b.base for b in buildings], dtype=np.float64)
    eave = np.array([b.roof for b in buildings], dtype=np.float64)
    ridge = np.array([b.ridge for b in buildings], dtype=np.float64)
    kind = np.array([_KIND[b.roof_kind] for b in buildings], dtype=np.int64)
    flat, gabled, hipped = kind == 0, kind == 1, kind == 2
    ridge = np.where(flat, eave, ridge)

    c0, c1, c2, c3 = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    length = np.linalg.norm(c1 - c0, axis=1)
    short = np.linalg.norm(c2 - c1, axis=1)
    u = (c1 - c0) / np.maximum(length, 1e-9)[:, None]
    inset = np.where(hipped, np.minimum(0.5 * short, 0.5 * length), 0.0)[:, None]
    r0 = np.where(gabled[:, None], 0.5 * (c3 + c0), 0.5 * (c3 + c0) + inset * u)
    r1 = np.where(gabled[:, None], 0.5 * (c1 + c2), 0.5 * (c1 + c2) - inset * u)

    def at(xy, z):
        return np.concatenate([xy, z[:, None]], axis=1)

    e_ = lambda p: at(p, eave)  # noqa: E731
    r_ = lambda p: at(p, ridge)  # noqa: E731
    south = np.stack([e_(c0), e_(c1), r_(r1), r_(r0)], axis=1)
    south_flat = np.stack([e_(c0), e_(c1), e_(c2), e_(c3)], axis=1)
    south = np.where(flat[:, None, None], south_flat, south)
    north = np.stack([e_(c2), e_(c3), r_(r0), r_(r1)], axis=1)
    west = np.stack([e_(c3), e_(c0), r_(r0)], axis=1)
    east = np.stack([e_(c1), e_(c2), r_(r1)], axis=1)
    floor = np.stack([at(c0, base), at(c1, base), at(c2, base), at(c3, base)], axis=1)

    a = c
    b = np.roll(c, -1, axis=1)
    d = b - a
    wall_len = np.linalg.norm(d, axis=-1)
    direction = d / np.maximum(wall_len, 1e-9)[..., None]
    mid = 0.5 * (a + b)
    apex_xy = mid.copy()
    apex_z = np.repeat(eave[:, None], 4, axis=1)
    for k, r in ((1, r1), (3, r0)):
        apex_xy[:, k] = np.where(gabled[:, None], r, mid[:, k])
        apex_z[:, k] = np.where(gabled, ridge, eave)
    zb = np.repeat(base[:, None], 4, axis=1)
    ze = np.repeat(eave[:, None], 4, axis=1)
    walls = np.stack([np.concatenate([a, zb[..., None]], -1), np.concatenate([b, zb[..., None]], -1),
                      np.concatenate([b, ze[..., None]], -1), np.concatenate([apex_xy, apex_z[..., None]], -1),
                      np.concatenate([a, ze[..., None]], -1)], axis=2)  # (n, 4, 5, 3)
    positions = np.concatenate([south, north, west, east, floor, walls.reshape(n, 20, 3)], axis=1)  # (n, 38, 3)

    def face_normal(p0, p1, p2):
        v = np.cross(p1 - p0, p2 - p0)
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

    n_south = face_normal(south[:, 0], south[:, 1], south[:, 2])
    n_north = face_normal(north[:, 0], north[:, 1], north[:, 2])
    n_west = face_normal(west[:, 0], west[:, 1], west[:, 2])
    n_east = face_normal(east[:, 0], east[:, 1], east[:, 2])
    out_normal = np.concatenate([direction[..., 1:2], -direction[..., 0:1], np.zeros((n, 4, 1))], axis=-1)
    normals = np.concatenate([np.repeat(n_south[:, None], 4, 1), np.repeat(n_north[:, None], 4, 1),
                              np.repeat(n_west[:, None], 3, 1), np.repeat(n_east[:, None], 3, 1),
                              np.broadcast_to([0.0, 0.0, -1.0], (n, 4, 3)), np.repeat(out_normal, 5, axis=1)], axis=1)

    first = (np.arange(n, dtype=np.int64) * SLOTS)[:, None, None]
    square = np.linalg.norm(r1 - r0, axis=1) < 1e-9
    roof_slots = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [8, 9, 10], [11, 12, 13]])
    roof_use = np.stack([np.ones(n, bool), ~(hipped & square), ~flat, ~flat & ~(hipped & square), hipped, hipped], axis=1)
    roof_t = (first + roof_slots[None])[roof_use]
    floor_t = (first + FLOOR_FIRST + np.array([[0, 2, 1], [0, 3, 2]])[None]).reshape(-1, 3)
    wall_slots = WALL_FIRST + 5 * np.arange(4)[:, None, None] + np.array([[0, 1, 2], [0, 2, 4], [2, 3, 4]])  # (4,3,3)
    wall_use = np.zeros((n, 4, 3), dtype=bool)
    wall_use[:, :, :2] = True
    wall_use[:, 1, 2] = gabled
    wall_use[:, 3, 2] = gabled
    wall_t = (first[:, None] + wall_slots[None])[wall_use]
    wall_face = np.broadcast_to((np.arange(n)[:, None, None] * 4 + np.arange(4)[None, :, None]), (n, 4, 3))[wall_use]

    s0 = np.concatenate([np.zeros((n, 1)), np.cumsum(wall_len, axis=1)[:, :3]], axis=1)
    s_wall = np.stack([s0, s0 + wall_len, s0 + wall_len, s0 + 0.5 * wall_len, s0], axis=2)  # (n, 4, 5)
    z_wall = walls[..., 2] - base[:, None, None]
    wall_s = np.full((n, SLOTS), np.nan)
    wall_z = np.full((n, SLOTS), np.nan)
    wall_s[:, WALL_FIRST:] = s_wall.reshape(n, 20)
    wall_z[:, WALL_FIRST:] = z_wall.reshape(n, 20)
    return BuildingMesh(
        positions=positions.reshape(-1, 3), normals=normals.reshape(-1, 3).astype(np.float32),
        roof_triangles=roof_t.reshape(-1, 3).astype(np.int32), floor_triangles=floor_t.astype(np.int32),
        wall_triangles=wall_t.reshape(-1, 3).astype(np.int32), feature=np.repeat(np.arange(n, dtype=np.uint32), SLOTS),
        wall_start=a.reshape(-1, 2), wall_direction=direction.reshape(-1, 2), wall_face=wall_face.reshape(-1),
        wall_s=wall_s.reshape(-1), wall_z=wall_z.reshape(-1), strip_length=wall_len.sum(axis=1),
        strip_height=ridge - base, eave_height=eave - base, flat=flat, buildings=tuple(buildings))
