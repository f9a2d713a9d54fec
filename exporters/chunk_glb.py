"""Chunk -> GLB bytes: the chunk mesh with PBR materials, embedded textures and annotations.

Frames: glTF content is y-up metres, written as (E, U, -N) of world ENU. Vertices are relative to
the chunk origin (south-west corner, height 0), so float32 stays exact far from the world origin;
the one node carries the origin as its translation (float64 in JSON), so GLBs dropped together
into Blender or three.js line up, and a 3D Tiles client (which turns glTF y-up into z-up) sees
world ENU. glTFRuntime's LoadStaticMesh reads the mesh without the node: place the actor at the
origin from `extras.worldstream.origin_unreal_cm` (see docs/frames.md).

Annotations (EXT_mesh_features + EXT_structural_metadata):
- terrain, water and roof primitives: feature ids from a texture (the semantic class per texel,
  channel 0 of an 8-bit grey PNG, NEAREST sampler) into property table 0, `land_cover`
  (name, code, colour);
- roof and facade primitives: feature ids from the `_FEATURE_ID_0` vertex attribute into property
  table 1, `building` (id, height, base and roof heights, floors); cliff faces in the facade
  primitive carry the null feature id.
- trees (fine levels): one child node per tree kind whose mesh (trunk, crown) is drawn once per
  tree with EXT_mesh_gpu_instancing (TRANSLATION relative to the node, which stands at the first
  tree's foot; ROTATION; SCALE), the tree's row of the `tree` property table (id, height, crown
  radius, kind, setting) from the instance attribute `_FEATURE_ID_0` via EXT_instance_features.
  The extension is used, not required: a client without it draws one small tree per kind. With `MeshOptions(instanced_trees=False)` the trees
  are merged into plain `tree_*` primitives of the chunk mesh instead, feature ids per vertex.

Storage: `PlainWriter` (the default) writes float32 attributes, JPEG base colour and integer
(UNSIGNED_SHORT) feature ids, readable by any glTF 2.0 client; `compress=True` swaps in
exporters.compress's MeshoptWriter (EXT_meshopt_compression, KHR_mesh_quantization,
EXT_texture_webp, the same integer feature ids) for the same content. The feature-ID texture and the property tables are stored alike in both.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from ..core import frames
from ..core.biomes import CLASSES, PALETTE
from ..core.chunk import Chunk
from ..core.spec import WorldSpec
from ..core.vegetation import KINDS as TREE_KINDS, SETTINGS as TREE_SETTINGS
from .chunk_mesh import NULL_FEATURE, ChunkMesh
from .tree_mesh import COLOURS as TREE_COLOURS
from .gltf import (ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, LINEAR, LINEAR_MIPMAP_LINEAR, NEAREST, UNSIGNED_SHORT, GltfBuilder,
                   feature_id_array, padded_rows)

GENERATOR = "worldstream"
JPEG_QUALITY = 88

MATERIALS = {  # surface kind -> (roughness, metallic)
    "terrain": (0.95, 0.0),
    "water": (0.08, 0.0),
    "roof": (0.8, 0.0),
    "facade": (0.75, 0.0),
    "tree_trunk": (0.9, 0.0),
    "tree_conifer": (0.85, 0.0),
    "tree_broadleaf": (0.8, 0.0),
}


def linear_colour(srgb: tuple[int, int, int]) -> list[float]:
    """sRGB 0..255 -> linear RGBA factors (glTF baseColorFactor is linear)."""
    return [round(((c / 255.0 + 0.055) / 1.055) ** 2.4, 6) for c in srgb] + [1.0]


def encode_jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY,
                                                                           optimize=False, subsampling=0)
    return buf.getvalue()


def encode_grey_png(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), "L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def chunk_metadata(chunk: Chunk, spec: WorldSpec, mesh: ChunkMesh) -> dict:
    """What a reader needs to place and judge the chunk (also written as tile.json)."""
    ox, oy = mesh.origin
    lo = mesh.box_min + [ox, oy, 0.0]
    hi = mesh.box_max + [ox, oy, 0.0]
    unreal = frames.enu_to_unreal([ox, oy, 0.0])
    return {
        "format": "worldstream.chunk/1",
        "key": {"level": chunk.key.level, "x": chunk.key.x, "y": chunk.key.y},
        "resolution_m": chunk.resolution,
        "bounds": dict(zip(("west", "south", "east", "north"), chunk.bounds)),
        "origin_enu": [ox, oy, 0.0],
        "origin_unreal_cm": [float(v) for v in unreal],
        "geodetic_origin": {"lat": spec.origin.lat, "lon": spec.origin.lon, "alt": spec.origin.alt},
        "geometric_error": mesh.geometric_error,
        "max_error": mesh.max_error,
        "mesh_source": mesh.source,
        "skirt_depth": mesh.skirt_depth,
        "enu_min": lo.tolist(),
        "enu_max": hi.tolist(),
        "triangles": mesh.triangle_count,
        "grid_triangles": mesh.grid_triangles,
        "buildings": len(mesh.buildings),
        "trees": len(mesh.trees),
        "frames": "vertices: glTF y-up metres (E, U, -N) relative to origin_enu; node translation = origin",
    }


class PlainWriter:
    """Uncompressed storage: float32 vertex and instance attributes, feature ids as UNSIGNED_SHORT
    integers (vertex ids padded to 4-byte elements, byteStride 4; FLOAT, exact below 2^24, only if a
    row exceeded 65535), uint16/uint32 indices, JPEG base colour."""

    def primitive(self, b: GltfBuilder, positions: np.ndarray, normals: np.ndarray, uv: np.ndarray | None,
                  feature: np.ndarray | None, triangles: np.ndarray, feature_last: bool = False
                  ) -> tuple[dict[str, int], int]:
        """(attributes, indices accessor) of one primitive; `feature_last` writes the feature ids
        after the indices (the tree primitives' layout)."""
        attributes = {"POSITION": b.accessor(positions, ARRAY_BUFFER, min_max=True),
                      "NORMAL": b.accessor(normals, ARRAY_BUFFER)}
        if uv is not None:
            attributes["TEXCOORD_0"] = b.accessor(uv, ARRAY_BUFFER)

        def ids() -> None:
            if feature is not None:
                attributes["_FEATURE_ID_0"] = _vertex_ids(b, feature)

        if not feature_last:
            ids()
        indices = b.accessor(triangles.astype(np.uint16 if len(positions) < 65536 else np.uint32).reshape(-1),
                             ELEMENT_ARRAY_BUFFER)
        if feature_last:
            ids()
        return attributes, indices

    def instances(self, b: GltfBuilder, attributes: dict[str, np.ndarray]) -> dict[str, int]:
        """float32 TRANSLATION, ROTATION, SCALE (what glTFRuntime reads); `_FEATURE_ID_*` as integers."""
        return {name: b.accessor(feature_id_array(a) if name.startswith("_FEATURE_ID_") else a.astype(np.float32))
                for name, a in attributes.items()}

    def base_colour(self, b: GltfBuilder, rgb: np.ndarray, sampler: int, name: str) -> int:
        return b.texture(encode_jpeg(rgb), "image/jpeg", sampler, name)


def chunk_glb(chunk: Chunk, spec: WorldSpec, mesh: ChunkMesh, meta: dict | None = None, compress: bool = False) -> bytes:
    """The GLB; `meta` (chunk_metadata) goes into the node extras, computed here if not given;
    `compress`: meshopt geometry and WebP base colour (exporters.compress), else plain storage."""
    if compress:
        from .compress import MeshoptWriter
        w = MeshoptWriter()
    else:
        w = PlainWriter()
    b = GltfBuilder(f"{GENERATOR} chunk exporter")
    b.use_extension("EXT_mesh_features")
    b.use_extension("EXT_structural_metadata")
    linear = b.sampler(LINEAR, LINEAR_MIPMAP_LINEAR)
    nearest = b.sampler(NEAREST, NEAREST)
    textures = {"ortho": w.base_colour(b, chunk.ortho, linear, "ortho")}
    if mesh.facade is not None:
        textures["facade"] = w.base_colour(b, mesh.facade, linear, "facade")
    classes_tex = b.texture(encode_grey_png(chunk.semantic), "image/png", nearest, "semantic_class")

    materials: dict[str, int] = {}
    land_cover_table, building_table, tree_table = _property_tables(b, mesh)

    def tree_material(name: str) -> int:
        if name not in materials:
            rough, metal = MATERIALS[name]
            materials[name] = b.add("materials", {"name": name, "pbrMetallicRoughness": {
                "baseColorFactor": linear_colour(TREE_COLOURS[name[5:]]), "metallicFactor": metal,
                "roughnessFactor": rough}, "doubleSided": False})
        return materials[name]

    def tree_primitive(part, rows=None, features: int = 0) -> dict:
        attributes, indices = w.primitive(b, _to_gltf(part.positions), _to_gltf(part.normals), None, rows,
                                          part.triangles, feature_last=True)
        p = {"attributes": attributes, "material": tree_material("tree_" + part.material), "mode": 4,
             "indices": indices}
        if rows is not None:
            p["extensions"] = {"EXT_mesh_features": {"featureIds": [
                {"featureCount": features, "attribute": 0, "propertyTable": tree_table, "label": "tree"}]}}
        return p

    primitives = []
    for prim in mesh.primitives:
        rough, metal = MATERIALS[prim.kind]
        if prim.kind not in materials:
            materials[prim.kind] = b.add("materials", {
                "name": prim.kind,
                "pbrMetallicRoughness": {"baseColorTexture": {"index": textures[prim.texture]},
                                         "metallicFactor": metal, "roughnessFactor": rough},
                "doubleSided": False})
        with_ids = prim.feature is not None and building_table is not None
        attributes, indices = w.primitive(b, _to_gltf(prim.positions), _to_gltf(prim.normals), prim.uv,
                                          prim.feature if with_ids else None, prim.triangles)
        feature_ids = []
        if prim.texture == "ortho":
            feature_ids.append({"featureCount": len(CLASSES), "texture": {"index": classes_tex, "texCoord": 0,
                                                                           "channels": [0]},
                                "propertyTable": land_cover_table, "label": "land_cover"})
        if with_ids:
            fid = {"featureCount": len(mesh.buildings), "attribute": 0, "propertyTable": building_table,
                   "label": "building"}
            if (prim.feature == NULL_FEATURE).any():
                fid["nullFeatureId"] = NULL_FEATURE
            feature_ids.append(fid)
        p = {"attributes": attributes, "indices": indices,
             "material": materials[prim.kind], "mode": 4}
        if feature_ids:
            p["extensions"] = {"EXT_mesh_features": {"featureIds": feature_ids}}
        primitives.append(p)

    children = []
    if mesh.tree_instances and not mesh.instanced_trees:
        for t in mesh.tree_instances:
            primitives.extend(tree_primitive(part, rows, len(t.row)) for part, rows in t.merged())
    elif mesh.tree_instances:
        b.use_extension("EXT_mesh_gpu_instancing")
        b.use_extension("EXT_instance_features")
        for t in mesh.tree_instances:
            tree_mesh_index = b.add("meshes", {"name": f"tree {t.kind}", "primitives": [tree_primitive(p) for p in t.parts]})
            # a turn about ENU up is a turn about glTF +Y; half angles from the cosine (turns are 0..60 deg)
            c = t.turn[:, 0]
            rotation = np.stack([np.zeros_like(c), np.sqrt((1.0 - c) * 0.5), np.zeros_like(c),
                                 np.sqrt((1.0 + c) * 0.5)], 1)
            scale = t.scale.astype(np.float32)[:, [0, 2, 1]]  # ENU (r, r, h) -> glTF (r, h, r)
            # the node stands at the first tree's foot: a client without the extension draws the
            # mesh once there (a 1 m tree inside that tree's crown), not at the chunk corner
            foot = _to_gltf(t.translation[:1])[0].astype(np.float64)
            children.append(b.add("nodes", {"name": f"trees {t.kind}", "mesh": tree_mesh_index,
                                            "translation": [float(v) for v in foot], "extensions": {
                "EXT_mesh_gpu_instancing": {"attributes": w.instances(b, {
                    "TRANSLATION": (_to_gltf(t.translation) - foot).astype(np.float32),
                    "ROTATION": rotation.astype(np.float32), "SCALE": scale, "_FEATURE_ID_0": t.row})},
                "EXT_instance_features": {"featureIds": [
                    {"featureCount": len(t.row), "attribute": 0, "propertyTable": tree_table, "label": "tree"}]}}}))

    meta = meta if meta is not None else chunk_metadata(chunk, spec, mesh)
    mesh_index = b.add("meshes", {"name": f"chunk {chunk.key.path()}", "primitives": primitives})
    ox, oy = mesh.origin
    chunk_node = {"name": f"chunk {chunk.key.path()}", "mesh": mesh_index,
                  "translation": [float(ox), 0.0, float(-oy)], "extras": {"worldstream": meta}}
    if children:
        chunk_node["children"] = children
    node = b.add("nodes", chunk_node)
    b.doc["scenes"] = [{"nodes": [node]}]
    b.doc["scene"] = 0
    return b.glb()


def _vertex_ids(b: GltfBuilder, feature: np.ndarray) -> int:
    """(V,) feature ids -> a `_FEATURE_ID_0` accessor: UNSIGNED_SHORT in 4-byte rows (vertex
    attributes need 4-byte aligned elements), never normalised, so nothing can quantise them."""
    ids = feature_id_array(feature)
    if ids.dtype.kind == "f":
        return b.accessor(ids, ARRAY_BUFFER)
    return b.raw_accessor(b.view(padded_rows(ids, 4).tobytes(), ARRAY_BUFFER, stride=4), UNSIGNED_SHORT, len(ids), "SCALAR")


def _to_gltf(enu: np.ndarray) -> np.ndarray:
    """(V, 3) ENU -> (V, 3) float32 glTF (E, U, -N)."""
    return np.stack([enu[:, 0], enu[:, 2], -enu[:, 1]], axis=1).astype(np.float32)


def _property_tables(b: GltfBuilder, mesh: ChunkMesh) -> tuple[int, int | None, int | None]:
    """Write the schema and the property tables; returns the indices of the land_cover, building
    (or None) and tree (or None) tables."""
    schema = {"id": "worldstream", "name": "worldstream annotations", "version": "1", "classes": {
        "land_cover": {"name": "Land cover class", "properties": {
            "name": {"type": "STRING", "required": True},
            "code": {"type": "SCALAR", "componentType": "UINT8", "required": True},
            "colour": {"type": "VEC3", "componentType": "UINT8", "description": "segmentation colour (sRGB)"}}},
        "building": {"name": "Building", "properties": {
            "id": {"type": "SCALAR", "componentType": "UINT32", "required": True,
                   "description": "world-stable building id (also in instances.png)"},
            "height": {"type": "SCALAR", "componentType": "FLOAT32", "description": "roof minus base, metres"},
            "base_height": {"type": "SCALAR", "componentType": "FLOAT32", "description": "wall base, metres ENU"},
            "roof_height": {"type": "SCALAR", "componentType": "FLOAT32", "description": "flat roof, metres ENU"},
            "floors": {"type": "SCALAR", "componentType": "UINT16"}}},
        "tree": {"name": "Tree", "properties": {
            "id": {"type": "SCALAR", "componentType": "UINT32", "required": True,
                   "description": "world-stable tree id (bit 31 set; also in instances.png)"},
            "height": {"type": "SCALAR", "componentType": "FLOAT32", "description": "metres"},
            "crown_radius": {"type": "SCALAR", "componentType": "FLOAT32", "description": "metres"},
            "kind": {"type": "ENUM", "enumType": "tree_kind"},
            "setting": {"type": "ENUM", "enumType": "tree_setting"}}}},
        "enums": {
            "tree_kind": {"valueType": "UINT8", "values": [{"name": k, "value": i} for i, k in enumerate(TREE_KINDS)]},
            "tree_setting": {"valueType": "UINT8",
                             "values": [{"name": k, "value": i} for i, k in enumerate(TREE_SETTINGS)]}}}
    codes = sorted(CLASSES)
    names = [CLASSES[c].encode() for c in codes]
    offsets = np.cumsum([0] + [len(n) for n in names]).astype(np.uint32)
    tables = [{"name": "land_cover", "class": "land_cover", "count": len(codes), "properties": {
        "name": {"values": b.view(b"".join(names)), "stringOffsets": b.view(offsets.tobytes()),
                 "stringOffsetType": "UINT32"},
        "code": {"values": b.view(np.array(codes, dtype=np.uint8).tobytes())},
        "colour": {"values": b.view(np.array([PALETTE[c] for c in codes], dtype=np.uint8).tobytes())}}}]
    building_table = None
    if mesh.buildings:
        bl = mesh.buildings
        base = np.array([x.base for x in bl], dtype=np.float32)
        roof = np.array([x.roof for x in bl], dtype=np.float32)
        tables.append({"name": "building", "class": "building", "count": len(bl), "properties": {
            "id": {"values": b.view(np.array([x.id for x in bl], dtype="<u4").tobytes())},
            "height": {"values": b.view((roof - base).astype("<f4").tobytes())},
            "base_height": {"values": b.view(base.astype("<f4").tobytes())},
            "roof_height": {"values": b.view(roof.astype("<f4").tobytes())},
            "floors": {"values": b.view(np.array([x.floors for x in bl], dtype="<u2").tobytes())}}})
        building_table = 1
    else:  # a class without a table would promise rows that readers cannot find
        del schema["classes"]["building"]
    tree_table = None
    if mesh.trees:
        tr = mesh.trees
        tables.append({"name": "tree", "class": "tree", "count": len(tr), "properties": {
            "id": {"values": b.view(np.array([t.id for t in tr], dtype="<u4").tobytes())},
            "height": {"values": b.view(np.array([t.height for t in tr], dtype="<f4").tobytes())},
            "crown_radius": {"values": b.view(np.array([t.crown_radius for t in tr], dtype="<f4").tobytes())},
            "kind": {"values": b.view(np.array([TREE_KINDS.index(t.kind) for t in tr], dtype=np.uint8).tobytes())},
            "setting": {"values": b.view(np.array([TREE_SETTINGS.index(t.setting) for t in tr], dtype=np.uint8).tobytes())}}})
        tree_table = len(tables) - 1
    else:
        del schema["classes"]["tree"]
        del schema["enums"]
    b.doc.setdefault("extensions", {})["EXT_structural_metadata"] = {"schema": schema, "propertyTables": tables}
    return 0, building_table, tree_table


def export_glb(chunk: Chunk, spec: WorldSpec, mesh: ChunkMesh, compress: bool = False) -> dict[str, bytes]:
    """{"mesh.glb": GLB, "tile.json": chunk metadata} for one chunk (`compress`: see chunk_glb)."""
    meta = chunk_metadata(chunk, spec, mesh)
    glb = chunk_glb(chunk, spec, mesh, meta, compress)
    meta = dict(meta, glb_bytes=len(glb))
    return {"mesh.glb": glb, "tile.json": (json.dumps(meta, indent=1) + "\n").encode()}
