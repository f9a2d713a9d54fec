"""GLB chunks and 3D Tiles: Khronos validator, trimesh reload, annotations, frames, tilesets,
a real 3D Tiles client in headless Chromium, and the generate command."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from worldstream.core import ChunkKey, frames
from worldstream.core.settlements import footprint_local
from worldstream.core.biomes import CLASSES
from worldstream.core.errors import WorldstreamError
from worldstream.exporters.chunk_glb import export_glb
from worldstream.exporters.chunk_mesh import NULL_FEATURE, MeshOptions, chunk_mesh
from worldstream.exporters.formats import export_chunk, parse_formats
from worldstream.exporters.gltf import accessor_array, read_glb
from worldstream.exporters.tiles import (ROOT_LEVELS, SUBTREE_LEVELS, explicit_tileset, geometric_error,
                                         implicit_index, implicit_key, implicit_root_error, implicit_subtree,
                                         implicit_tileset)

from .. import browser

REPO = Path(__file__).resolve().parents[2]
KEYS = [ChunkKey(6, 20, -20), ChunkKey(5, -15, 20), ChunkKey(4, 3, -4), ChunkKey(3, 1, -2), ChunkKey(0, 0, 0)]
TOWN = ChunkKey(4, 3, -4)


@pytest.fixture(scope="module")
def exported(world):
    out = {}
    for k in KEYS:
        c = world.chunk(k)
        m = chunk_mesh(c, world.spec)
        out[k] = (c, m, export_glb(c, world.spec, m))
    return out


# ------------------------------------------------------------------------ Khronos validator
def validator_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: the Khronos glTF validator (npm gltf-validator) cannot run"
    if not (REPO / "node_modules" / "gltf-validator").is_dir():
        return "node_modules/gltf-validator is missing: run ./install.sh (npm install)"
    return None


# Infos the validator reports because it does not implement the two metadata extensions: it
# cannot validate them, so the buffer views / texture that only they reference look unused.
EXPECTED_INFOS = {"UNSUPPORTED_EXTENSION", "UNUSED_OBJECT", "IMAGE_NPOT_DIMENSIONS"}


def test_khronos_validator_reports_no_errors_or_warnings(exported, tmp_path):
    assert_valid_glbs({f"{k.level}_{k.x}_{k.y}": files["mesh.glb"] for k, (_, _, files) in exported.items()}, tmp_path)


def assert_valid_glbs(glbs: dict[str, bytes], folder: Path) -> None:
    """The Khronos validator on each GLB (name -> bytes): 0 errors, 0 warnings, and only the
    infos its missing extension support explains (skips when the validator is not installed)."""
    reason = validator_ready()
    if reason:
        pytest.skip(reason)
    paths = []
    for name, glb in glbs.items():
        p = folder / f"{name}.glb"
        p.write_bytes(glb)
        paths.append(str(p))
    run = subprocess.run(["node", str(REPO / "tests" / "js" / "validate_gltf.mjs"), *paths], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    for report in json.loads(run.stdout):
        issues = report["issues"]
        msgs = [(m["code"], m.get("pointer"), m["message"]) for m in issues["messages"]]
        assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, (report["path"], msgs)
        assert {m[0] for m in msgs} <= EXPECTED_INFOS, msgs
        check_unvalidated_parts(msgs, report["path"])


UNVALIDATED_EXTENSIONS = ("EXT_mesh_features", "EXT_structural_metadata", "EXT_mesh_gpu_instancing",
                          "EXT_instance_features")


def check_unvalidated_parts(msgs, path) -> None:
    """The validator skips the metadata and instancing extensions, so what only they reference
    looks unused to it: buffer views, the class texture, and the instancing accessors (checked by
    hand in tests/exporters/test_trees_export.py)."""
    doc, _ = read_glb(Path(path).read_bytes())
    instancing = {a for n in doc["nodes"]
                  for a in n.get("extensions", {}).get("EXT_mesh_gpu_instancing", {}).get("attributes", {}).values()}
    for code, pointer, message in msgs:
        if code == "UNSUPPORTED_EXTENSION":
            assert any(e in message for e in UNVALIDATED_EXTENSIONS), message
        if code == "UNUSED_OBJECT":
            if pointer.startswith("/accessors/"):
                assert int(pointer.split("/")[2]) in instancing, pointer
            else:
                assert pointer.startswith("/bufferViews/") or pointer.startswith("/textures/"), pointer


# ------------------------------------------------------------------------ reload and contents
def test_glb_reloads_in_trimesh_with_same_vertices_and_bounds(exported):
    """The chunk node's mesh as trimesh reads it (trimesh does not apply EXT_mesh_gpu_instancing:
    the tree nodes are left out here and checked in tests/exporters/test_trees_export.py)."""
    for k, (c, m, files) in exported.items():
        scene = trimesh.load(io.BytesIO(files["mesh.glb"]), file_type="glb", force="scene", process=False)
        chunk_nodes = [n for n in scene.graph.nodes_geometry if not n.startswith("trees ")]
        parts = []
        for node in chunk_nodes:
            transform, name = scene.graph[node]
            parts.append(scene.geometry[name].copy().apply_transform(transform))
        n_verts = sum(len(g.vertices) for g in parts)
        assert n_verts == sum(len(p.positions) for p in m.primitives)
        lo = np.min([g.bounds[0] for g in parts], axis=0)  # glTF frame, node translation applied
        hi = np.max([g.bounds[1] for g in parts], axis=0)
        for t in m.trees:  # the box covers the tree models too: crown radius around, trunk foot to top
            corners = frames.enu_to_gltf(np.array([[t.x - t.crown_radius, t.y - t.crown_radius, t.ground - 0.02 * t.height],
                                                   [t.x + t.crown_radius, t.y + t.crown_radius, t.ground + t.height]]))
            lo, hi = np.minimum(lo, corners.min(axis=0)), np.maximum(hi, corners.max(axis=0))
        ox, oy = m.origin
        enu_lo = m.box_min + [ox, oy, 0]
        enu_hi = m.box_max + [ox, oy, 0]
        g_lo = np.minimum(frames.enu_to_gltf(enu_lo), frames.enu_to_gltf(enu_hi))
        g_hi = np.maximum(frames.enu_to_gltf(enu_lo), frames.enu_to_gltf(enu_hi))
        tol = 1e-6 * max(1.0, np.abs(g_hi).max())
        np.testing.assert_allclose(lo, g_lo, atol=max(tol, 1e-3))
        np.testing.assert_allclose(hi, g_hi, atol=max(tol, 1e-3))


def test_glb_materials_textures_and_normals(exported):
    doc, _ = read_glb(exported[TOWN][2]["mesh.glb"])
    kinds = {mat["name"] for mat in doc["materials"]}
    assert {"terrain", "roof", "facade"} <= kinds
    for mat in doc["materials"]:
        pbr = mat["pbrMetallicRoughness"]
        assert "baseColorTexture" in pbr and 0 <= pbr["roughnessFactor"] <= 1
    mimes = {img["name"]: img["mimeType"] for img in doc["images"]}
    assert mimes == {"ortho": "image/jpeg", "facade": "image/jpeg", "semantic_class": "image/png"}
    for tex in doc["textures"]:
        assert "sampler" in tex
    semantic_sampler = doc["samplers"][doc["textures"][[t["name"] for t in doc["textures"]].index("semantic_class")]["sampler"]]
    assert semantic_sampler["magFilter"] == semantic_sampler["minFilter"] == 9728  # NEAREST for ids
    for prim in doc["meshes"][0]["primitives"]:
        assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(prim["attributes"])


def test_annotations_inside_the_glb_match_the_world(exported):
    c, m, files = exported[TOWN]
    doc, binary = read_glb(files["mesh.glb"])
    meta = doc["extensions"]["EXT_structural_metadata"]
    assert set(meta["schema"]["classes"]) == {"land_cover", "building"}
    land, buildings = meta["propertyTables"]
    assert land["count"] == len(CLASSES)

    def view(i):
        v = doc["bufferViews"][i]
        return binary[v["byteOffset"]:v["byteOffset"] + v["byteLength"]]

    offsets = np.frombuffer(view(land["properties"]["name"]["stringOffsets"]), "<u4")
    names = view(land["properties"]["name"]["values"])
    decoded = [names[offsets[i]:offsets[i + 1]].decode() for i in range(land["count"])]
    codes = np.frombuffer(view(land["properties"]["code"]["values"]), np.uint8)
    assert dict(zip(codes.tolist(), decoded)) == CLASSES

    ids = np.frombuffer(view(buildings["properties"]["id"]["values"]), "<u4")
    heights = np.frombuffer(view(buildings["properties"]["height"]["values"]), "<f4")
    assert ids.tolist() == [b.id for b in m.buildings]
    np.testing.assert_allclose(heights, [b.roof - b.base for b in m.buildings], rtol=1e-5)
    # every drawn building is the one the instance raster shows (its centre lies in this chunk)
    assert len(ids) > 100 and set(ids.tolist()) <= set(np.unique(c.instances).tolist())

    # per-vertex feature ids on the facade point at the building whose footprint holds the vertex
    prim = next(p for p in doc["meshes"][0]["primitives"] if doc["materials"][p["material"]]["name"] == "facade")
    fids = prim["extensions"]["EXT_mesh_features"]["featureIds"]
    assert fids[0]["attribute"] == 0 and fids[0]["propertyTable"] == 1
    rows = accessor_array(doc, binary, prim["attributes"]["_FEATURE_ID_0"]).astype(np.int64)
    pos = frames.gltf_to_enu(accessor_array(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64))
    pos[:, :2] += m.origin
    for i in range(0, len(rows), max(1, len(rows) // 200)):
        if rows[i] == NULL_FEATURE:
            continue
        b = m.buildings[rows[i]]
        s, t, w, h = footprint_local(b, pos[i, 0], pos[i, 1])
        assert -1e-2 <= s <= w + 1e-2 and -1e-2 <= t <= h + 1e-2
    # the terrain's texture feature ids index the land-cover table with the semantic raster
    terrain = next(p for p in doc["meshes"][0]["primitives"] if doc["materials"][p["material"]]["name"] == "terrain")
    tex_fid = terrain["extensions"]["EXT_mesh_features"]["featureIds"][0]
    assert tex_fid["propertyTable"] == 0 and tex_fid["texture"]["channels"] == [0]
    img = doc["images"][doc["textures"][tex_fid["texture"]["index"]]["source"]]
    from PIL import Image
    v = doc["bufferViews"][img["bufferView"]]
    ids_img = np.asarray(Image.open(io.BytesIO(binary[v["byteOffset"]:v["byteOffset"] + v["byteLength"]])))
    np.testing.assert_array_equal(ids_img, c.semantic)


def test_a_known_point_through_every_frame(exported, world):
    spec = world.spec
    c, m, files = exported[TOWN]
    b = m.buildings[0]
    enu = np.array([b.footprint[0][0], b.footprint[0][1], b.roof])  # a roof corner, world ENU
    doc, binary = read_glb(files["mesh.glb"])
    node = doc["nodes"][doc["scenes"][0]["nodes"][0]]
    prim = next(p for p in doc["meshes"][0]["primitives"] if doc["materials"][p["material"]]["name"] == "roof")
    local = accessor_array(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    gltf_world = local + node["translation"]
    expected_gltf = frames.enu_to_gltf(enu)
    assert np.abs(gltf_world - expected_gltf).max(axis=1).min() < 1e-3  # the corner is a vertex
    np.testing.assert_allclose(expected_gltf, [enu[0], enu[2], -enu[1]])
    # Unreal (glTFRuntime, cm, z up): X north, Y east, Z up
    np.testing.assert_allclose(frames.gltf_to_unreal(expected_gltf), frames.enu_to_unreal(enu))
    np.testing.assert_allclose(frames.enu_to_unreal(enu), [enu[1] * 100, enu[0] * 100, enu[2] * 100])
    # AirSim NED relative to a PlayerStart
    start = np.array([10.0, 20.0, 5.0])
    np.testing.assert_allclose(frames.enu_to_airsim(enu, start), [enu[1] - 20, enu[0] - 10, -(enu[2] - 5)])
    # 3D Tiles: y-up content -> z-up tile frame (= world ENU) -> root transform -> ECEF
    tiles = frames.gltf_to_tiles(expected_gltf)
    np.testing.assert_allclose(tiles, enu)
    root = np.array(explicit_tileset(spec, {TOWN: json.loads(files["tile.json"])})["root"]["transform"]).reshape(4, 4).T
    ecef = root @ np.r_[tiles, 1.0]
    lat, lon, alt = frames.enu_to_geodetic(enu, spec.origin)
    np.testing.assert_allclose(ecef[:3], frames.geodetic_to_ecef(lat, lon, alt), atol=1e-3)
    meta = node["extras"]["worldstream"]
    np.testing.assert_allclose(meta["origin_unreal_cm"], frames.enu_to_unreal([*m.origin, 0.0]))


def test_glb_bytes_are_deterministic_across_processes(exported, world):
    k = ChunkKey(6, 20, -20)
    code = ("import sys,hashlib; from worldstream.core import World, WorldSpec, ChunkKey; "
            "from worldstream.exporters.formats import export_chunk; "
            "s=WorldSpec.from_json(sys.argv[1]); w=World(s); f=export_chunk(w.chunk(ChunkKey.parse(sys.argv[2])), s, ('glb',)); "
            "print(hashlib.sha256(f['mesh.glb']).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code, world.spec.to_json(), k.path()], capture_output=True, text=True,
                         timeout=300, check=True).stdout.strip()
    import hashlib
    assert out == hashlib.sha256(exported[k][2]["mesh.glb"]).hexdigest()
    assert export_chunk(world.chunk(TOWN), world.spec, ("glb",))["mesh.glb"] == exported[TOWN][2]["mesh.glb"]


def test_formats_registry_rejects_unknown_names():
    assert parse_formats("glb, sidecars,glb") == ("glb", "sidecars")
    with pytest.raises(WorldstreamError, match="expected a comma-separated list"):
        parse_formats("glb,obj")


# ------------------------------------------------------------------------ 3D Tiles
def test_explicit_tileset_boxes_enclose_content_and_errors_come_from_meshes(world, exported):
    spec = world.spec
    parent = ChunkKey(5, -15, 20)
    keys = [parent, *parent.children()]
    metas = {k: json.loads(export_chunk(world.chunk(k), spec, ("glb",))["tile.json"]) for k in keys}
    ts = explicit_tileset(spec, metas)
    assert ts["asset"]["version"] == "1.1"
    root = ts["root"]
    assert len(root["transform"]) == 16 and root["refine"] == "REPLACE"
    tile = root["children"][0]
    assert tile["content"]["uri"] == f"chunks/{parent.path()}/mesh.glb" and len(tile["children"]) == 4

    def encloses(box, lo, hi):
        c, h = np.array(box[:3]), np.array([box[3], box[7], box[11]])
        return (c - h <= np.array(lo) + 1e-6).all() and (c + h >= np.array(hi) - 1e-6).all()

    assert encloses(tile["boundingVolume"]["box"], *(metas[parent][k] for k in ("enu_min", "enu_max")))
    for child, k in zip(tile["children"], parent.children()):
        assert encloses(child["boundingVolume"]["box"], metas[k]["enu_min"], metas[k]["enu_max"])
        assert encloses(tile["boundingVolume"]["box"], metas[k]["enu_min"], metas[k]["enu_max"])
        assert child["geometricError"] == pytest.approx(geometric_error(metas[k]["geometric_error"], metas[k]["resolution_m"]))
        assert child["geometricError"] < tile["geometricError"]
    # a parent with a missing child stays a leaf (REPLACE would open a hole)
    partial = {k: v for k, v in metas.items() if k != parent.children()[3]}
    assert "children" not in explicit_tileset(spec, partial)["root"]["children"][0]


@pytest.mark.parametrize("key", [ChunkKey(0, 0, 0), ChunkKey(0, -512, 511), ChunkKey(6, -32768, 32767),
                                 ChunkKey(3, 5, -7)])
def test_implicit_indices_round_trip_and_bounds_match(world, key):
    spec = world.spec
    d, x, y = implicit_index(key)
    assert d == key.level + ROOT_LEVELS and x >= 0 and y >= 0
    assert implicit_key(d, x, y) == key
    root_box = implicit_tileset(spec)["root"]["boundingVolume"]["box"]
    size = 2 * root_box[3] / (1 << d)
    west = root_box[0] - root_box[3] + x * size
    south = root_box[1] - root_box[7] + y * size
    assert (west, south, west + size, south + size) == pytest.approx(key.bounds(spec))


def test_implicit_tileset_limits_and_subtrees(world):
    spec = world.spec
    with pytest.raises(WorldstreamError, match="outside the implicit root box"):
        implicit_index(ChunkKey(0, 512, 0))
    with pytest.raises(WorldstreamError, match="no content"):
        implicit_key(3, 0, 0)
    ts = implicit_tileset(spec)
    start = ts["extras"]["worldstream"]["start"]  # where a client should look first: above the origin
    assert (start["latitude"], start["longitude"]) == (spec.origin.lat, spec.origin.lon) and start["height"] > 100
    imp = ts["root"]["implicitTiling"]
    assert imp["availableLevels"] == ROOT_LEVELS + spec.levels and imp["subtreeLevels"] == SUBTREE_LEVELS
    for level in range(0, ROOT_LEVELS + spec.levels, SUBTREE_LEVELS):
        data = implicit_subtree(spec, level)
        magic, version, jlen, blen = struct.unpack_from("<4sIQQ", data)
        assert magic == b"subt" and version == 1 and len(data) == 24 + jlen + blen and jlen % 8 == 0
        sub = json.loads(data[24:24 + jlen])
        levels_here = min(SUBTREE_LEVELS, ROOT_LEVELS + spec.levels - level)
        if levels_here == SUBTREE_LEVELS:
            assert sub["tileAvailability"] == {"constant": 1}
            assert sub["contentAvailability"][0]["constant"] == (1 if level >= ROOT_LEVELS else 0)
        else:  # the last subtree stops at the finest level
            bits = np.unpackbits(np.frombuffer(data[24 + jlen:], np.uint8), bitorder="little")
            n_tiles = (4 ** levels_here - 1) // 3
            assert bits[:n_tiles].all() and not bits[n_tiles:].any()
            assert sub["tileAvailability"]["availableCount"] == n_tiles
    with pytest.raises(WorldstreamError):
        implicit_subtree(spec, 3)


def test_implicit_geometric_errors_bound_measured_errors(exported, world):
    root = implicit_root_error(world.spec)
    for k, (c, m, _) in exported.items():
        level_error = root / (1 << (k.level + ROOT_LEVELS))
        assert geometric_error(m.geometric_error, c.resolution) <= level_error + 1e-9


# ------------------------------------------------------------------------ a real client
def _browser_skip() -> str | None:
    if browser.chromium() is None:
        return "chromium is not installed (./install.sh installs Debian's chromium where apt-get works)"
    if not browser.node_modules_ready():
        return "node_modules lacks three / 3d-tiles-renderer: run ./install.sh (npm install)"
    return None


def _camera(spec, eye_enu, target_enu):
    m = frames.enu_to_ecef_matrix(spec.origin.lat, spec.origin.lon, spec.origin.alt)
    ecef = lambda p: (m @ np.r_[p, 1.0])[:3]  # noqa: E731
    return ecef(eye_enu), ecef(target_enu), m[:3, 2]


def _check_report(report):
    assert report["done"] and not report["errors"], report["errors"]
    assert report["loadedModels"] >= 1
    with_meta = [x for x in report["models"] if "land_cover" in x["tables"]]
    assert with_meta and with_meta[0]["landCover4"] == CLASSES[4]
    if report["rendered"]:  # WebGL available: the frame shows terrain, not the clear colour
        px = np.array(report["pixels"]).reshape(-1, 4)[:, :3]
        assert (px.sum(axis=1) > 30).mean() >= 0.5, px


def test_explicit_tileset_loads_in_3d_tiles_renderer(tmp_path, world):
    reason = _browser_skip()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "w"
    run = subprocess.run([sys.executable, "-m", "worldstream", "generate", "--seed", str(world.spec.seed),
                          "--center", "3000,-3000", "--radius", "150", "--levels", "5:6", "--format", "tiles",
                          "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    cam, target, up = _camera(world.spec, [3000, -3300, 700], [3000, -3000, 300])
    report = browser.load_in_browser({"/w/": browser.files_under(out)}, "/w/tileset.json", cam, target, up, seconds=60)
    _check_report(report)
    assert any("building" in x["tables"] for x in report["models"])
    served = {p for p in report["requests"] if p.endswith(".glb")}
    assert len(served) == report["loadedModels"]


def test_implicit_tileset_served_on_demand_loads_in_3d_tiles_renderer(world):
    reason = _browser_skip()
    if reason:
        pytest.skip(reason)
    from worldstream.core import World, WorldSpec

    spec = WorldSpec(seed=world.spec.seed, chunk_size=64, levels=5)  # 4 km level-0 chunks, 64 px: quick
    small = World(spec, cache_chunks=256)
    options = MeshOptions()

    def serve(rel: str):
        if rel == "tileset.json":
            return json.dumps(implicit_tileset(spec, options)).encode(), "application/json"
        parts = rel.replace(".", "/").split("/")
        if parts[0] == "subtrees":
            return implicit_subtree(spec, int(parts[1])), "application/octet-stream"
        if parts[0] == "implicit":
            key = implicit_key(int(parts[1]), int(parts[2]), int(parts[3]))
            return export_chunk(small.chunk(key), spec, ("glb",), options)["mesh.glb"], "model/gltf-binary"
        return None

    cam, target, up = _camera(spec, [300.0, -300.0, 2500.0], [300.0, 0.0, 300.0])
    report = browser.load_in_browser({"/imp/": serve}, "/imp/tileset.json", cam, target, up, seconds=90,
                                     siblings=False)
    _check_report(report)
    levels = {int(p.split("/")[3]) - ROOT_LEVELS for p in report["requests"] if p.startswith("/imp/implicit/")}
    assert len(levels) >= 2, levels  # the client refined through the quadtree
    assert max(levels) < spec.levels


# ------------------------------------------------------------------------ command line
def test_generate_writes_glb_and_tileset_and_adds_missing_formats(tmp_path):
    out = tmp_path / "w"
    base = [sys.executable, "-m", "worldstream", "generate", "--seed", "3", "--center", "100,100", "--radius", "60",
            "--levels", "6", "--out", str(out), "--quiet"]
    r = subprocess.run(base + ["--format", "glb,tiles"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    chunks = sorted(out.glob("chunks/6/*/*"))
    assert chunks and all((c / "mesh.glb").exists() and not (c / "ortho.png").exists() for c in chunks)
    ts = json.loads((out / "tileset.json").read_text())
    assert len(ts["root"]["children"]) == len(chunks)
    glb_before = (chunks[0] / "mesh.glb").read_bytes()
    r = subprocess.run(base + ["--format", "sidecars,glb"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert all((c / "ortho.png").exists() for c in chunks)
    assert (chunks[0] / "mesh.glb").read_bytes() == glb_before
    r = subprocess.run(base + ["--format", "obj"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "unknown export format" in r.stderr


def test_read_glb_rejects_malformed_bytes(exported):
    glb = exported[ChunkKey(6, 20, -20)][2]["mesh.glb"]
    for bad, msg in ((b"", "shorter"), (b"glTF" + b"\0" * 20, "not a glTF 2.0 binary"),
                     (glb[:-10], "truncated")):
        with pytest.raises(ValueError, match=msg):
            read_glb(bad)
