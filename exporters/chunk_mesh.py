"""A chunk's geometry: terrain (with skirts), water, building roofs and facades, ready to encode.

Levels fine enough for buildings (resolution <= `buildings_max_resolution`) mesh the DEM and add
every building the chunk owns as a closed box; coarser levels mesh the DSM, so towns stay as relief
and the measured error still bounds everything the tile leaves out. Faces are then split by
|n . z_up| < tau: horizontal ones take the ortho by planar projection, vertical ones (walls,
cliffs) go to the facade atlas.

Positions are float32 metres relative to the chunk origin (its south-west corner at height 0) in
ENU; the origin itself is float64 (`ChunkMesh.origin`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.chunk import Chunk
from ..core.heightfield import sample_normals
from ..core.spec import WorldSpec
from .building_mesh import building_mesh, owned_buildings
from .facade import FaceGroups, bake, building_walls, face_normals, facade_atlas, vertical_faces
from .mesh_options import MeshOptions
from .terrain_mesh import terrain_mesh
from .tree_mesh import TreeInstances, tree_instances


NULL_FEATURE = 0xFFFF  # feature row of facade faces that belong to no building (cliffs)


@dataclass(frozen=True, eq=False)
class Primitive:
    """kind: terrain | water | roof | facade; positions, normals: (V, 3) float32 ENU (normals
    unit); uv: (V, 2) float32 (v down); triangles: (T, 3) uint32 counter-clockwise from outside;
    feature: (V,) uint32 building row (NULL_FEATURE for none) or None; texture: "ortho" or "facade"."""

    kind: str
    positions: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    feature: np.ndarray | None
    texture: str


@dataclass(frozen=True, eq=False)
class ChunkMesh:
    """Primitives plus what a tileset and a reader need: origin (east, north) float64 metres;
    geometric_error: measured max vertical error (m) against `source` ("dem" or "dsm");
    skirt_depth (m); box_min / box_max: (3,) float64 ENU bounds relative to the origin;
    facade: (H, W, 3) uint8 atlas or None; buildings: the buildings drawn (feature rows)."""

    primitives: tuple[Primitive, ...]
    origin: tuple[float, float]
    geometric_error: float
    max_error: float
    source: str
    skirt_depth: float
    box_min: np.ndarray
    box_max: np.ndarray
    facade: np.ndarray | None
    buildings: tuple
    grid_triangles: int
    trees: tuple = ()  # the trees drawn (core.vegetation.Tree), rows of `tree_instances`
    tree_instances: tuple[TreeInstances, ...] = ()
    instanced_trees: bool = True

    @property
    def triangle_count(self) -> int:
        """Triangles drawn, every tree instance counted."""
        trees = sum(len(t.row) * sum(len(p.triangles) for p in t.parts) for t in self.tree_instances)
        return int(sum(len(p.triangles) for p in self.primitives) + trees)


def canopy_relief(canopy: np.ndarray) -> np.ndarray:
    """Tree crowns as relief for levels without tree models: the crown heights averaged over 3 x 3
    samples, so a forest is a rough canopy and a lone tree a low bump, not a spike one sample wide.
    Border samples average along the border only, from samples the neighbour shares, so both
    chunks get the same bits there. (H+1, W+1) float32 -> same."""
    c = np.asarray(canopy, np.float32)
    out = c.copy()
    out[1:-1, 1:-1] = (c[:-2, :-2] + c[:-2, 1:-1] + c[:-2, 2:] + c[1:-1, :-2] + c[1:-1, 1:-1] + c[1:-1, 2:]
                       + c[2:, :-2] + c[2:, 1:-1] + c[2:, 2:]) * np.float32(1.0 / 9.0)
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        e = c[edge]
        out[edge][1:-1] = (e[:-2] + e[1:-1] + e[2:]) * np.float32(1.0 / 3.0)
    return out


def surface_grid(chunk: Chunk, source: str) -> np.ndarray:
    """The (H+1, W+1) float32 heights a terrain mesh follows: "dem"; "dem+canopy" (crowns as
    `canopy_relief`); "dsm" (that, and buildings as they raise the DSM)."""
    if source == "dem" or chunk.canopy is None:
        return chunk.dem if source != "dsm" else chunk.dsm
    canopy = chunk.dem + canopy_relief(chunk.canopy)
    if source == "dem+canopy":
        return canopy
    # where a roof, not a crown, makes the DSM; bridge decks (over water) are models or left out
    buildings = (chunk.dsm > chunk.dem + chunk.canopy) & ~chunk.water
    return np.where(buildings, np.maximum(chunk.dsm, canopy), canopy).astype(np.float32)


def border_detail(grid: np.ndarray) -> float:
    """Max departure of odd border samples from the midpoint of their even neighbours: how far
    this level's edges stray from the next coarser level's (whose samples are the even ones)."""
    worst = 0.0
    for edge in (grid[0, :], grid[-1, :], grid[:, 0], grid[:, -1]):
        e = edge.astype(np.float64)
        worst = max(worst, float(np.abs(e[1::2] - 0.5 * (e[0:-1:2] + e[2::2])).max()))
    return worst


def skirt_depth(chunk: Chunk, grid: np.ndarray, options: MeshOptions) -> float:
    """Depth (m) that hides the crack against a neighbour one level coarser or finer: both edges
    are within their level's max error of the samples, and the finer edge departs from the coarser
    samples by at most `border_detail` (counted twice: the finer neighbour's detail is unknown
    here and does not exceed this level's in practice). Where the neighbour meshes another
    surface (DEM, DEM + crowns, DSM), the tree and building heights on the border are added."""
    res = chunk.resolution
    depth = options.max_error(2 * res) + options.max_error(res) + 2.0 * border_detail(grid) + 0.05 * res
    if options.surface(res) != options.surface(2 * res) or options.surface(res) != options.surface(0.5 * res):
        rim = np.concatenate([(chunk.dsm - chunk.dem)[i] for i in (0, -1)]
                             + [(chunk.dsm - chunk.dem)[:, j] for j in (0, -1)])
        depth += float(rim.max())
    return depth


def chunk_mesh(chunk: Chunk, spec: WorldSpec, options: MeshOptions = MeshOptions()) -> ChunkMesh:
    n = chunk.size
    res = chunk.resolution
    extent = n * res
    west, south, _, _ = chunk.bounds
    with_buildings = options.has_buildings(res)
    source = options.surface(res)
    grid = surface_grid(chunk, source)
    tm = terrain_mesh(grid, options.max_error(res))

    # terrain vertices in ENU relative to the south-west corner
    x = tm.cols.astype(np.float64) * res
    y = (n - tm.rows).astype(np.float64) * res
    pos = np.stack([x, y, tm.heights.astype(np.float64)], axis=1)
    nrm = sample_normals(grid, res)[tm.rows, tm.cols]
    uv = np.stack([x / extent, 1.0 - y / extent], axis=1)
    tris = tm.triangles.astype(np.int64)

    vertical = vertical_faces(face_normals(pos, tris), options.tau)
    cliff_tris = tris[vertical]
    tris = tris[~vertical]
    wet = chunk.water[tm.rows, tm.cols]
    water_face = wet[tris].all(axis=1)

    primitives = []
    depth = skirt_depth(chunk, grid, options) if options.skirts else 0.0
    land = tris[~water_face]
    if options.skirts:
        pos, nrm, uv, skirt = _skirt(pos, nrm, uv, tm.border, depth)
        land = np.concatenate([land, skirt])
    if with_buildings:  # bridge decks are terrain: the ortho paints their road, the class raster says road
        dpos, dnrm, dtris = bridge_decks(chunk)
        if len(dtris):
            land = np.concatenate([land, dtris + len(pos)])
            uv = np.concatenate([uv, np.stack([dpos[:, 0] / extent, 1.0 - dpos[:, 1] / extent], axis=1)])
            pos, nrm = np.concatenate([pos, dpos]), np.concatenate([nrm, dnrm])
    primitives.append(_compact("terrain", pos, nrm, uv, land, None, "ortho"))
    if water_face.any():
        primitives.append(_compact("water", pos, nrm, uv, tris[water_face], None, "ortho"))

    buildings = owned_buildings(chunk.buildings, chunk.bounds) if with_buildings else ()
    texels = max(min(options.facade_texels_per_metre, 4.0 / res), 0.25)
    parts = []  # (positions, normals, uv in atlas pixels, triangles, feature, image) per vertical kind
    room = options.facade_max_size
    if len(cliff_tris):  # rock needs little detail: at most a quarter of the atlas height
        parts.append(_cliffs(pos, nrm, cliff_tris, chunk, res, texels, max(16, room // 4)))
        room -= parts[-1][5].shape[0]
    if buildings:
        bm = building_mesh(buildings, (west, south))
        buv = np.stack([bm.positions[:, 0] / extent, 1.0 - bm.positions[:, 1] / extent], axis=1)
        flat = np.concatenate([bm.roof_triangles, bm.floor_triangles])
        primitives.append(_compact("roof", bm.positions, bm.normals, buv, flat, bm.feature, "ortho"))
        parts.append(_walls(bm, texels, room, spec.seed))

    facade_image = None
    if parts:
        # stack the part images vertically into one atlas
        width = max(p[5].shape[1] for p in parts)
        height = sum(p[5].shape[0] for p in parts)
        facade_image = np.full((height, width, 3), 128, dtype=np.uint8)
        y = 0
        uvs = []
        for p in parts:
            h, w = p[5].shape[:2]
            facade_image[y:y + h, :w] = p[5]
            uvs.append((p[2] + [0.0, y]) / [width, height])
            y += h
        offsets = np.cumsum([0] + [len(p[0]) for p in parts])[:-1]
        primitives.append(_compact(
            "facade", np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate(uvs), np.concatenate([p[3] + o for p, o in zip(parts, offsets)]),
            np.concatenate([p[4] for p in parts]) if buildings else None, "facade"))

    trees = chunk.trees if options.has_trees(res) else ()
    instances = tree_instances(trees, (west, south))
    lo = np.min([p.positions.min(axis=0) for p in primitives], axis=0).astype(np.float64)
    hi = np.max([p.positions.max(axis=0) for p in primitives], axis=0).astype(np.float64)
    for t in instances:
        top = t.translation.astype(np.float64) + t.scale.astype(np.float64) * [0.0, 0.0, 1.0]
        lo = np.minimum(lo, np.concatenate([t.translation - t.scale * [1, 1, 0.02], top]).min(axis=0))
        hi = np.maximum(hi, np.concatenate([t.translation + t.scale * [1, 1, 0], top]).max(axis=0))
    mesh = ChunkMesh(primitives=tuple(primitives), origin=(west, south), geometric_error=tm.max_error,
                     max_error=options.max_error(res), source=source,
                     skirt_depth=depth, box_min=lo, box_max=hi, facade=facade_image, buildings=buildings,
                     grid_triangles=2 * n * n, trees=trees, tree_instances=instances,
                     instanced_trees=options.instanced_trees)
    return baked_facades(chunk, mesh) if chunk.facade_views and buildings else mesh


def baked_facades(chunk: Chunk, mesh: ChunkMesh) -> ChunkMesh:
    """The mesh with each building's wall texels painted from its learned views (`chunk.facade_views`,
    through `render.bake`: z-buffer visibility, best view by n . d, bilinear); texels no view sees,
    cliffs and horizontal faces keep what they had."""
    import dataclasses

    from ..render import RenderChunk
    from ..render.bake import atlas_texels, bake as bake_views

    rc = RenderChunk.from_mesh(chunk, mesh)
    drawn = {b.id for b in mesh.buildings}
    atlas = mesh.facade
    for block in chunk.facade_views:
        if block.building in drawn:
            atlas, _ = bake_views(atlas, atlas_texels(rc, instance=block.building), list(block.frames))
    return dataclasses.replace(mesh, facade=atlas)


DECK_THICKNESS = 1.0  # metres from a bridge deck's top to its underside


def bridge_decks(chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bridge decks as closed slabs: one box per bridge pixel (`Chunk.bridge_pixels`), its top
    level at the highest DSM of the pixel's four samples (the deck's), its underside
    DECK_THICKNESS lower, with side walls; faces counter-clockwise from outside, each with its own
    vertices (flat normals). Returns positions (V, 3) float64 ENU relative to the chunk's
    south-west corner, normals (V, 3) float32, triangles (T, 3) int64."""
    i, j = np.nonzero(chunk.bridge_pixels())
    if len(i) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    n, res = chunk.size, chunk.resolution
    x0, x1 = j * res, (j + 1) * res
    y0, y1 = (n - i - 1) * res, (n - i) * res  # row i is the pixel's north edge
    d = chunk.dsm.astype(np.float64)
    z = np.maximum(np.maximum(d[i, j], d[i, j + 1]), np.maximum(d[i + 1, j], d[i + 1, j + 1]))
    xy = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], 1)
    upper = np.concatenate([xy, np.repeat(z[:, None, None], 4, axis=1)], axis=2)  # (K, 4, 3) ccw from above
    lower = upper - [0.0, 0.0, DECK_THICKNESS]
    quads = [upper, lower[:, ::-1]]
    for a in range(4):  # sides: lower a, lower a+1, upper a+1, upper a (outward for a ccw ring)
        b = (a + 1) % 4
        quads.append(np.stack([lower[:, a], lower[:, b], upper[:, b], upper[:, a]], axis=1))
    q = np.concatenate(quads)  # (6K, 4, 3)
    first = np.arange(len(q))[:, None] * 4
    tris = np.concatenate([first + [0, 1, 2], first + [0, 2, 3]])
    v = np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])
    nrm = np.repeat(v / np.linalg.norm(v, axis=1, keepdims=True), 4, axis=0).astype(np.float32)
    return q.reshape(-1, 3), nrm, tris.astype(np.int64)


def _compact(kind, pos, nrm, uv, tris, feature, texture) -> Primitive:
    """Keep only the vertices the triangles use, renumbered in first-use order."""
    used, inverse = np.unique(tris.reshape(-1), return_inverse=True)
    return Primitive(kind=kind, positions=pos[used].astype(np.float32), normals=nrm[used].astype(np.float32),
                     uv=uv[used].astype(np.float32), triangles=inverse.reshape(-1, 3).astype(np.uint32),
                     feature=None if feature is None else feature[used].astype(np.uint32), texture=texture)


def _skirt(pos, nrm, uv, border, depth):
    """Append a vertical curtain hanging `depth` metres below the border loop (counter-clockwise
    from above, so the outward side of edge a -> b is on its right)."""
    k = len(border)
    top = border
    bottom = np.arange(len(pos), len(pos) + k)
    drop = pos[border].copy()
    drop[:, 2] -= depth
    pos = np.concatenate([pos, drop])
    nrm = np.concatenate([nrm, nrm[border]])
    uv = np.concatenate([uv, uv[border]])
    a, b = np.arange(k), (np.arange(k) + 1) % k
    quads = np.concatenate([np.stack([bottom[a], bottom[b], top[b]], 1), np.stack([bottom[a], top[b], top[a]], 1)])
    return pos, nrm, uv, quads


def _walls(bm, texels_per_metre: float, max_size: int, seed: int):
    """Building walls in a strip atlas: (positions, normals, uv pixels, triangles, feature, image)."""
    return building_walls(bm, texels_per_metre, max_size, seed)


def _cliffs(pos, nrm, cliff_tris, chunk, res, texels_per_metre: float, max_size: int):
    """Terrain faces steeper than tau (cliffs, the embankments of graded blocks), one chart per
    face (facade_atlas), tinted by the ortho at each face's centre."""
    used, inverse = np.unique(cliff_tris.reshape(-1), return_inverse=True)
    cpos, cnrm = pos[used], nrm[used]
    ctris = inverse.reshape(-1, 3)
    centre = cpos[ctris].mean(axis=1)
    n = chunk.size
    col = np.clip((centre[:, 0] / res).astype(np.int64), 0, n - 1)
    row = np.clip((n - centre[:, 1] / res).astype(np.int64), 0, n - 1)
    atlas = facade_atlas(cpos, ctris, texels_per_metre, max_size)
    pixels = atlas.uv.astype(np.float64) * [atlas.width, atlas.height]
    groups = FaceGroups(corners=pixels[atlas.triangles], world=cpos[atlas.vertex_map[atlas.triangles]],
                        tint=chunk.ortho[row, col] / 255.0)  # atlas faces keep the source order
    image = bake(groups, atlas.width, atlas.height)
    return (cpos[atlas.vertex_map], cnrm[atlas.vertex_map], pixels, atlas.triangles.astype(np.int64),
            np.full(len(atlas.vertex_map), NULL_FEATURE, dtype=np.uint32), image)
