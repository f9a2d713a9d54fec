"""Ground truth and crash-safety of the recorded datasets, without a simulator."""

from __future__ import annotations

import io
import json
import math

import numpy as np
from PIL import Image

from worldstream.airsim_adapter.dataset import (DatasetWriter, class_fractions, class_shares, load_dataset,
                                                segmentation_classes, unproject)
from worldstream.airsim_adapter.fly import Recorder
from worldstream.airsim_adapter.ground import Ground
from worldstream.airsim_adapter.mission import Capture, Mission, Waypoint
from worldstream.airsim_adapter.structs import yaw_quaternion
from worldstream.core import World, WorldSpec
from worldstream.core.biomes import CLASS_IDS
from worldstream.render import SEGMENTATION_RGB, Intrinsics
from worldstream.render.renderer import NO_HIT_DEPTH

SPEC = WorldSpec(seed=11, chunk_size=64, levels=5)


def test_class_shares_from_a_segmentation_in_the_world_palette():
    ids = np.zeros((18, 32), np.uint8)  # sky
    ids[6:, :] = CLASS_IDS["grass"]
    ids[12:, 20:] = CLASS_IDS["road"]
    found = segmentation_classes(SEGMENTATION_RGB[ids])
    assert found is not None
    shares = class_shares(*found)
    assert shares == class_fractions(ids[ids != 0], int((ids == 0).sum()))  # the same as counting class ids
    assert shares == {"grass": round((12 * 32 - 6 * 12) / 576, 6), "sky": round(6 * 32 / 576, 6),
                      "road": round(6 * 12 / 576, 6)}
    odd = SEGMENTATION_RGB[ids].copy()
    odd[0, 0] = (1, 2, 3)  # a colour no class has: AirSim in Unreal colours meshes, not classes
    assert segmentation_classes(odd) is None


def test_without_a_class_palette_the_depth_image_is_unprojected_onto_the_world(tmp_path):
    world = World(SPEC, cache_chunks=64)
    mission = Mission(waypoints=(Waypoint(0.0, 0.0, 50.0, "agl"),), capture=Capture(camera="bottom_center"))
    recorder = Recorder(None, None, mission, world, np.zeros(3), DatasetWriter(tmp_path / "d"))
    intr = Intrinsics(32, 18, 60.0)
    recorder.intrinsics = {"width": intr.width, "height": intr.height, "fov_deg": intr.fov_deg}
    recorder.ground = Ground(world, near_m=96.0, far_m=1000.0)  # smaller tiers than the default: a faster test
    cam_q = yaw_quaternion(0.0, -math.pi / 2)  # looking straight down
    cam_enu = np.array([20.0, -15.0, float(world.height_at([20.0], [-15.0])[1][0]) + 60.0])
    depth = np.full((18, 32), 60.0, np.float32)
    depth[:4] = NO_HIT_DEPTH  # a band of sky
    seg = io.BytesIO()
    Image.fromarray(np.full((18, 32, 3), 7, np.uint8)).save(seg, format="PNG")  # not the class palette
    shares, source = recorder.classes_in_view({"segmentation": seg.getvalue()}, ("depth_planar", depth), cam_q, cam_enu)
    assert source == "depth_planar"
    pts, hit = unproject(depth, intr, cam_q, cam_enu, planar=True)
    ids, _ = recorder.ground.layers(pts[hit, 0], pts[hit, 1])
    fine = recorder.ground.fine
    assert fine.contains(pts[hit, 0], pts[hit, 1]).all()  # all at the finest level: world chunks' own classes
    r, c = fine.pixel(pts[hit, 0], pts[hit, 1])
    assert np.array_equal(ids, fine.semantic[r, c])
    assert shares == class_fractions(ids, int((~hit).sum())) and shares["sky"] == round(4 / 18, 6)


def test_the_manifest_comes_last_and_only_after_the_frames_are_synced(tmp_path, monkeypatch):
    import worldstream.airsim_adapter.dataset as dataset

    synced, real = [], dataset.fsync_paths

    def spy(paths):  # records what is synced, and syncs it
        paths = list(paths)
        synced.extend(paths)
        real(paths)

    monkeypatch.setattr(dataset, "fsync_paths", spy)
    w = DatasetWriter(tmp_path)
    w.write_json("intrinsics.json", {"width": 4})
    for i in range(3):
        w.write_frame({"index": i}, {f"images/{i:06d}_scene.png": b"png"})
    assert not (tmp_path / "dataset.json").exists() and not synced  # nothing synced one file at a time
    w.finish({"mission": "m"})
    files = {p.relative_to(tmp_path).as_posix() for p in synced if p.is_file()}
    assert files == {"intrinsics.json", *(f"images/{i:06d}_scene.png" for i in range(3)),
                     *(f"frames/{i:06d}.json" for i in range(3))}
    assert {tmp_path / "images", tmp_path / "frames"} <= set(synced)
    manifest, records = load_dataset(tmp_path)
    assert manifest["frames"] == 3 and [r["index"] for r in records] == [0, 1, 2]
    assert json.loads((tmp_path / "intrinsics.json").read_text()) == {"width": 4}
    assert not list(tmp_path.rglob("*.tmp-*"))
