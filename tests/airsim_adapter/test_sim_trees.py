"""Trees are obstacles: the official `airsim` client flying through a forest at 10 m above the
ground gets a collision with a tree from `worldstream sim`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worldstream.core import ChunkKey

from .test_sim_official_client import home_enu, surface, to_ned

airsim = pytest.importorskip("airsim", reason="install.sh installs the official client (rpc-msgpack + airsim 1.8.1)")

FOREST = ChunkKey(6, 3, 5)  # seed 7: a forest edge beside fields


def forest_run(world, agl=10.0):
    """(start xy, tree) with open ground at the start and a tree whose crown stands at least 4 m
    above the flight height (start ground + agl) 25..60 m east, west, north or south of it."""
    trees = sorted(world.chunk(FOREST).trees, key=lambda t: -t.height)
    for t in trees[:200]:
        for d in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            for run in (25.0, 40.0, 60.0):
                sx, sy = t.x - d[0] * run, t.y - d[1] * run
                ground, top = (float(v[0]) for v in world.height_at([sx], [sy]))
                crown, _ = world.trees_at([sx], [sy])
                if top - ground < 0.1 and crown[0] == 0 and t.ground + t.height > ground + agl + 4.0:
                    return np.array([sx, sy]), t, np.array(d, float)
    raise AssertionError("no open start beside a tall tree in the forest chunk")


def test_flying_into_a_forest_at_10_m_agl_hits_a_tree(sim, world):
    port, settings = sim
    home = home_enu(settings)
    start, tree, d = forest_run(world)
    altitude = surface(world, *start) + 10.0
    client = airsim.MultirotorClient(ip="127.0.0.1", port=port)
    client.reset()
    client.enableApiControl(True)
    client.armDisarm(True)
    client.takeoffAsync().join()
    client.simSetVehiclePose(airsim.Pose(airsim.Vector3r(*to_ned((*start, altitude), home)),
                                         airsim.to_quaternion(0, 0, 0)), False)
    assert not client.simGetCollisionInfo().has_collided
    target = np.array([tree.x, tree.y]) + d * 150.0
    move = client.moveToPositionAsync(*to_ned((*target, altitude), home), 6)
    move.join()
    info = client.simGetCollisionInfo()
    assert info.has_collided and info.object_name == "tree", info
    assert move.result is False
    p = client.getMultirotorState().kinematics_estimated.position
    contact = home + np.array([p.y_val, p.x_val, -p.z_val])
    flown = math.hypot(*(contact[:2] - start))
    assert flown < float(np.linalg.norm(np.array([tree.x, tree.y]) - start)) + 6.0  # stopped at or before that tree
