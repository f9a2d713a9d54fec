"""Vertical faces: the horizontal / vertical split, UV atlases and a baked lateral texture.

As in the method, faces with |n . z_up| < tau are vertical: they cannot take the ortho image by
planar projection, so they get their own atlas. The texture baked into it here is procedural
(floors, windows, doors, a plinth and a parapet on walls; rock strata tinted by the ortho on
cliffs); the learned lateral-texture stage fills the same atlas later.

Two kinds of vertical faces, two packers, one atlas image:
- building walls (rectangles, and pentagons under gables): each building's four walls are
  unrolled into one strip (perimeter x ridge height) so the facade runs on around corners, and
  strips are shelf-packed; the facade coordinates (s along the wall, z above the base) are then
  linear in atlas pixels (`building_walls`);
- any other vertical face (terrain cliffs) gets a chart of its own, laid flat in its plane and
  shelf-packed the same way, and is baked triangle by triangle through an affine map from atlas
  pixels to world positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..core.hashing import salt
from ..core.settlements import FLOOR_HEIGHT

PADDING = 2  # atlas texels between charts


def vertical_faces(face_normals: np.ndarray, tau: float) -> np.ndarray:
    """(T, 3) unit normals in ENU -> (T,) bool, True where |n . z_up| < tau (a vertical face)."""
    return np.abs(face_normals[:, 2]) < tau


def face_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) positions and (T, 3) triangles -> (T, 3) float64 unit normals (right-hand winding)."""
    p = positions[triangles].astype(np.float64)
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True, eq=False)
class Atlas:
    """vertex_map: (V',) int source vertex of each atlas vertex; triangles: (T, 3) int32 into the
    atlas vertices (same faces, same order); uv: (V', 2) float32 in [0, 1], v down (glTF);
    width, height: atlas size in texels; texels_per_metre: the scale used."""

    vertex_map: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    width: int
    height: int
    texels_per_metre: float


def facade_atlas(positions: np.ndarray, triangles: np.ndarray, texels_per_metre: float, max_size: int = 1024) -> Atlas:
    """One chart per triangle, laid flat in its own plane (u along the horizontal, v up the face)
    and shelf-packed; the scale drops until the atlas fits a max_size square.
    positions: (V, 3) float metres; triangles: (T, 3) int.

    Per-triangle charts lose nothing here because the baked texture is a function of the world
    position and of a per-face tint, so there is no seam to hide; they are never folded or
    overlapping, and packing is deterministic and single-threaded (xatlas, used before, could
    deadlock in its thread pool's destructor)."""
    flat = flatten_triangles(positions.astype(np.float64)[triangles])
    lo = flat.min(axis=1)
    size = flat.max(axis=1) - lo
    packed = shelf_pack(size[:, 0], size[:, 1], texels_per_metre, max_size)
    tpm = packed.texels_per_metre
    corner = np.stack([packed.x0, packed.y0], axis=1).astype(np.float64) + PADDING
    pixels = (flat - lo[:, None, :]) * tpm + corner[:, None, :]
    pixels[..., 1] = corner[:, None, 1] + size[:, None, 1] * tpm - (flat[..., 1] - lo[:, None, 1]) * tpm  # v down
    uv = pixels.reshape(-1, 2) / [packed.width, packed.height]
    return Atlas(vertex_map=np.asarray(triangles, dtype=np.int64).reshape(-1),
                 triangles=np.arange(3 * len(triangles), dtype=np.int32).reshape(-1, 3),
                 uv=uv.astype(np.float32), width=packed.width, height=packed.height, texels_per_metre=tpm)


def flatten_triangles(corners: np.ndarray) -> np.ndarray:
    """(T, 3, 3) triangle corners in ENU metres -> (T, 3, 2) the same corners in each triangle's
    own plane: u along the horizontal direction of the face, v up it (lengths kept)."""
    n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    along = np.stack([-n[:, 1], n[:, 0], np.zeros(len(n))], axis=1)
    flat_face = np.linalg.norm(along, axis=1) < 1e-9 * np.maximum(np.linalg.norm(n, axis=1), 1e-12)
    along[flat_face] = [1.0, 0.0, 0.0]  # a horizontal or degenerate face: any in-plane direction
    along /= np.linalg.norm(along, axis=1, keepdims=True)
    up = np.cross(n, along)
    up_norm = np.linalg.norm(up, axis=1, keepdims=True)
    up = np.where(up_norm > 1e-12, up / np.maximum(up_norm, 1e-12), [0.0, 1.0, 0.0])
    rel = corners - corners[:, :1]
    return np.stack([np.einsum("tkc,tc->tk", rel, along), np.einsum("tkc,tc->tk", rel, up)], axis=2)


@dataclass(frozen=True, eq=False)
class ShelfPacking:
    """Placement of shelf-packed rectangles (building strips, cliff triangles): x0, y0: (N,) int
    texel corner of each rectangle (padding included); width, height: atlas size; texels_per_metre: the scale."""

    x0: np.ndarray
    y0: np.ndarray
    width: int
    height: int
    texels_per_metre: float


def shelf_pack(lengths: np.ndarray, heights: np.ndarray, texels_per_metre: float, max_size: int = 1024) -> ShelfPacking:
    """Shelf-pack (N,) rectangles of lengths x heights metres (tallest first, ties by index),
    shrinking the scale until the atlas fits a max_size square."""
    tpm = float(texels_per_metre)
    order = np.lexsort((np.arange(len(heights)), -np.asarray(heights)))
    for attempt in range(24):  # rectangles have a minimum size, so give up shrinking at some point
        w = np.ceil(np.asarray(lengths) * tpm).astype(np.int64) + 2 * PADDING
        h = np.ceil(np.asarray(heights) * tpm).astype(np.int64) + 2 * PADDING
        side = int(max(w.max(), np.ceil(np.sqrt((w * h).sum() * 1.1))))
        x0 = np.zeros(len(w), dtype=np.int64)
        y0 = np.zeros(len(w), dtype=np.int64)
        x = y = shelf = 0
        for i in order:
            if x + w[i] > side:
                x, y, shelf = 0, y + shelf, 0
            x0[i], y0[i] = x, y
            x += w[i]
            shelf = max(shelf, h[i])
        width, height = side, y + shelf
        if max(width, height) <= max_size or attempt == 23:
            return ShelfPacking(x0=x0, y0=y0, width=int(width), height=int(height), texels_per_metre=tpm)
        tpm *= 0.95 * max_size / max(width, height)
    raise AssertionError("unreachable")


def bake_strips(atlas: ShelfPacking, lengths: np.ndarray, heights: np.ndarray, building_ids: np.ndarray,
                seed: int, eaves: np.ndarray | None = None, parapet: np.ndarray | None = None,
                ground_floor: np.ndarray | None = None) -> np.ndarray:
    """(height, width, 3) uint8 facade texture of every strip; texel (px, py) of strip i shows
    s = (px + 0.5 - x0 - PADDING) / tpm metres along the facade and z = height - (py + 0.5 - y0 -
    PADDING) / tpm above the base (the roof's top at the top). Padding texels repeat the edge.
    eaves: (N,) wall top above the base (default: height); parapet: (N,) bool, flat roofs with a
    parapet band under the top (default: all); above the eaves (gables) the wall is plain;
    ground_floor: (N,) z where the storeys start (default 0.5 m, see `facade_pattern`)."""
    tpm = atlas.texels_per_metre
    owner = np.full((atlas.height, atlas.width), -1, dtype=np.int64)
    w = np.ceil(np.asarray(lengths) * tpm).astype(np.int64) + 2 * PADDING
    h = np.ceil(np.asarray(heights) * tpm).astype(np.int64) + 2 * PADDING
    for i in range(len(w)):
        owner[atlas.y0[i]:atlas.y0[i] + h[i], atlas.x0[i]:atlas.x0[i] + w[i]] = i
    py, px = np.nonzero(owner >= 0)
    g = owner[py, px]
    s = np.clip((px + 0.5 - atlas.x0[g] - PADDING) / tpm, 0.0, lengths[g])
    z = np.clip(heights[g] - (py + 0.5 - atlas.y0[g] - PADDING) / tpm, 0.0, heights[g])
    eaves = np.asarray(heights if eaves is None else eaves, dtype=np.float64)
    parapet = np.ones(len(w), dtype=bool) if parapet is None else np.asarray(parapet, dtype=bool)
    out = np.full((atlas.height, atlas.width, 3), 128, dtype=np.uint8)
    first = None if ground_floor is None else np.asarray(ground_floor, dtype=np.float32)[g]
    out[py, px] = facade_pattern(building_ids[g].astype(np.uint64), s.astype(np.float32), z.astype(np.float32),
                                 eaves[g].astype(np.float32), seed, parapet[g], first)
    return out


def building_walls(bm, texels_per_metre: float, max_size: int, seed: int):
    """The walls of a BuildingMesh (rectangles and gable pentagons) in a strip atlas:
    (positions (V, 3), normals (V, 3), uv (V, 2) in atlas pixels, triangles (T, 3) into these
    vertices, feature (V,) building rows, image (H, W, 3) uint8). Strip i is building i's
    perimeter x (ridge - base); a wall vertex sits at its (wall_s, wall_z) in the strip."""
    used = np.unique(bm.wall_triangles.reshape(-1))
    remap = np.full(len(bm.positions), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    tris = remap[bm.wall_triangles.astype(np.int64)]
    atlas = shelf_pack(bm.strip_length, bm.strip_height, texels_per_metre, max_size)
    tpm = atlas.texels_per_metre
    row = bm.feature[used].astype(np.int64)
    u = atlas.x0[row] + PADDING + bm.wall_s[used] * tpm
    v = atlas.y0[row] + PADDING + (bm.strip_height[row] - bm.wall_z[used]) * tpm
    ids = np.array([b.id for b in bm.buildings], dtype=np.uint64)
    floors = np.array([b.floors for b in bm.buildings], dtype=np.float64)
    # storeys hang from the eaves: extra wall a slope or terrace edge adds shows as a socle
    ground_floor = np.maximum(0.5, bm.eave_height - floors * FLOOR_HEIGHT - np.where(bm.flat, PARAPET, 0.3))
    image = bake_strips(atlas, bm.strip_length, bm.strip_height, ids, seed, bm.eave_height, bm.flat, ground_floor)
    return (bm.positions[used], bm.normals[used], np.stack([u, v], axis=1), tris, bm.feature[used], image)


@dataclass(frozen=True, eq=False)
class FaceGroups:
    """Planar faces to bake through their charts. corners: (G, 3, 2) atlas pixel coordinates;
    world: (G, 3, 3) positions of those corners (ENU metres); tint: (G, 3) float 0..1 colour."""

    corners: np.ndarray
    world: np.ndarray
    tint: np.ndarray


def bake(groups: FaceGroups, width: int, height: int) -> np.ndarray:
    """Bake cliff faces: (height, width, 3) uint8 sRGB; texels no face owns stay grey."""
    owner = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(owner)
    polys = [[(float(x), float(y)) for x, y in g] for g in groups.corners]
    for i, poly in enumerate(polys):  # gutters first (outline), so that fills win inside charts
        draw.polygon(poly, fill=i + 1, outline=i + 1, width=2)
    for i, poly in enumerate(polys):
        draw.polygon(poly, fill=i + 1)
    own = np.asarray(owner, dtype=np.int32).reshape(-1) - 1
    texel = np.flatnonzero(own >= 0)
    g = own[texel]
    u = (texel % width).astype(np.float32) + 0.5
    v = (texel // width).astype(np.float32) + 0.5
    a = _affines(groups.corners, groups.world).astype(np.float32)[g]
    pos = u[:, None] * a[:, 0] + v[:, None] * a[:, 1] + a[:, 2]
    out = np.full((width * height, 3), 128, dtype=np.uint8)
    strata = 0.8 + 0.12 * np.sin(pos[:, 2] * 1.7) + 0.06 * np.sin(pos[:, 2] * 5.3 + pos[:, 0] * 0.2)
    out[texel] = np.clip(groups.tint[g] * 255.0 * strata[:, None], 0, 255).astype(np.uint8)
    return out.reshape(height, width, 3)


def _affines(uv: np.ndarray, world: np.ndarray) -> np.ndarray:
    """(G, 3, 2) pixel corners and (G, 3, 3) positions -> (G, 3, 3) M with [u, v, 1] @ M = xyz."""
    a = np.concatenate([uv, np.ones(uv.shape[:2] + (1,))], axis=2)
    det = np.linalg.det(a)
    ok = np.abs(det) > 1e-9
    m = np.zeros(world.shape)
    m[ok] = np.linalg.solve(a[ok], world[ok])
    m[~ok, 2] = world[~ok, 0]  # degenerate chart: one colour
    return m


PLASTER = np.array([[0.86, 0.82, 0.74], [0.78, 0.72, 0.64], [0.70, 0.66, 0.62], [0.88, 0.86, 0.80],
                    [0.74, 0.60, 0.50], [0.62, 0.60, 0.58], [0.82, 0.76, 0.60], [0.66, 0.56, 0.48]])
GLASS = np.array([0.16, 0.20, 0.26])
WINDOW_PITCH = 3.0
WINDOW_WIDTH = 1.3
SILL = 0.9
LINTEL = 2.3
PARAPET = 0.6
PLINTH = 1.1  # the base is sunk 0.5 m below the ground


def facade_pattern(bid: np.ndarray, s: np.ndarray, z: np.ndarray, top: np.ndarray, seed: int,
                   parapet: np.ndarray | None = None, ground_floor: np.ndarray | None = None) -> np.ndarray:
    """(N,) uint64 building ids, float32 s (m along the facade), z (m above the base) and top
    (the eaves: wall height) -> (N, 3) uint8: plaster by building, floor lines, windows (some
    lit), a dark plinth and, where `parapet` (default everywhere: flat roofs), a parapet band
    under the top; above the top (gables) plain plaster. Storeys start at `ground_floor` (z of
    the ground floor, default 0.5 m); a wall below it (a building on a slope or a terrace edge
    shows more wall on its low side) is a stone socle without windows."""
    plaster = (PLASTER[_cheap_hash(bid, np.uint64(salt(seed, 0xFACADE))) % len(PLASTER)] * 255).astype(np.float32)
    first = np.float32(0.5) if ground_floor is None else ground_floor
    floor_z = z - first
    storey = np.floor(floor_z * (1.0 / FLOOR_HEIGHT))
    in_floor = floor_z - storey * FLOOR_HEIGHT
    bay = np.floor(s * (1.0 / WINDOW_PITCH))
    col = s - (bay + 0.5) * WINDOW_PITCH
    band = np.full(z.shape, PARAPET, dtype=np.float32) if parapet is None else np.where(parapet, PARAPET, 0.0)
    window = ((np.abs(col) < 0.5 * WINDOW_WIDTH) & (in_floor > SILL) & (in_floor < LINTEL)
              & (floor_z > 0) & (z < top - band))
    shade = np.where((z < PLINTH) | (floor_z < 0), 0.55, np.where(z > top, 0.97, np.where(z > top - band, 0.8,
                                                                         np.where(in_floor < 0.15, 0.92, 1.0))))
    out = plaster * shade.astype(np.float32)[:, None]
    if window.any():
        w = np.flatnonzero(window)
        cell = (bay[w].astype(np.int64) * 4096 + storey[w].astype(np.int64)).astype(np.uint64)
        lit = (_cheap_hash(bid[w] ^ cell, np.uint64(salt(seed, 0x117))) % 100) >= 93
        out[w] = GLASS_RGB + lit[:, None] * LIT_RGB
    return np.clip(out, 0, 255).astype(np.uint8)


GLASS_RGB = (GLASS * 255).astype(np.float32)
LIT_RGB = np.array([115.0, 102.0, 56.0], dtype=np.float32)


def _cheap_hash(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """uint64 -> uint64 in [0, 2^32): a multiply-xorshift mix (texture variety, not world data)."""
    with np.errstate(over="ignore"):
        h = (x ^ key) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return h & np.uint64(0xFFFFFFFF)
