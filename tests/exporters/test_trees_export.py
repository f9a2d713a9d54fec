"""Trees in the exports: instanced (EXT_mesh_gpu_instancing) and merged GLBs pass the Khronos
validator, the instancing data is well formed (checked here: the validator skips it), both forms
carry the in-memory mesh's trees (the renderer reads the instanced form), and annotations.json
lists the chunk's trees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldstream.core import ChunkKey
from worldstream.exporters.chunk_glb import export_glb
from worldstream.exporters.chunk_mesh import MeshOptions, chunk_mesh
from worldstream.exporters.gltf import accessor_array, read_glb
from worldstream.exporters.sidecars import chunk_sidecars
from worldstream.render import RenderError
from worldstream.render.scene import RenderChunk

from .test_glb_tiles import assert_valid_glbs

FOREST = ChunkKey(6, 3, 5)  # seed 7: forest edge and hedgerows, 1 m/px


@pytest.fixture(scope="module")
def forest(world):
    c = world.chunk(FOREST)
    out = {}
    for instanced in (True, False):
        m = chunk_mesh(c, world.spec, MeshOptions(instanced_trees=instanced))
        out[instanced] = (m, export_glb(c, world.spec, m)["mesh.glb"])
    return c, out


def test_instanced_and_merged_tree_glbs_validate(forest, tmp_path):
    assert_valid_glbs({f"forest_{'instanced' if instanced else 'merged'}": glb
                       for instanced, (_, glb) in forest[1].items()}, tmp_path)


def test_instancing_attributes_are_well_formed(forest):
    c, out = forest
    doc, binary = read_glb(out[True][1])
    assert {"EXT_mesh_gpu_instancing", "EXT_instance_features"} <= set(doc["extensionsUsed"])
    assert "EXT_mesh_gpu_instancing" not in doc.get("extensionsRequired", [])  # clients without it still load
    chunk_node = doc["nodes"][doc["scenes"][0]["nodes"][0]]
    children = [doc["nodes"][i] for i in chunk_node["children"]]
    tree_table = next(i for i, t in enumerate(doc["extensions"]["EXT_structural_metadata"]["propertyTables"])
                      if t["class"] == "tree")
    total = 0
    for node in children:
        at = node["extensions"]["EXT_mesh_gpu_instancing"]["attributes"]
        t = accessor_array(doc, binary, at["TRANSLATION"])
        q = accessor_array(doc, binary, at["ROTATION"])
        sc = accessor_array(doc, binary, at["SCALE"])
        rows = accessor_array(doc, binary, at["_FEATURE_ID_0"])
        assert t.shape == sc.shape == (len(rows), 3) and q.shape == (len(rows), 4)
        for name in ("TRANSLATION", "ROTATION", "SCALE"):
            acc = doc["accessors"][at[name]]
            assert acc["componentType"] == 5126 and "target" not in doc["bufferViews"][acc["bufferView"]]
        assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
        assert np.allclose(q[:, [0, 2]], 0.0)  # turns about the vertical only
        assert (sc > 0).all() and (rows == np.round(rows)).all() and rows.max() < len(c.trees)
        fid = node["extensions"]["EXT_instance_features"]["featureIds"][0]
        assert fid["propertyTable"] == tree_table and fid["attribute"] == 0
        assert fid["featureCount"] == len(np.unique(rows))
        # instance + node translation = the tree's foot in glTF (E, U, -N) relative to the chunk origin
        west, south, _, _ = c.bounds
        feet = np.array([[c.trees[int(r)].x - west, c.trees[int(r)].ground, -(c.trees[int(r)].y - south)] for r in rows])
        np.testing.assert_allclose(t + node["translation"], feet, atol=1e-3)
        np.testing.assert_allclose(sc, [[c.trees[int(r)].crown_radius, c.trees[int(r)].height,
                                         c.trees[int(r)].crown_radius] for r in rows], rtol=1e-6)
        total += len(rows)
    assert total == len(c.trees) > 300


def test_both_forms_carry_the_mesh_trees(forest):
    c, out = forest
    mesh = out[True][0]
    reference = RenderChunk.from_mesh(c, mesh).trees
    assert sum(t.triangle_count for t in reference) > 300 * 20
    assert {int(i) for t in reference for i in t.ids} == {t.id for t in c.trees}
    loaded = RenderChunk.from_glb(out[True][1], FOREST).trees  # the instances, as the renderer draws them
    assert [t.kind for t in loaded] == [t.kind for t in reference]
    for a, b in zip(reference, loaded):
        assert np.array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.translation, b.translation, atol=2e-3)  # float32 relative to the node
        np.testing.assert_allclose(a.turn, b.turn, atol=1e-6)
        np.testing.assert_allclose(a.scale, b.scale, rtol=1e-6)
    # merged: every instance expanded into plain tree_* primitives, per-vertex tree rows
    doc, binary = read_glb(out[False][1])
    prims = [p for p in doc["meshes"][0]["primitives"] if doc["materials"][p["material"]]["name"].startswith("tree_")]
    expanded = [pr for t in mesh.tree_instances for pr in t.merged()]
    assert len(prims) == len(expanded)
    for prim, (part, rows) in zip(prims, expanded):
        assert doc["materials"][prim["material"]]["name"] == "tree_" + part.material
        pos = accessor_array(doc, binary, prim["attributes"]["POSITION"])
        np.testing.assert_allclose(np.stack([pos[:, 0], -pos[:, 2], pos[:, 1]], 1), part.positions, atol=1e-6)
        assert np.array_equal(accessor_array(doc, binary, prim["attributes"]["_FEATURE_ID_0"]).reshape(-1), rows)
        assert np.array_equal(accessor_array(doc, binary, prim["indices"]).reshape(-1, 3), part.triangles)
    with pytest.raises(RenderError, match="merged"):
        RenderChunk.from_glb(out[False][1], FOREST)


def test_annotations_list_the_trees(world, forest):
    c, _ = forest
    ann = json.loads(chunk_sidecars(c, world.spec)["annotations.json"])
    assert ann["trees"] == [json.loads(json.dumps(t.to_dict())) for t in c.trees]
    first = ann["trees"][0]
    assert set(first) == {"id", "position", "height", "crown_radius", "kind", "setting"}
    assert ann["class_fractions"]["tree"] > 0.3


def test_tree_normals_point_out_of_the_crowns(forest):
    """Independent of the exporter's own maths: every tree vertex normal points away from its
    trunk's axis (sideways) or up/down away from the crown's middle, within 90 degrees."""
    c, out = forest
    parts = [pr for t in out[True][0].tree_instances for pr in t.merged()]
    assert len(parts) >= 2  # trunk and crown of every kind present
    for s, rows in parts:
        west, south, _, _ = c.bounds
        axis = np.array([[c.trees[int(r)].x - west, c.trees[int(r)].y - south,
                          c.trees[int(r)].ground + c.trees[int(r)].height * 0.6] for r in rows])
        away = s.positions.astype(np.float64) - axis
        away[:, 2] *= 0.3  # crowns are wider than deep: judge mostly by the horizontal
        assert ((away * s.normals).sum(axis=1) > -1e-3).mean() > 0.97


def test_a_chunk_without_trees_writes_no_tree_schema(world):
    c = world.chunk(ChunkKey(6, 36, -36))  # seed 7: open land without a tree
    assert c.trees == ()
    doc, _ = read_glb(export_glb(c, world.spec, chunk_mesh(c, world.spec))["mesh.glb"])
    meta = doc["extensions"]["EXT_structural_metadata"]
    assert "tree" not in meta["schema"]["classes"] and "enums" not in meta["schema"]
    assert "EXT_mesh_gpu_instancing" not in doc.get("extensionsUsed", [])
