"""What the renderer draws of a chunk: its surfaces (the exporters' primitives) and textures, built
from the in-memory `ChunkMesh` or read back from the GLB bytes the exporters write.

Positions stay float32 ENU metres relative to the chunk origin (float64), as in the GLB. Each
vertex carries the world-stable id of the building or tree it belongs to (0 for none); a surface's
class comes from the chunk's class raster (terrain, water, roofs) or from its kind (walls: building,
cliffs: rock, trees: tree). Instanced trees (EXT_mesh_gpu_instancing) are expanded into plain
triangles on load: the renderer draws one vertex buffer per surface.
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
from ..exporters.chunk_glb import linear_colour
from ..exporters.tree_mesh import COLOURS as TREE_COLOURS
from .context import RenderError

KINDS = ("terrain", "water", "roof", "facade", "tree")
TREE_MATERIALS = ("tree_trunk", "tree_conifer", "tree_broadleaf")
NULL_FEATURE = 0xFFFF  # exporters.chunk_mesh.NULL_FEATURE: facade faces of no building (cliffs)


@dataclass(frozen=True, eq=False)
class Surface:
    """kind: terrain | water | roof | facade | tree; positions, normals: (V, 3) float32 ENU relative to
    the chunk origin; uv: (V, 2) float32 (v down); triangles: (T, 3) uint32, counter-clockwise seen
    from outside; instance: (V,) uint32 building or tree id (0: none); texture: "ortho", "facade"
    or "none" (then `colour`)."""

    kind: str
    positions: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    instance: np.ndarray
    texture: str
    colour: tuple[float, float, float] | None = None  # linear RGB albedo of untextured surfaces (trees)


@dataclass(frozen=True, eq=False)
class RenderChunk:
    """key (None for ad hoc scenes); origin: (east, north) float64 metres; surfaces; ortho:
    (H, W, 3) uint8; classes: (H, W) uint8 class raster over the ortho's footprint; facade:
    (H, W, 3) uint8 atlas or None."""

    key: ChunkKey | None
    origin: tuple[float, float]
    surfaces: tuple[Surface, ...]
    ortho: np.ndarray
    classes: np.ndarray
    facade: np.ndarray | None

    @property
    def triangle_count(self) -> int:
        return int(sum(len(s.triangles) for s in self.surfaces))

    def z_range(self) -> tuple[float, float]:
        """Lowest and highest vertex height (m, ENU; skirts included)."""
        zs = [(float(s.positions[:, 2].min()), float(s.positions[:, 2].max())) for s in self.surfaces if len(s.positions)]
        return (min(z[0] for z in zs), max(z[1] for z in zs)) if zs else (0.0, 0.0)

    @property
    def nbytes(self) -> int:
        n = self.ortho.nbytes + self.classes.nbytes + (self.facade.nbytes if self.facade is not None else 0)
        return n + sum(s.positions.nbytes * 2 + s.uv.nbytes + s.triangles.nbytes + s.instance.nbytes
                       for s in self.surfaces)

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
        for t in mesh.tree_instances:
            for part, rows in t.merged():
                surfaces.append(_tree_surface(part.positions, part.normals, part.triangles, tree_ids[rows],
                                              tuple(linear_colour(TREE_COLOURS[part.material])[:3])))
        return RenderChunk(chunk.key, tuple(float(c) for c in mesh.origin), tuple(surfaces), chunk.ortho,
                           chunk.semantic.astype(np.uint8), mesh.facade)

    @staticmethod
    def from_glb(glb: bytes, key: ChunkKey | None = None) -> "RenderChunk":
        """From a worldstream chunk GLB (exporters.chunk_glb): the same surfaces, with the textures
        as written (JPEG ortho and facade atlas, PNG class raster)."""
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
            tree_ids = np.zeros(0, np.uint32) if tree_table is None else \
                _view(doc, binary, tree_table["properties"]["id"]["values"]).view("<u4")
            images, classes = {}, None
            surfaces = []
            for child in node.get("children", []):
                surfaces.extend(_instanced_trees(doc, binary, doc["nodes"][child], tree_ids))
            for prim in mesh["primitives"]:
                material = doc["materials"][prim["material"]]
                kind = material.get("name")
                if kind in TREE_MATERIALS:
                    pos, nrm, tris = _primitive_geometry(doc, binary, prim)
                    rows = _accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"]).astype(np.int64)
                    surfaces.append(_tree_surface(pos, nrm, tris, tree_ids[rows], _factor(material)))
                    continue
                if kind not in KINDS:
                    raise RenderError(f"GLB primitive with material {kind!r}: expected one of "
                                      f"{', '.join(KINDS[:-1] + TREE_MATERIALS)}")
                tex = material["pbrMetallicRoughness"]["baseColorTexture"]["index"]
                texture = "facade" if doc["textures"][tex].get("name") == "facade" or kind == "facade" else "ortho"
                if texture not in images:
                    images[texture] = _image(doc, binary, tex, "RGB")
                fids = prim.get("extensions", {}).get("EXT_mesh_features", {}).get("featureIds", [])
                for f in fids:
                    if "texture" in f and classes is None:
                        classes = _image(doc, binary, f["texture"]["index"], "L")
                a = prim["attributes"]
                pos = _gltf_to_enu(_accessor(doc, binary, a["POSITION"]))
                nrm = _gltf_to_enu(_accessor(doc, binary, a["NORMAL"]))
                uv = _accessor(doc, binary, a["TEXCOORD_0"]).astype(np.float32)
                tris = _accessor(doc, binary, prim["indices"]).astype(np.uint32).reshape(-1, 3)
                rows = np.full(len(pos), len(ids) - 1, np.int64)
                if "_FEATURE_ID_0" in a:
                    f = _accessor(doc, binary, a["_FEATURE_ID_0"]).astype(np.int64)
                    rows = np.where(f == NULL_FEATURE, len(ids) - 1, f)
                surfaces.append(Surface(kind, pos, nrm, uv, tris, ids[rows], texture))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise RenderError(f"not a worldstream chunk GLB: {exc!r}") from exc
        ortho = images.get("ortho")
        if ortho is None:
            raise RenderError("chunk GLB without an ortho texture")
        if classes is None:
            classes = np.zeros(ortho.shape[:2], np.uint8)
        return RenderChunk(key, (float(tx), float(-tz)), tuple(surfaces), ortho, classes, images.get("facade"))


def _factor(material: dict) -> tuple[float, float, float]:
    return tuple(float(c) for c in material["pbrMetallicRoughness"]["baseColorFactor"][:3])


def _tree_surface(pos, nrm, tris, ids, colour) -> Surface:
    return Surface("tree", np.ascontiguousarray(pos, np.float32), np.ascontiguousarray(nrm, np.float32),
                   np.zeros((len(pos), 2), np.float32), np.ascontiguousarray(tris, np.uint32),
                   np.ascontiguousarray(ids, np.uint32), "none", colour)


def _primitive_geometry(doc: dict, binary: bytes, prim: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = prim["attributes"]
    return (_gltf_to_enu(_accessor(doc, binary, a["POSITION"])), _gltf_to_enu(_accessor(doc, binary, a["NORMAL"])),
            _accessor(doc, binary, prim["indices"]).astype(np.uint32).reshape(-1, 3))


def _instanced_trees(doc: dict, binary: bytes, node: dict, tree_ids: np.ndarray) -> list[Surface]:
    """A child node drawn with EXT_mesh_gpu_instancing, expanded: scale, then rotate, then move."""
    inst = node.get("extensions", {}).get("EXT_mesh_gpu_instancing")
    if inst is None:
        raise RenderError(f"GLB child node {node.get('name')!r} without EXT_mesh_gpu_instancing: not a worldstream chunk")
    at = inst["attributes"]
    t = _accessor(doc, binary, at["TRANSLATION"]).astype(np.float64) + node.get("translation", (0.0, 0.0, 0.0))
    q = _accessor(doc, binary, at["ROTATION"]).astype(np.float64)
    sc = _accessor(doc, binary, at["SCALE"]).astype(np.float64)
    rows = _accessor(doc, binary, at["_FEATURE_ID_0"]).astype(np.int64)
    x, y, z, w = q[:, 0:1], q[:, 1:2], q[:, 2:3], q[:, 3:4]
    out = []
    for prim in doc["meshes"][node["mesh"]]["primitives"]:
        a = prim["attributes"]
        p = _accessor(doc, binary, a["POSITION"]).astype(np.float64)
        n = _accessor(doc, binary, a["NORMAL"]).astype(np.float64)
        tris = _accessor(doc, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)

        def rotate(v):  # quaternion (x, y, z, w) applied to (N, V, 3)
            u = np.stack([x, y, z], -1)  # (N, 1, 3)
            tt = 2.0 * np.cross(u, v)
            return v + w[..., None] * tt + np.cross(u, tt)
        pos = rotate(p[None] * sc[:, None]) + t[:, None]
        nrm = rotate(n[None] / sc[:, None])
        nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
        v = len(p)
        all_tris = (tris[None] + (np.arange(len(t)) * v)[:, None, None]).reshape(-1, 3)
        out.append(_tree_surface(_gltf_to_enu(pos.reshape(-1, 3)), _gltf_to_enu(nrm.reshape(-1, 3)), all_tris,
                                 np.repeat(tree_ids[rows], v), _factor(doc["materials"][prim["material"]])))
    return out


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


COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
DTYPES = {5121: "<u1", 5123: "<u2", 5125: "<u4", 5126: "<f4"}


def _view(doc: dict, binary: bytes, index: int) -> np.ndarray:
    v = doc["bufferViews"][index]
    start = v.get("byteOffset", 0)
    return np.frombuffer(binary, np.uint8, v["byteLength"], start)


def _accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    a = doc["accessors"][index]
    n, dtype = COMPONENTS[a["type"]], np.dtype(DTYPES[a["componentType"]])
    v = doc["bufferViews"][a["bufferView"]]
    if v.get("byteStride", n * dtype.itemsize) != n * dtype.itemsize:
        raise RenderError("interleaved GLB buffer views are not read (worldstream writes none)")
    start = v.get("byteOffset", 0) + a.get("byteOffset", 0)
    out = np.frombuffer(binary, dtype, a["count"] * n, start)
    return out.reshape(a["count"], n) if n > 1 else out


def _image(doc: dict, binary: bytes, texture: int, mode: str) -> np.ndarray:
    image = doc["images"][doc["textures"][texture]["source"]]
    data = _view(doc, binary, image["bufferView"]).tobytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode))


def _gltf_to_enu(a: np.ndarray) -> np.ndarray:
    """(V, 3) glTF (E, U, -N) -> (V, 3) float32 ENU."""
    return np.ascontiguousarray(np.stack([a[:, 0], -a[:, 2], a[:, 1]], axis=1), np.float32)
