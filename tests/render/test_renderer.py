"""The renderer against independent references: depth, classes and tree ids of the instanced chunk
GLBs it draws against a trimesh ray cast of the same chunks exported with the trees merged into
plain triangles (trimesh does not apply EXT_mesh_gpu_instancing: so the GPU's instance transforms
are checked against the exporter's CPU expansion), facade pixels against the atlas texels they
come from, and repeatability."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import trimesh

from worldstream.core import CLASS_IDS, ChunkKey, World, WorldSpec
from worldstream.exporters.chunk_mesh import MeshOptions, chunk_mesh
from worldstream.exporters.formats import export_chunk
from worldstream.render import NO_HIT_DEPTH, Intrinsics, Pose, Renderer, RenderChunk, RenderError
from worldstream.render.images import depth_vis, disparity_normalized, image_of

SPEC = WorldSpec(seed=7)
TOWN = [ChunkKey(6, x, y) for x in (10, 11) for y in (-13, -12)]  # 512 m of a hillside town at 1 m/px


@pytest.fixture(scope="module")
def town():
    world = World(SPEC, cache_chunks=16)
    chunks = [world.chunk(k) for k in TOWN]
    glbs = [export_chunk(c, SPEC, ("glb",))["mesh.glb"] for c in chunks]
    return world, chunks, glbs


@pytest.fixture(scope="module")
def merged_glbs(town):
    """The town's GLBs with the trees merged into plain triangles, for trimesh."""
    return [export_chunk(c, SPEC, ("glb",), MeshOptions(instanced_trees=False))["mesh.glb"] for c in town[1]]


def gltf_meshes(glb: bytes) -> list[tuple[str, trimesh.Trimesh]]:
    """(material name, mesh in world ENU) for every primitive, as trimesh reads the GLB."""
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene")
    out = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        g = scene.geometry[name].copy()
        g.apply_transform(transform)
        v = g.vertices
        g.vertices = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)  # glTF (E, U, -N) -> ENU
        out.append((g.visual.material.name, g))
    return out


def pixel_rays(pose: Pose, intr: Intrinsics, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Unit ENU directions through the given pixel centres."""
    body = intr.rays()[rows, cols]
    d = body @ pose.rotation.T
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def oblique_pose(world, chunks) -> Pose:
    west = min(c.bounds[0] for c in chunks)
    south = min(c.bounds[1] for c in chunks)
    east = max(c.bounds[2] for c in chunks)
    north = max(c.bounds[3] for c in chunks)
    cx, cy = (west + east) / 2, (south + north) / 2
    ground, top = world.height_at(np.array([cx, cx - 170.0]), np.array([cy, cy - 150.0]), level=6)
    eye_z = max(float(ground[0]), float(top[1])) + 90.0  # 90 m above the centre or the eye's ground
    return Pose.look_at((cx - 170.0, cy - 150.0, eye_z), (cx, cy, float(ground[0])))


def test_depth_and_classes_agree_with_a_trimesh_ray_cast_of_the_glbs(town, merged_glbs, renderer):
    world, chunks, glbs = town
    intr = Intrinsics(320, 180, 90)
    pose = oblique_pose(world, chunks)
    frame = renderer.render([RenderChunk.from_glb(g, k) for g, k in zip(glbs, TOWN)], pose, intr)
    rows, cols = np.meshgrid(np.arange(6, 180, 12), np.arange(6, 320, 12), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    dirs = pixel_rays(pose, intr, rows, cols)
    origin = np.asarray(pose.position)
    best = np.full(len(dirs), np.inf)
    kind = np.full(len(dirs), "", dtype=object)
    solid = np.full(len(dirs), np.inf)  # the nearest hit that is no tree
    for glb in merged_glbs:
        for material, mesh in gltf_meshes(glb):
            loc, ray, _ = mesh.ray.intersects_location(np.repeat(origin[None], len(dirs), 0), dirs, multiple_hits=True)
            if not len(ray):
                continue
            dist = np.linalg.norm(loc - origin, axis=1)
            for r, d in zip(ray, dist):
                if d < best[r]:
                    best[r], kind[r] = d, material
                if not material.startswith("tree_"):
                    solid[r] = min(solid[r], d)
    hit = np.isfinite(best)
    assert hit.mean() > 0.5
    planar = best[hit] * (dirs[hit] @ pose.forward)
    rendered = frame.depth_planar[rows[hit], cols[hit]].astype(np.float64)
    rel = np.abs(rendered - planar) / planar
    print(f"depth vs trimesh: {hit.sum()} pixels, median relative error {np.median(rel):.2e}")
    assert np.median(rel) <= 0.01, np.median(rel)
    assert (rel < 0.05).mean() > 0.9  # pixels on a silhouette may see the surface behind
    assert (frame.depth_planar[rows[~hit], cols[~hit]] == NO_HIT_DEPTH).mean() > 0.9
    classes = frame.classes[rows[hit], cols[hit]]
    k = kind[hit]
    good = rel < 0.01  # the same surface was hit
    building = CLASS_IDS["building"]
    on_roof = good & (k == "roof")
    on_terrain = good & (k == "terrain")
    on_facade = good & (k == "facade")
    assert on_roof.sum() + on_facade.sum() > 10 and on_terrain.sum() > 10
    assert (classes[on_roof] == building).all()
    assert np.isin(classes[on_facade], [building, CLASS_IDS["rock"]]).all()
    assert (classes[on_terrain] != building).mean() > 0.95
    # a crown that reaches over a roof or a wall meets it: where the two lie within the tolerance of
    # one another either may be the surface drawn (trees whose crowns overhang a footprint: 18 of 1118
    # in these chunks, 29 of 1002 with the grid of contour_streets 0)
    clear = (solid[hit] - best[hit]) / best[hit] > 0.01
    on_tree = good & np.char.startswith(k.astype(str), "tree_") & clear
    assert on_tree.sum() > 5  # the town has garden and street trees
    assert (classes[on_tree] == CLASS_IDS["tree"]).all()
    tree_ids = {t.id for c in chunks for t in c.trees}
    assert set(frame.instances[rows[hit], cols[hit]][on_tree].tolist()) <= tree_ids
    # the instanced trees stand where the merged ones do: the same tree under each of those pixels
    expected = first_tree_hit(chunks, merged_glbs, origin, dirs[hit][on_tree])
    assert (frame.instances[rows[hit], cols[hit]][on_tree] == expected).mean() > 0.9
    assert (frame.instances[rows[hit], cols[hit]][on_roof] > 0).all()
    assert (frame.instances[rows[hit], cols[hit]][on_terrain] == 0).all()
    perspective = frame.depth_perspective[rows[hit], cols[hit]][good]
    assert np.allclose(perspective, best[hit][good], rtol=0.01)


def first_tree_hit(chunks, merged_glbs, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(R,) int64 id of the first tree each ray hits in the merged GLBs (trimesh; 0 where it hits
    none), from the per-vertex feature ids the exporter wrote."""
    best, ids = np.full(len(dirs), np.inf), np.zeros(len(dirs), np.int64)
    for chunk, glb in zip(chunks, merged_glbs):
        scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene", process=False)
        for node in scene.graph.nodes_geometry:
            transform, name = scene.graph[node]
            g = scene.geometry[name]
            if not g.visual.material.name.startswith("tree_"):
                continue
            g = g.copy()
            g.apply_transform(transform)
            v = g.vertices
            g.vertices = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)
            rows = g.vertex_attributes["_FEATURE_ID_0"].reshape(-1).astype(np.int64)[g.faces[:, 0]]
            face_ids = np.array([t.id for t in chunk.trees])[rows]
            tri, ray, loc = g.ray.intersects_id(np.repeat(origin[None], len(dirs), 0), dirs, multiple_hits=False,
                                                return_locations=True)
            dist = np.linalg.norm(loc - origin, axis=1)
            nearer = dist < best[ray]
            best[ray[nearer]], ids[ray[nearer]] = dist[nearer], face_ids[tri[nearer]]
    return ids


def facade_view(world, chunk):
    """A camera 15 m above the ground in front of the chunk's biggest building, looking at its
    wall facing the camera."""
    def volume(b):
        (x0, y0), (x1, y1), (x2, y2) = b.footprint[:3]
        return (b.roof - b.base) * abs((x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1))

    b = max(chunk.buildings, key=volume)
    p = np.asarray(b.footprint)
    mid = (p[0] + p[1]) / 2
    edge = p[1] - p[0]
    outward = np.array([edge[1], -edge[0]]) / np.linalg.norm(edge)  # footprint is counter-clockwise
    eye_xy = mid + outward * 30.0
    ground = float(world.height_at(np.array([eye_xy[0]]), np.array([eye_xy[1]]), level=6)[1][0])
    eye = (eye_xy[0], eye_xy[1], ground + 15.0)
    return b, Pose.look_at(eye, (mid[0], mid[1], (b.base + b.roof) / 2))


def test_facades_carry_the_atlas_texels_they_come_from(town, renderer):
    world, chunks, _ = town
    chunk = max(chunks, key=lambda c: len(c.buildings))
    rc = RenderChunk.from_mesh(chunk, chunk_mesh(chunk, SPEC))
    # street and garden trees may stand in front of the wall: this test is about the wall's texels
    rc = dataclasses.replace(rc, trees=())
    facade = next(s for s in rc.surfaces if s.kind == "facade")
    building, pose = facade_view(world, chunk)
    intr = Intrinsics(320, 240, 60)
    frame = renderer.render([rc], pose, intr)
    ox, oy = rc.origin
    mesh = trimesh.Trimesh(facade.positions.astype(np.float64) + [ox, oy, 0.0], facade.triangles, process=False)
    rows, cols = np.mgrid[0:240:2, 0:320:2]
    rows, cols = rows.ravel(), cols.ravel()
    dirs = pixel_rays(pose, intr, rows, cols)
    origin = np.asarray(pose.position)
    tri, ray, loc = mesh.ray.intersects_id(np.repeat(origin[None], len(dirs), 0), dirs, multiple_hits=False,
                                           return_locations=True)
    dist = np.linalg.norm(loc - origin, axis=1)
    seen = np.abs(frame.depth_perspective[rows[ray], cols[ray]] - dist) < 0.05 * dist  # not hidden by something
    mine = facade.instance[facade.triangles[tri, 0]] == building.id
    keep = seen & mine & (frame.instances[rows[ray], cols[ray]] == building.id)
    assert keep.sum() > 200, keep.sum()
    tri, ray, loc = tri[keep], ray[keep], loc[keep]
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], loc)
    uv = np.einsum("nk,nkj->nj", bary, facade.uv[facade.triangles[tri]])
    atlas = rc.facade.astype(np.float64)
    h, w = atlas.shape[:2]
    texel = atlas[np.clip((uv[:, 1] * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    shifted = atlas[np.clip((uv[:, 1] * h).astype(int) + 3, 0, h - 1), np.clip((uv[:, 0] * w).astype(int) + 2, 0, w - 1)]
    luminance = lambda rgb: rgb @ [0.299, 0.587, 0.114]  # noqa: E731
    drawn = luminance(frame.scene[rows[ray], cols[ray]].astype(np.float64))
    r_true = np.corrcoef(drawn, luminance(texel))[0, 1]
    r_shifted = np.corrcoef(drawn, luminance(shifted))[0, 1]
    print(f"facade: {keep.sum()} wall pixels, correlation with their atlas texels {r_true:.3f}, "
          f"with texels 3 rows / 2 columns off {r_shifted:.3f}")
    assert luminance(texel).std() > 5  # the wall has a pattern (windows, floors) to follow
    assert r_true > 0.75 and r_true > r_shifted + 0.2, (r_true, r_shifted)


def test_renders_are_byte_identical_across_runs_and_sources(town, renderer):
    world, chunks, glbs = town
    intr = Intrinsics(256, 144, 90)
    pose = oblique_pose(world, chunks)
    a = renderer.render([RenderChunk.from_glb(g, k) for g, k in zip(glbs, TOWN)], pose, intr)
    fresh = Renderer()
    try:
        b = fresh.render([RenderChunk.from_glb(g, k) for g, k in zip(glbs, TOWN)], pose, intr)
    finally:
        fresh.close()
    for name in ("scene", "depth_planar", "classes", "instances", "normals"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    from_memory = renderer.render([RenderChunk.from_mesh(c, chunk_mesh(c, SPEC)) for c in chunks], pose, intr)
    assert np.array_equal(from_memory.classes, a.classes) and np.array_equal(from_memory.instances, a.instances)
    assert np.abs(from_memory.depth_planar - a.depth_planar).max() < 1e-3
    assert np.abs(from_memory.scene.astype(int) - a.scene).mean() < 3  # the GLB's textures are JPEG


def test_derived_images_follow_airsim_conventions(town, renderer):
    world, chunks, glbs = town
    intr = Intrinsics(128, 72, 90)
    frame = renderer.render([RenderChunk.from_glb(g, k) for g, k in zip(glbs, TOWN)],
                            Pose.from_angles((0.5 * (chunks[0].bounds[0] + chunks[0].bounds[2]),
                                              chunks[0].bounds[1] - 200.0, 400.0), yaw_deg=0, pitch_deg=-5), intr)
    sky = frame.depth_planar == NO_HIT_DEPTH
    assert sky.any() and (~sky).any()
    assert (frame.classes[sky] == 0).all() and (image_of(frame, "segmentation")[sky] == 0).all()
    vis = depth_vis(frame.depth_planar)
    disp = disparity_normalized(frame.depth_planar)
    assert vis.dtype == np.float32 and (vis[sky] == 1.0).all() and (disp[sky] == 0.0).all()
    assert (disp[~sky] > 0).all() and (disp[~sky] <= 1).all()
    normals = image_of(frame, "surface_normals").astype(np.float64) / 127.5 - 1.0
    assert np.allclose(np.linalg.norm(normals[~sky], axis=1), 1.0, atol=0.05)
    with pytest.raises(RenderError, match="unknown render outputs"):
        renderer.render([], frame.pose, intr, outputs=["colour"])


def test_tree_instances_read_from_the_glb_are_those_of_the_mesh(town, merged_glbs):
    _, chunks, glbs = town
    for chunk, glb, merged in zip(chunks, glbs, merged_glbs):
        a = RenderChunk.from_mesh(chunk, chunk_mesh(chunk, SPEC)).trees
        b = RenderChunk.from_glb(glb, chunk.key).trees
        assert [t.kind for t in a] == [t.kind for t in b] and sum(len(t.ids) for t in a) == len(chunk.trees)
        for x, y in zip(a, b):
            assert np.array_equal(x.ids, y.ids)
            np.testing.assert_allclose(x.translation, y.translation, atol=2e-3)  # float32 relative to the node's foot
            np.testing.assert_allclose(x.turn, y.turn, atol=1e-6)
            np.testing.assert_allclose(x.scale, y.scale, rtol=1e-6)
        with pytest.raises(RenderError, match="merged"):
            RenderChunk.from_glb(merged, chunk.key)


def test_a_malformed_glb_is_refused_with_what_was_expected():
    with pytest.raises(RenderError, match="magic"):
        RenderChunk.from_glb(b"not a glb at all, but long enough")


def test_a_small_gpu_budget_evicts_least_recently_used_chunks_and_draws_the_same(town, renderer):
    world, chunks, glbs = town
    intr = Intrinsics(128, 72, 90)
    pose = oblique_pose(world, chunks)
    scene = [RenderChunk.from_glb(g, k) for g, k in zip(glbs, TOWN)]
    reference = renderer.render(scene, pose, intr)
    sizes = []
    for budget in (1, 2 * max(c.nbytes for c in scene)):  # none fits; about two of the four fit
        small = Renderer(gpu_bytes=budget)
        try:
            for _ in range(2):
                frame = small.render(scene, pose, intr)
                assert frame.depth_planar.tobytes() == reference.depth_planar.tobytes()
                assert frame.scene.tobytes() == reference.scene.tobytes()
            sizes.append((small._cache.currsize, len(small._cache), small._cache.evicted))
        finally:
            small.close()
    assert sizes[0] == (0, 0, [])  # nothing kept, everything drawn released after its frame
    assert 0 < sizes[1][0] <= 2 * max(c.nbytes for c in scene) and 1 <= sizes[1][1] < 4 and sizes[1][2] == []
