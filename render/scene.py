"""What the renderer draws of a chunk: its surfaces (the exporters' primitives) and textures, built
from the in-memory `ChunkMesh` or read back from the GLB bytes the exporters write.

Positions stay float32 ENU metres relative to the chunk origin (float64), as in the GLB. Each
vertex carries the world-stable id of the building or tree it belongs to (0 for none); a surface's
class comes from the chunk's class raster (terrain, water, roofs) or from its kind (walls: building,
cliffs: rock). Trees stay instances (`Trees`: one per kind, as EXT_mesh_gpu_instancing writes
them) of the shared models of exporters.tree_mesh: the renderer draws each model once per chunk
with GPU instancing, and classes them tree.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..core.chunk import Chunk
from ..core.keys import ChunkKey
from ..core.vegetation import KINDS as TREE_KINDS
from ..exporters.gltf import accessor_array
from ..exporters.tree_mesh import MODELS as TREE_MODELS
from .context import RenderError
from .ground_grid import STRIDES, GroundGrid, ground_grid, sample_surfaces

KINDS = ("terrain", "water", "roof", "facade")
TREE_MATERIALS = ("tree_trunk", "tree_conifer", "tree_broadleaf")
NULL_FEATURE = 0xFFFF  # exporters.chunk_mesh.NULL_FEATURE: facade faces of no building (cliffs)
GROUND_TILES = 8  # the ground grids' tiles per side: the renderer's cull tiles
# Ground grids are made for level-0 chunks only: the selection keeps them out to the horizon, far
# past the distance where their triangles shrink below a pixel, while finer levels are chosen by
# distance. Measured at 256x144 over a town: level 0's triangles drawn 70.7k -> 24.6k, every other
# level together 82k -> 67k; a chunk's grids cost ~40 ms to make, and a flight loads few level-0 chunks.
GROUND_GRID_LEVELS = (0,)


@dataclass(frozen=True, eq=False)
class Surface:
    """kind: terrain | water | roof | facade; positions, normals: (V, 3) float32 ENU relative to the
    chunk origin; uv: (V, 2) float32 (v down); triangles: (T, 3) uint32, counter-clockwise seen from
    outside; instance: (V,) uint32 building id (0: none); texture: "ortho" or "facade"."""

    kind: str
    positions: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    instance: np.ndarray
    texture: str

    @property
    def is_ground(self) -> bool:
        """Terrain, water and cliffs: the height field that ground grids stand in for from afar."""
        return self.kind in ("terrain", "water") or (self.kind == "facade" and not self.instance.any())


@dataclass(frozen=True, eq=False)
class Trees:
    """The trees of one kind (core.vegetation.KINDS) in a chunk, instances of the unit model
    exporters.tree_mesh.MODELS[kind]: translation (N, 3) float32 ENU trunk foot relative to the
    chunk origin; turn (N, 2) float32 (cos, sin) about up; scale (N, 3) float32 (radius, radius,
    height) metres; ids (N,) uint32 world-stable tree ids. A vertex p of the model lands at
    turn(p * scale) + translation."""

    kind: str
    translation: np.ndarray
    turn: np.ndarray
    scale: np.ndarray
    ids: np.ndarray

    @property
    def triangle_count(self) -> int:
        return len(self.ids) * sum(len(p.triangles) for p in TREE_MODELS[self.kind])

    def boxes(self) -> np.ndarray:
        """(N, 2, 3) float64 min / max corners of each tree, relative to the chunk origin (whatever its turn)."""
        model = np.concatenate([p.positions for p in TREE_MODELS[self.kind]]).astype(np.float64)
        reach = float(np.hypot(model[:, 0], model[:, 1]).max())
        lo = np.array([-reach, -reach, model[:, 2].min()])
        hi = np.array([reach, reach, model[:, 2].max()])
        t, sc = self.translation.astype(np.float64), self.scale.astype(np.float64)
        return np.stack([t + lo * sc, t + hi * sc], axis=1)

    @property
    def nbytes(self) -> int:
        return self.translation.nbytes + self.turn.nbytes + self.scale.nbytes + self.ids.nbytes


@dataclass(frozen=True, eq=False)
class RenderChunk:
    """key (None for ad hoc scenes); origin: (east, north) float64 metres; surfaces; trees (one
    per kind present); ortho: (H, W, 3) uint8; classes: (H, W) uint8 class raster over the ortho's
    footprint; facade: (H, W, 3) uint8 atlas or None; ground: the ground grids that stand in for
    the far tiles of the ground surfaces (None where the chunk has no terrain on its sample grid).
    Build with `RenderChunk.of`: the cliffs of a facade surface become a surface of their own, and
    the ground grids are made."""

    key: ChunkKey | None
    origin: tuple[float, float]
    surfaces: tuple[Surface, ...]
    trees: tuple[Trees, ...]
    ortho: np.ndarray
    classes: np.ndarray
    facade: np.ndarray | None
    ground: GroundGrid | None = None

    @staticmethod
    def of(key: ChunkKey | None, origin: tuple[float, float], surfaces, trees: tuple[Trees, ...], ortho: np.ndarray,
           classes: np.ndarray, facade: np.ndarray | None) -> "RenderChunk":
        """A RenderChunk from its parts (the fields above, surfaces any iterable of Surface)."""
        surfaces = tuple(part for s in surfaces for part in _split_cliffs(s))
        ground = _ground(surfaces, classes.shape[0]) if key is not None and key.level in GROUND_GRID_LEVELS else None
        return RenderChunk(key, origin, surfaces, trees, ortho, classes, facade, ground)

    @property
    def triangle_count(self) -> int:
        """Triangles drawn when all of the chunk is in view, trees' instances included."""
        return int(sum(len(s.triangles) for s in self.surfaces) + sum(t.triangle_count for t in self.trees))

    def z_range(self) -> tuple[float, float]:
        """Lowest and highest vertex height (m, ENU; skirts and tree tops included)."""
        zs = [(float(s.positions[:, 2].min()), float(s.positions[:, 2].max())) for s in self.surfaces if len(s.positions)]
        zs += [(float(b[:, 0, 2].min()), float(b[:, 1, 2].max())) for b in (t.boxes() for t in self.trees) if len(b)]
        return (min(z[0] for z in zs), max(z[1] for z in zs)) if zs else (0.0, 0.0)

    @property
    def nbytes(self) -> int:
        n = self.ortho.nbytes + self.classes.nbytes + (self.facade.nbytes if self.facade is not None else 0)
        n += self.ground.nbytes if self.ground is not None else 0
        return n + sum(s.positions.nbytes * 2 + s.uv.nbytes + s.triangles.nbytes + s.instance.nbytes
                       for s in self.surfaces) + sum(t.nbytes for t in self.trees)

    @staticmethod
    def from_mesh(chunk: Chunk, mesh) -> "RenderChunk":
        """From a chunk and its `exporters.chunk_mesh.ChunkMesh` (no encoding on the way)."""
        ids = np.array([b.id for b in mesh.buildings] + [0], np.uint32)
        surfaces = []
        for p in mesh.primitives:
            rows = np.full(len(p.positions), len(ids) - 1, np.int64) if p.feature is None else \
                np.where(p.feature == NULL_FEATURE, len(ids) - 1, p.feature.astype(np.int64))
            surfaces.append(Surface(p.kind, p.positions.astype(np.float32), p.normals.astype(np.float32),
                                    p.uv.astype(np.float32), p.triangles.astype(np.uint32), ids[rows], p.texture))
        tree_ids = np.array([t.id for t in mesh.trees], np.uint32)
        trees = tuple(_trees(t.kind, t.translation, t.turn, t.scale, tree_ids[t.row]) for t in mesh.tree_instances)
        return RenderChunk.of(chunk.key, tuple(float(c) for c in mesh.origin), surfaces, trees, chunk.ortho,
                              chunk.semantic.astype(np.uint8), mesh.facade)

    @staticmethod
    def from_glb(glb: bytes, key: ChunkKey | None = None) -> "RenderChunk":
        """From a worldstream chunk GLB (exporters.chunk_glb): the same surfaces and tree instances,
        with the textures as written (JPEG ortho and facade atlas, PNG class raster). Trees must be
        instanced (EXT_mesh_gpu_instancing, the default): merged tree primitives are refused."""
        doc, binary = _split_glb(glb)
        try:
            node = doc["nodes"][doc["scenes"][doc.get("scene", 0)]["nodes"][0]]
            tx, _, tz = node.get("translation", (0.0, 0.0, 0.0))
            mesh = doc["meshes"][node["mesh"]]
            tables = doc.get("extensions", {}).get("EXT_structural_metadata", {}).get("propertyTables", [])
            building = next((t for t in tables if t.get("class") == "building"), None)
            ids = np.zeros(1, np.uint32)
            if building is not None:
                ids = np.concatenate([_view(doc, binary, building["properties"]["id"]["values"]).view("<u4"),
                                      np.zeros(1, np.uint32)])
            tree_table = next((t for t in tables if t.get("class") == "tree"), None)
            tree_ids = tree_kinds = np.zeros(0, np.uint32)
            if tree_table is not None:
                tree_ids = _view(doc, binary, tree_table["properties"]["id"]["values"]).view("<u4")
                tree_kinds = _view(doc, binary, tree_table["properties"]["kind"]["values"])
            trees = tuple(_instanced_trees(doc, binary, doc["nodes"][child], tree_ids, tree_kinds)
                          for child in node.get("children", []))
            images, classes = {}, None
            surfaces = []
            for prim in mesh["primitives"]:
                material = doc["materials"][prim["material"]]
                kind = material.get("name")
                if kind in TREE_MATERIALS:
                    raise RenderError("GLB with trees merged into plain primitives (MeshOptions(instanced_trees=False), "
                                      "for clients without EXT_mesh_gpu_instancing): the renderer reads instanced trees")
                if kind not in KINDS:
                    raise RenderError(f"GLB primitive with material {kind!r}: expected one of {', '.join(KINDS)}")
                tex = material["pbrMetallicRoughness"]["baseColorTexture"]["index"]
                texture = "facade" if doc["textures"][tex].get("name") == "facade" or kind == "facade" else "ortho"
                if texture not in images:
                    images[texture] = _image(doc, binary, tex, "RGB")
                fids = prim.get("extensions", {}).get("EXT_mesh_features", {}).get("featureIds", [])
                for f in fids:
                    if "texture" in f and classes is None:
                        classes = _image(doc, binary, f["texture"]["index"], "L")
                a = prim["attributes"]
                pos = _gltf_to_enu(accessor_array(doc, binary, a["POSITION"]))
                nrm = _gltf_to_enu(accessor_array(doc, binary, a["NORMAL"]))
                uv = accessor_array(doc, binary, a["TEXCOORD_0"]).astype(np.float32)
                tris = accessor_array(doc, binary, prim["indices"]).astype(np.uint32).reshape(-1, 3)
                rows = np.full(len(pos), len(ids) - 1, np.int64)
                if "_FEATURE_ID_0" in a:
                    f = accessor_array(doc, binary, a["_FEATURE_ID_0"]).astype(np.int64)
                    rows = np.where(f == NULL_FEATURE, len(ids) - 1, f)
                surfaces.append(Surface(kind, pos, nrm, uv, tris, ids[rows], texture))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise RenderError(f"not a worldstream chunk GLB: {exc!r}") from exc
        ortho = images.get("ortho")
        if ortho is None:
            raise RenderError("chunk GLB without an ortho texture")
        if classes is None:
            classes = np.zeros(ortho.shape[:2], np.uint8)
        return RenderChunk.of(key, (float(tx), float(-tz)), surfaces, trees, ortho, classes, images.get("facade"))


def _split_cliffs(s: Surface) -> tuple[Surface, ...]:
    """A facade surface of walls and cliffs as two surfaces, the cliffs' (no building) first."""
    if s.kind != "facade" or not s.instance.any() or s.instance.all():
        return (s,)
    cliff = (s.instance[s.triangles] == 0).all(axis=1)
    out = []
    for part in (cliff, ~cliff):
        if part.any():
            used, triangles = np.unique(s.triangles[part], return_inverse=True)
            out.append(Surface(s.kind, s.positions[used], s.normals[used], s.uv[used],
                               triangles.reshape(-1, 3).astype(np.uint32), s.instance[used], s.texture))
    return tuple(out)


def _ground(surfaces: tuple[Surface, ...], n: int) -> GroundGrid | None:
    terrain = [s for s in surfaces if s.kind == "terrain" and len(s.positions)]
    if not terrain or n % (GROUND_TILES * max(STRIDES)):
        return None
    extent = float(terrain[0].positions[:, 0].max())
    heights = sample_surfaces([(s.positions, s.triangles) for s in surfaces if s.is_ground], n, extent)
    return None if heights is None else ground_grid(heights, extent, GROUND_TILES)


def _trees(kind: str, translation, turn, scale, ids) -> Trees:
    return Trees(kind, np.ascontiguousarray(translation, np.float32), np.ascontiguousarray(turn, np.float32),
                 np.ascontiguousarray(scale, np.float32), np.ascontiguousarray(ids, np.uint32))


def _instanced_trees(doc: dict, binary: bytes, node: dict, tree_ids: np.ndarray, tree_kinds: np.ndarray) -> Trees:
    """A child node drawn with EXT_mesh_gpu_instancing as Trees: its kind from the tree table, its
    model the renderer's own (exporters.tree_mesh.MODELS, which the exporter wrote); the instance
    rotations must be turns about glTF +Y (ENU up), as the exporter writes them."""
    inst = node.get("extensions", {}).get("EXT_mesh_gpu_instancing")
    if inst is None:
        raise RenderError(f"GLB child node {node.get('name')!r} without EXT_mesh_gpu_instancing: not a worldstream chunk")
    at = inst["attributes"]
    rows = accessor_array(doc, binary, at["_FEATURE_ID_0"]).astype(np.int64)
    kinds = np.unique(tree_kinds[rows])
    if len(kinds) != 1:
        raise RenderError(f"GLB tree node {node.get('name')!r} mixes tree kinds {kinds.tolist()}: expected one")
    kind = TREE_KINDS[int(kinds[0])]
    model = doc["meshes"][node["mesh"]]["primitives"]
    if [doc["accessors"][p["attributes"]["POSITION"]]["count"] for p in model] != \
            [len(p.positions) for p in TREE_MODELS[kind]]:
        raise RenderError(f"GLB tree node {node.get('name')!r}: its mesh is not the {kind} model of exporters.tree_mesh")
    t = accessor_array(doc, binary, at["TRANSLATION"]).astype(np.float64) + node.get("translation", (0.0, 0.0, 0.0))
    q = accessor_array(doc, binary, at["ROTATION"]).astype(np.float64)
    if np.abs(q[:, [0, 2]]).max(initial=0.0) > 1e-6:
        raise RenderError(f"GLB tree node {node.get('name')!r}: instance rotations other than turns about up")
    y, w = q[:, 1], q[:, 3]
    turn = np.stack([w * w - y * y, 2.0 * w * y], axis=1)  # the quaternion's angle about glTF +Y = ENU up
    scale = accessor_array(doc, binary, at["SCALE"])[:, [0, 2, 1]]  # glTF (r, h, r) -> ENU (r, r, h)
    return _trees(kind, _gltf_to_enu(t), turn, scale, tree_ids[rows])


def _split_glb(glb: bytes) -> tuple[dict, bytes]:
    if len(glb) < 20 or glb[:4] != b"glTF":
        raise RenderError(f"not a GLB: expected the magic b'glTF', got {bytes(glb[:4])!r}")
    version, length = struct.unpack_from("<II", glb, 4)
    if version != 2 or length > len(glb):
        raise RenderError(f"GLB version {version}, length {length} of {len(glb)} bytes: expected version 2, whole")
    offset, doc, binary = 12, None, b""
    while offset + 8 <= length:
        size, kind = struct.unpack_from("<II", glb, offset)
        body = glb[offset + 8:offset + 8 + size]
        if kind == 0x4E4F534A:
            doc = json.loads(body)
        elif kind == 0x004E4942:
            binary = bytes(body)
        offset += 8 + size
    if doc is None:
        raise RenderError("GLB without a JSON chunk")
    return doc, binary


def _view(doc: dict, binary: bytes, index: int) -> np.ndarray:
    v = doc["bufferViews"][index]
    start = v.get("byteOffset", 0)
    return np.frombuffer(binary, np.uint8, v["byteLength"], start)


def _image(doc: dict, binary: bytes, texture: int, mode: str) -> np.ndarray:
    image = doc["images"][doc["textures"][texture]["source"]]
    data = _view(doc, binary, image["bufferView"]).tobytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode))


def _gltf_to_enu(a: np.ndarray) -> np.ndarray:
    """(V, 3) glTF (E, U, -N) -> (V, 3) float32 ENU."""
    return np.ascontiguousarray(np.stack([a[:, 0], -a[:, 2], a[:, 1]], axis=1), np.float32)
