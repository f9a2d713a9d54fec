"""Compressed chunk GLBs (MeshOptions(compress=True), generate --compress): they pass the Khronos
validator, decode (meshopt) back to the uncompressed chunk's content — feature ids, property
tables, the feature-ID texture and tree instances identical, positions within the quantisation
step — are smaller, byte-identical run to run, load in three.js, and a missing codec package says
what to install."""

from __future__ import annotations

import json
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from worldstream.core import ChunkKey
from worldstream.core.errors import WorldstreamError
from worldstream.exporters.chunk_glb import export_glb
from worldstream.exporters.chunk_mesh import MeshOptions, chunk_mesh
from worldstream.exporters.gltf import accessor_array, read_glb

from .. import browser
from . import test_glb_tiles
from .test_glb_tiles import assert_valid_glbs

meshopt = pytest.importorskip("meshopt", reason="pip install 'worldstream[compress]' (the meshopt package)")
from worldstream.exporters.compress import decode_glb, position_step  # noqa: E402

# a town (buildings, facade atlas, level 4), a forest edge (instanced trees, level 6), the same
# forest with merged trees (per-vertex tree ids), open country at level 0
CASES = {"town": (ChunkKey(4, 3, -4), True), "forest": (ChunkKey(6, 3, 5), True),
         "forest_merged": (ChunkKey(6, 3, 5), False), "level0": (ChunkKey(0, 0, 0), True)}


@pytest.fixture(scope="module")
def glbs(world):
    out = {}
    for name, (key, instanced) in CASES.items():
        c = world.chunk(key)
        m = chunk_mesh(c, world.spec, MeshOptions(instanced_trees=instanced))
        out[name] = (export_glb(c, world.spec, m)["mesh.glb"], export_glb(c, world.spec, m, compress=True)["mesh.glb"])
    return out


def test_compressed_glbs_pass_the_khronos_validator(glbs, tmp_path, monkeypatch):
    # the validator does not decode EXT_meshopt_compression either: it reports it unsupported (an info)
    monkeypatch.setattr(test_glb_tiles, "UNVALIDATED_EXTENSIONS",
                        test_glb_tiles.UNVALIDATED_EXTENSIONS + ("EXT_meshopt_compression",))
    assert_valid_glbs({name: packed for name, (_, packed) in glbs.items()}, tmp_path)


def test_extensions_and_what_stays_uncompressed(glbs):
    for name, (plain, packed) in glbs.items():
        doc, binary = read_glb(packed)
        assert {"EXT_meshopt_compression", "KHR_mesh_quantization", "EXT_texture_webp"} <= set(doc["extensionsRequired"])
        assert "EXT_meshopt_compression" not in read_glb(plain)[0]["extensionsUsed"]
        assert doc["buffers"][1]["extensions"]["EXT_meshopt_compression"]["fallback"] is True
        images = {t["name"]: doc["images"][t.get("source", t.get("extensions", {}).get("EXT_texture_webp", {}).get("source"))]
                  for t in doc["textures"]}
        assert images["ortho"]["mimeType"] == "image/webp"
        # the feature-ID texture: the same lossless PNG, a core glTF texture
        pdoc, pbin = read_glb(plain)
        sem = next(t for t in doc["textures"] if t["name"] == "semantic_class")
        psem = next(t for t in pdoc["textures"] if t["name"] == "semantic_class")
        assert doc["images"][sem["source"]]["mimeType"] == "image/png"
        assert _view_bytes(doc, binary, doc["images"][sem["source"]]["bufferView"]) == \
            _view_bytes(pdoc, pbin, pdoc["images"][psem["source"]]["bufferView"])
        # property tables: the same JSON and the same bytes, in plain views on 8-byte boundaries
        meta, pmeta = doc["extensions"]["EXT_structural_metadata"], pdoc["extensions"]["EXT_structural_metadata"]
        assert meta["schema"] == pmeta["schema"]
        for table, ptable in zip(meta["propertyTables"], pmeta["propertyTables"], strict=True):
            assert table["count"] == ptable["count"] and table["class"] == ptable["class"]
            for prop, pprop in zip(table["properties"].values(), ptable["properties"].values(), strict=True):
                for key in ("values", "stringOffsets"):
                    if key in pprop:
                        view = doc["bufferViews"][prop[key]]
                        assert "extensions" not in view and view["byteOffset"] % 8 == 0, (name, key)
                        assert _view_bytes(doc, binary, prop[key]) == _view_bytes(pdoc, pbin, pprop[key])


def _view_bytes(doc: dict, binary: bytes, index: int) -> bytes:
    v = doc["bufferViews"][index]
    return binary[v.get("byteOffset", 0):v.get("byteOffset", 0) + v["byteLength"]]


def _primitives(doc: dict) -> list[dict]:
    return [p for m in doc["meshes"] for p in m["primitives"]]


def test_decoded_geometry_matches_the_uncompressed_chunk(glbs):
    """Per primitive, against the plain GLB in meshopt's vertex order (the writer's reorder is
    deterministic, so the test repeats it): feature ids identical integers, positions within the
    quantisation step, normals within 1.5 degrees, uv within half a 16-bit step, the same
    triangles (the index codec may rotate a triangle's corners, never its winding)."""
    for name, (plain, packed) in glbs.items():
        pdoc, pbin = read_glb(plain)
        doc, binary = decode_glb(packed)
        assert len(_primitives(doc)) == len(_primitives(pdoc))
        with_ids = 0
        for p, q in zip(_primitives(pdoc), _primitives(doc)):
            tris = accessor_array(pdoc, pbin, p["indices"]).astype(np.uint32)
            new_tris, remap, unique = meshopt.reorder_mesh(tris, triangles=True, optsize=False)
            order = np.empty(unique, np.int64)
            order[remap] = np.arange(len(remap))
            got = accessor_array(doc, binary, q["indices"]).reshape(-1, 3)
            assert _canonical(got) == _canonical(new_tris.reshape(-1, 3)), name
            a, b = p["attributes"], q["attributes"]
            assert a.keys() == b.keys()
            pos = accessor_array(pdoc, pbin, a["POSITION"])[order]
            qpos = accessor_array(doc, binary, b["POSITION"])
            assert (np.abs(qpos - pos) <= np.array([position_step(np.abs(pos[:, i]).max()) for i in range(3)])).all()
            acc = doc["accessors"][b["POSITION"]]
            np.testing.assert_array_equal(acc["min"], qpos.min(axis=0))
            np.testing.assert_array_equal(acc["max"], qpos.max(axis=0))
            nrm = accessor_array(doc, binary, b["NORMAL"]).astype(np.float64) / 127.0
            nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
            cos = (nrm * accessor_array(pdoc, pbin, a["NORMAL"])[order]).sum(axis=1)
            assert cos.min() > np.cos(np.radians(1.5)), (name, np.degrees(np.arccos(cos.min())))
            if "TEXCOORD_0" in a:
                uv = accessor_array(doc, binary, b["TEXCOORD_0"])
                ref = accessor_array(pdoc, pbin, a["TEXCOORD_0"])[order]
                if doc["accessors"][b["TEXCOORD_0"]]["componentType"] == 5123:  # normalised UNSIGNED_SHORT
                    assert np.abs(uv / 65535.0 - ref).max() <= 0.5 / 65535 + 1e-7
                else:  # uv outside 0..1 (roofs across the chunk edge) stay exact floats
                    assert ref.min() < 0 or ref.max() > 1
                    np.testing.assert_array_equal(uv, ref)
            if "_FEATURE_ID_0" in a:
                acc = doc["accessors"][b["_FEATURE_ID_0"]]
                assert acc["componentType"] == 5123 and not acc.get("normalized", False)  # UNSIGNED_SHORT integers
                ids = accessor_array(pdoc, pbin, a["_FEATURE_ID_0"])[order]
                np.testing.assert_array_equal(accessor_array(doc, binary, b["_FEATURE_ID_0"]), ids.astype(np.uint16))
                assert p["extensions"] == q["extensions"]  # the same feature-id sets and property tables
                with_ids += 1
        assert with_ids or name in ("level0", "forest"), name  # buildings (town), merged trees


def _canonical(tris: np.ndarray) -> list:
    """Triangles with each rotated to start at its smallest index, sorted: equal for the same
    triangles whatever the rotation and order."""
    k = np.argmin(tris, axis=1)
    rot = np.stack([tris[np.arange(len(tris)), (k + i) % 3] for i in range(3)], axis=1)
    return sorted(map(tuple, rot.tolist()))


def test_tree_instances_read_back_identical(glbs):
    """Every tree instance (by its feature id) has the plain GLB's exact translation, rotation and scale."""
    plain, packed = glbs["forest"]
    pdoc, pbin = read_glb(plain)
    doc, binary = decode_glb(packed)
    nodes = [(n, m) for n, m in zip(pdoc["nodes"], doc["nodes"], strict=True) if "EXT_mesh_gpu_instancing" in n.get("extensions", {})]
    assert len(nodes) >= 1
    for n, m in nodes:
        assert n["translation"] == m["translation"] and n["extensions"]["EXT_instance_features"] == m["extensions"]["EXT_instance_features"]
        pa, qa = n["extensions"]["EXT_mesh_gpu_instancing"]["attributes"], m["extensions"]["EXT_mesh_gpu_instancing"]["attributes"]
        ids = accessor_array(doc, binary, qa["_FEATURE_ID_0"])
        assert ids.dtype == np.uint16
        pids = accessor_array(pdoc, pbin, pa["_FEATURE_ID_0"]).astype(np.uint16)
        # instances may come in another order (by rotation): each tree, found by its id, keeps its values
        assert len(np.unique(pids)) == len(pids) and sorted(ids.tolist()) == sorted(pids.tolist())
        where = {int(r): i for i, r in enumerate(pids)}
        order = [where[int(r)] for r in ids]
        for key in ("TRANSLATION", "ROTATION", "SCALE"):
            np.testing.assert_array_equal(accessor_array(doc, binary, qa[key]), accessor_array(pdoc, pbin, pa[key])[order])


def test_smaller_and_deterministic(glbs, world):
    sizes = {name: (len(plain), len(packed)) for name, (plain, packed) in glbs.items()}
    assert all(b < a for a, b in sizes.values()), sizes
    total = sum(a for a, _ in sizes.values()), sum(b for _, b in sizes.values())
    assert total[1] < 0.45 * total[0], sizes  # 60 %+ smaller over these chunks (measured ~72 %)
    key, instanced = CASES["forest"]
    c = world.chunk(key)
    again = export_glb(c, world.spec, chunk_mesh(c, world.spec, MeshOptions(instanced_trees=instanced)), compress=True)
    assert again["mesh.glb"] == glbs["forest"][1]


def test_missing_codec_package_says_what_to_install(world, monkeypatch):
    from worldstream.exporters.formats import export_chunk

    monkeypatch.setitem(sys.modules, "meshopt", None)  # import meshopt now raises ImportError
    with pytest.raises(WorldstreamError, match=r"meshopt package.*pip install 'worldstream\[compress\]'"):
        export_chunk(world.chunk(CASES["level0"][0]), world.spec, ("glb",), MeshOptions(compress=True))


def test_generate_compress_writes_compressed_chunks_and_refuses_mixing(tmp_path):
    from worldstream.cli import main

    out = tmp_path / "world"
    args = ["generate", "--seed", "7", "--center", "128,128", "--radius", "10", "--levels", "6:6", "--format", "glb",
            "--out", str(out), "--quiet"]  # one 1 m/px chunk
    assert main(args + ["--compress"]) == 0
    glbs = list(out.glob("chunks/6/*/*/mesh.glb"))
    assert glbs and all("EXT_meshopt_compression" in read_glb(p.read_bytes())[0]["extensionsRequired"] for p in glbs)
    assert main(args) != 0  # the folder holds compressed chunks: an uncompressed rerun would mix them


def test_serve_chunk_service_compresses_and_keeps_its_cache_one_kind(spec, tmp_path):
    """serve --compress: the chunk service exports compressed GLBs into its cache; a plain service
    then refuses that cache (it would serve both kinds)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from worldstream.unreal_bridge.chunk_service import ChunkService

    async def get() -> dict[str, bytes]:
        service = ChunkService(spec, cache_dir=tmp_path, executor=ThreadPoolExecutor(1), options=MeshOptions(compress=True))
        try:
            return await service.get(ChunkKey(6, 0, 0), ("glb",))
        finally:
            service.close()

    files = asyncio.run(get())
    assert "EXT_meshopt_compression" in read_glb(files["mesh.glb"])[0]["extensionsRequired"]
    assert (tmp_path / "chunks" / "6" / "0" / "0" / "mesh.glb").read_bytes() == files["mesh.glb"]
    with pytest.raises(WorldstreamError, match="meshopt\\+webp GLBs"):
        ChunkService(spec, cache_dir=tmp_path, executor=ThreadPoolExecutor(1))


def test_three_js_loads_compressed_chunks(glbs):
    """three.js's GLTFLoader with the MeshoptDecoder (node_modules/three) loads the compressed town
    and forest and their plain GLBs in headless Chromium: the same meshes, vertex and instance
    counts, feature ids and bounds, WebP textures decoded to the same sizes."""
    if browser.chromium() is None or not browser.node_modules_ready():
        pytest.skip("headless Chromium or node_modules (three) missing: run ./install.sh")
    files = {f"{name}_{kind}.glb": data for name in ("town", "forest") for kind, data in zip(("plain", "packed"), glbs[name])}
    routes = {"/node_modules/": browser.files_under(browser.REPO / "node_modules"),
              "/page/": browser.files_under(browser.REPO / "tests" / "js"),
              "/glb/": lambda rel: (files[rel], "model/gltf-binary") if rel in files else None}
    handler = type("Handler", (browser._Handler,), {"routes": routes, "result": {}, "done": threading.Event(),
                                                    "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        urls = ",".join(f"/glb/{f}" for f in files)
        state, _ = browser.open_page(f"http://127.0.0.1:{port}/page/glb_check.html?glbs={urls}",
                                     "window.report !== undefined", "window.report", timeout=60, size=(320, 240))
    finally:
        server.shutdown()
    assert state and not state["errors"], state
    models = state["models"]
    assert len(models) == 4
    for a, b in (models[0:2], models[2:4]):
        assert [m["name"] for m in a["meshes"]] == [m["name"] for m in b["meshes"]]
        for m, n in zip(a["meshes"], b["meshes"]):
            assert (m["vertices"], m["instances"], m["featureIds"], m["texture"]) == \
                (n["vertices"], n["instances"], n["featureIds"], n["texture"]), (b["url"], m["name"])
            np.testing.assert_allclose(m["min"], n["min"], atol=0.05)
            np.testing.assert_allclose(m["max"], n["max"], atol=0.05)
    assert any(m["featureIds"] for m in models[1]["meshes"]) and any(m["instances"] for m in models[3]["meshes"])
