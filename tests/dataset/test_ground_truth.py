"""Answers checked against what they come from, recomputed here by other means: counts from the
instance images, geometry from the world's own annotations (chunks generated again), spatial
answers from the annotated positions projected through the camera written in scene.json."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import ConvexHull

from worldstream.core import World
from worldstream.core.keys import ChunkKey

from .conftest import SPEC, load_scene, read_items

VISIBLE_SHARE, MIN_PX, MIN_IMAGE_SHARE = 0.3, 8, 2e-4  # docs/dataset.md
REGIONS = {"left half": (0, 0, .5, 1), "right half": (.5, 0, 1, 1), "top half": (0, 0, 1, .5),
           "bottom half": (0, .5, 1, 1), "top-left quarter": (0, 0, .5, .5), "top-right quarter": (.5, 0, 1, .5),
           "bottom-left quarter": (0, .5, .5, 1), "bottom-right quarter": (.5, .5, 1, 1)}


def question(item: dict) -> str:
    return item["messages"][0]["content"][1]["text"]


def answer(item: dict) -> str:
    return item["messages"][1]["content"][0]["text"]


def frame_of(root, item, cache={}):
    key = (str(root), item["meta"]["scene"])
    if key not in cache:
        cache[key] = load_scene(root, item["meta"]["scene"])
    return cache[key], cache[key]["frames"][item["meta"]["frame"]]


def pixels_per_object(root, scene: dict, frame: dict) -> dict[int, tuple[int, tuple[float, float]]]:
    """{world id: (pixels, centre of its pixels' box)} read from the frame's instance PNG."""
    index = np.array(Image.open(root / "scenes" / f"scene_{scene['index']:04d}" / frame["files"]["instances"]))
    out = {}
    for k, oid in enumerate(frame["instances"], 1):
        rows, cols = np.nonzero(index == k)
        if len(rows):
            out[oid] = (len(rows), ((cols.min() + cols.max() + 1) / 2, (rows.min() + rows.max() + 1) / 2))
    return out


def project(scene: dict, frame: dict, points) -> tuple[np.ndarray, np.ndarray]:
    """World points -> (pixels (N, 2), depth (N,)) through scene.json's K and OpenCV camera_to_world."""
    c2w = np.array(frame["camera"]["camera_to_world"])
    k = np.array(scene["intrinsics"]["K"])
    cam = (np.asarray(points, float) - c2w[:3, 3]) @ c2w[:3, :3]
    return (cam @ k.T)[:, :2] / cam[:, 2:3], cam[:, 2]


def ground_point(root, scene: dict, frame: dict, uv) -> np.ndarray:
    """The world point a pixel centre (u, v) shows, from the frame's depth TIFF (metres along the axis)."""
    import tifffile

    depth = tifffile.imread(root / "scenes" / f"scene_{scene['index']:04d}" / frame["files"]["depth"])
    u, v = uv
    d = float(depth[int(v), int(u)])
    c2w = np.array(frame["camera"]["camera_to_world"])
    return c2w[:3, :3] @ (np.linalg.inv(np.array(scene["intrinsics"]["K"])) @ np.array([u, v, 1.0]) * d) + c2w[:3, 3]


def test_every_count_is_the_number_of_visible_instances_in_the_instance_image(dataset):
    items = [it for it in read_items(dataset) if it["meta"]["family"] == "counting"]
    assert len(items) >= 10
    nonzero = 0
    for it in items:
        scene, frame = frame_of(dataset, it)
        w, h = scene["intrinsics"]["width"], scene["intrinsics"]["height"]
        least = max(MIN_PX, math.ceil(MIN_IMAGE_SHARE * w * h))
        px = pixels_per_object(dataset, scene, frame)
        q = question(it)
        region = next((r for r in sorted(REGIONS, key=len, reverse=True) if r in q), None)
        kind = it["meta"]["kind"]
        expected = set()
        for o in frame["objects"]:
            a = o["annotation"]
            n, (u, v) = px[o["id"]]
            if n / o["silhouette_px"] < VISIBLE_SHARE or n < least:
                continue
            if region:
                l, t, r, b = REGIONS[region]
                if not (l * w <= u < r * w and t * h <= v < b * h):
                    continue
            want = {"counting.buildings": a["kind"] == "building", "counting.trees": a["kind"] == "tree",
                    "counting.roof": a["kind"] == "building" and f"a {a['roof']} roof" in q,
                    "counting.building_type": a["kind"] == "building" and {
                        "house": " houses", "row_house": "row houses", "apartment": "apartment blocks",
                        "industrial": "industrial buildings", "centre": "town-centre buildings"}[a["category"]] in q
                    and not (a["category"] == "house" and "row houses" in q),
                    "counting.tree_kind": a["kind"] == "tree" and {"conifer": "conifers",
                                                                   "broadleaf": "broadleaf trees"}[a["category"]] in q}
            if want[kind]:
                expected.add(o["id"])
        assert int(answer(it)) == len(expected), (q, answer(it), len(expected))
        assert set(it["meta"]["objects"]) == expected, q
        nonzero += len(expected) > 0
    assert nonzero >= 5  # the checks above met real objects


def test_visibility_flags_follow_the_documented_share_of_the_instance_pixels(dataset):
    checked = 0
    for index in (0, 1):
        scene = load_scene(dataset, index)
        w, h = scene["intrinsics"]["width"], scene["intrinsics"]["height"]
        for frame in scene["frames"]:
            px = pixels_per_object(dataset, scene, frame)
            assert {o["id"] for o in frame["objects"]} == set(frame["instances"])  # every drawn object is annotated
            for o in frame["objects"]:
                n = px[o["id"]][0]
                assert o["pixels"] == n
                a = o["annotation"]
                if a["kind"] == "building":  # its silhouette: the hull of walls and ridge, projected here
                    fp = np.array(a["footprint"])
                    walls = [(x, y, z) for x, y in fp for z in (a["ground"], a["eaves"] if a["roof"] != "flat" else a["top"])]
                    sides = [np.hypot(*(fp[(i + 1) % 4] - fp[i])) for i in range(4)]
                    s = int(np.argmin(sides[:2]))  # a short side: the ridge joins its midpoint and the opposite one's
                    ridge = [(*(fp[s] + fp[s + 1]) / 2, a["top"]), (*(fp[s + 2] + fp[(s + 3) % 4]) / 2, a["top"])]
                    uv, depth = project(scene, frame, walls + ridge)
                    if (depth > 0.5).all():
                        assert ConvexHull(uv).volume == pytest.approx(o["silhouette_px"], rel=1e-3, abs=0.05)
                        checked += 1
                least = max(MIN_PX, math.ceil(MIN_IMAGE_SHARE * w * h))
                assert o["visible"] == (n / o["silhouette_px"] >= VISIBLE_SHARE and n >= least)
    assert checked >= 20


@pytest.fixture(scope="module")
def annotations(dataset):
    """{id: Building | Tree} for the objects geometry questions name, from the finest-level chunks
    under their centres, generated again here."""
    world = World(SPEC, cache_chunks=64)
    keys = set()
    for it in read_items(dataset):
        if it["meta"]["family"] == "geometry" and it["meta"]["objects"]:
            _, frame = frame_of(dataset, it)
            a = next(o["annotation"] for o in frame["objects"] if o["id"] == it["meta"]["objects"][0])
            keys.add(ChunkKey.at(SPEC, a["centre"][0], a["centre"][1], SPEC.levels - 1))
    out = {}
    for key in sorted(keys, key=lambda k: (k.x, k.y)):
        c = world.chunk(key)
        out.update({a.id: a for a in (*c.buildings, *c.trees)})
    return world, out


def test_every_geometry_answer_matches_the_annotations_within_its_tolerance(dataset, annotations):
    world, ann = annotations
    items = [it for it in read_items(dataset) if it["meta"]["family"] == "geometry"]
    kinds = set()
    for it in items:
        meta = it["meta"]
        scene, frame = frame_of(dataset, it)
        cam = np.array(frame["camera"]["position_enu"])
        kind = meta["kind"]
        if kind == "geometry.camera_height":
            truth = cam[2] - float(world.height_at(np.array([cam[0]]), np.array([cam[1]]))[0][0])
        elif kind == "geometry.point_distance":
            truth = float(np.linalg.norm(ground_point(dataset, scene, frame, meta["points"][0]) - cam))
        else:
            a = ann[meta["objects"][0]]
            if hasattr(a, "footprint"):
                fp = np.array(a.footprint)
                ground = max(a.base, float(world.height_at(fp[:, 0], fp[:, 1])[0].min()))
                x, y = fp[:, 0], fp[:, 1]
                area = 0.5 * abs(float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)))
                centre = np.array([x.mean(), y.mean(), (ground + a.ridge) / 2])
                height = a.ridge - ground
            else:
                centre, height, area = np.array([a.x, a.y, a.ground + a.height / 2]), a.height, None
            truth = {"geometry.building_height": height, "geometry.tree_height": height,
                     "geometry.footprint_area": area,
                     "geometry.camera_distance": float(np.linalg.norm(centre - cam))}[kind]
        got = float(re.match(r"-?[0-9.]+", answer(it)).group())
        assert abs(got - truth) <= max(meta["abs_tol"], meta["rel_tol"] * abs(truth)), (question(it), got, truth)
        assert abs(got - truth) <= 0.51  # the answer is the truth rounded, well inside the tolerance
        kinds.add(kind)
    assert {"geometry.camera_height", "geometry.building_height", "geometry.footprint_area",
            "geometry.camera_distance", "geometry.point_distance"} <= kinds


def test_spatial_answers_agree_with_the_projected_positions(dataset):
    items = [it for it in read_items(dataset) if it["meta"]["family"] == "spatial"]
    kinds = set()
    for it in items:
        scene, frame = frame_of(dataset, it)
        kind = it["meta"]["kind"]
        if kind in ("spatial.point_nearer", "spatial.point_higher"):
            cam = np.array(frame["camera"]["position_enu"])
            a, b = (ground_point(dataset, scene, frame, p) for p in it["meta"]["points"])
            first = np.linalg.norm(a - cam) < np.linalg.norm(b - cam) if kind.endswith("nearer") else a[2] > b[2]
            assert answer(it) == ("A" if first else "B"), question(it)
            kinds.add(kind)
            continue
        objs = {o["id"]: o["annotation"] for o in frame["objects"]}
        ids = it["meta"]["objects"]
        centres = np.array([objs[i]["centre"] for i in ids])
        uv, _ = project(scene, frame, centres)
        cam = np.array(frame["camera"]["position_enu"])
        kind, ans = it["meta"]["kind"], answer(it)
        if kind == "spatial.left_right":
            assert ans == ("left" if uv[0, 0] < uv[1, 0] else "right")
        elif kind == "spatial.image_direction":
            du, dv = uv[0] - uv[1]
            angle = math.degrees(math.atan2(-dv, du)) % 360
            names = ["right", "upper right", "above", "upper left", "left", "lower left", "below", "lower right"]
            assert ans == names[int(((angle + 22.5) % 360) // 45)]
        elif kind == "spatial.higher":
            assert ans == ("A" if objs[ids[0]]["top"] > objs[ids[1]]["top"] else "B")
        elif kind == "spatial.nearest":
            d = np.linalg.norm(centres - cam, axis=1)
            assert ans == "ABCD"[int(np.argmin(d))]
        elif kind == "spatial.distance":
            truth = float(np.hypot(*(centres[0, :2] - centres[1, :2])))
            assert abs(float(ans.split()[0]) - truth) <= 0.51
        kinds.add(kind)
    assert {"spatial.left_right", "spatial.higher", "spatial.distance", "spatial.point_nearer",
            "spatial.point_higher"} <= kinds
