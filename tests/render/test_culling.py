"""Culling of chunk tiles: the triangles are only reordered, and a box is dropped only when it lies
wholly outside the view frustum."""

import numpy as np

from worldstream.render import Intrinsics, Pose
from worldstream.render.culling import boxes_in_frustum, frustum_planes, runs, tile_triangles


def test_tiling_reorders_triangles_without_losing_any():
    rng = np.random.default_rng(3)
    positions = rng.uniform(0, 1000, (500, 3)).astype(np.float32)
    triangles = rng.integers(0, 500, (800, 3)).astype(np.uint32)
    tiled, starts, counts, boxes = tile_triangles(positions, triangles, 8)
    assert counts.sum() == len(triangles) and starts[0] == 0 and (np.diff(starts) == counts[:-1]).all()
    assert sorted(map(tuple, tiled.tolist())) == sorted(map(tuple, triangles.tolist()))
    for s, c, box in zip(starts, counts, boxes):
        corners = positions[tiled[s:s + c]].reshape(-1, 3)
        assert np.allclose(corners.min(axis=0), box[0]) and np.allclose(corners.max(axis=0), box[1])


def test_boxes_outside_the_frustum_are_dropped_and_the_rest_kept():
    pose = Pose.from_angles((0.0, 0.0, 100.0), yaw_deg=0.0, pitch_deg=0.0)  # looking north, level
    planes = frustum_planes(pose, Intrinsics(256, 144, 90), near=0.5)

    def box(x, y, z, half=5.0):
        return np.array([[[x - half, y - half, z - half], [x + half, y + half, z + half]]])

    camera = np.array([0.0, 0.0, -100.0])  # boxes are given in world ENU; the offset makes them camera-relative
    assert boxes_in_frustum(box(0, 200, 100), camera, planes)[0]  # ahead
    assert not boxes_in_frustum(box(0, -200, 100), camera, planes)[0]  # behind
    assert not boxes_in_frustum(box(400, 200, 100), camera, planes)[0]  # far right of a 90 deg view
    assert boxes_in_frustum(box(195, 200, 100), camera, planes)[0]  # on the right edge
    assert not boxes_in_frustum(box(0, 200, 300), camera, planes)[0]  # above the vertical field of view
    assert boxes_in_frustum(box(0, 2.0, 100, half=3.0), camera, planes)[0]  # straddles the near plane


def test_runs_merge_adjacent_visible_tiles():
    starts, counts = np.array([0, 4, 9, 12]), np.array([4, 5, 3, 2])
    assert runs(np.array([True, True, False, True]), starts, counts) == [(0, 9), (12, 2)]
    assert runs(np.zeros(4, bool), starts, counts) == []
