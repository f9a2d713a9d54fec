"""The headless simulator driven by the unmodified official `airsim` 1.8.1 client, over real TCP,
with the simulator in its own process (`worldstream sim`)."""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from worldstream.airsim_adapter.dataset import load_dataset
from worldstream.render import SEGMENTATION_RGB
from worldstream.core import ChunkKey, WorldSpec
from worldstream.core.biomes import CLASSES

from .conftest import start_worldstream

airsim = pytest.importorskip("airsim", reason="install.sh installs the official client (rpc-msgpack + airsim 1.8.1)")

SPEC = WorldSpec(seed=7)  # the session's world (tests/conftest.py), which the simulator fixture runs


def home_enu(settings) -> np.ndarray:
    d = settings["Vehicles"]["Drone1"]
    return np.array([d["Y"], d["X"], -d["Z"]])


def to_ned(enu, home) -> tuple[float, float, float]:
    d = np.asarray(enu) - home
    return float(d[1]), float(d[0]), float(-d[2])


def surface(world, x, y) -> float:
    return float(world.height_at([x], [y])[1][0])


def semantic_class(world, x, y) -> int:
    level = SPEC.levels - 1
    e = SPEC.chunk_extent(level)
    key = ChunkKey(level, math.floor(x / e), math.ceil(y / e) - 1)  # a row's north edge belongs to it
    c = world.chunk(key)
    w, s, _, n = key.bounds(SPEC)
    res = SPEC.resolution(level)
    return int(c.semantic[int((n - y) / res), int((x - w) / res)])


def test_official_client_flies_250_m_and_sees_the_generated_ground(sim, world):
    port, settings = sim
    home = home_enu(settings)
    client = airsim.MultirotorClient(ip="127.0.0.1", port=port)
    client.confirmConnection()
    client.reset()  # the simulator is the package's: start landed at home whatever flew before
    client.enableApiControl(True)
    assert client.isApiControlEnabled()
    client.armDisarm(True)
    client.takeoffAsync().join()
    assert client.getMultirotorState().landed_state == airsim.LandedState.Flying

    target_xy = (250.0, 0.0)
    line = np.linspace(0.0, 1.0, 101)
    highest = max(surface(world, target_xy[0] * t, target_xy[1] * t) for t in line)
    height = highest - surface(world, *target_xy) + 40.0  # a fixed height above the target's ground, clear of the relief
    target_enu = (target_xy[0], target_xy[1], surface(world, *target_xy) + height)
    climb = to_ned((0.0, 0.0, target_enu[2]), home)
    assert client.moveToPositionAsync(*climb, 10).join() is not False
    client.moveToPositionAsync(*to_ned(target_enu, home), 15).join()

    state = client.getMultirotorState()
    p = state.kinematics_estimated.position
    reached = np.array([p.x_val, p.y_val, p.z_val])
    assert np.linalg.norm(reached - np.array(to_ned(target_enu, home))) < 1.0
    assert not state.collision.has_collided

    responses = client.simGetImages([
        airsim.ImageRequest("bottom_center", airsim.ImageType.Scene, False, True),
        airsim.ImageRequest("bottom_center", airsim.ImageType.DepthPlanar, True, False),
        airsim.ImageRequest("bottom_center", airsim.ImageType.Segmentation, False, False),
    ])
    scene, depth, seg = responses
    assert (scene.width, scene.height) == (256, 144)
    rgb = np.asarray(Image.open(io.BytesIO(scene.image_data_uint8)))
    assert rgb.shape == (144, 256, 3) and rgb.std() > 3.0
    depth_m = airsim.list_to_2d_float_array(depth.image_data_float, depth.width, depth.height)
    drone = home + np.array([reached[1], reached[0], -reached[2]])
    above_ground = drone[2] - surface(world, drone[0], drone[1])
    centre = float(depth_m[72, 128])
    assert abs(centre - above_ground) <= 0.02 * above_ground, (centre, above_ground)
    seg_bgr = np.frombuffer(seg.image_data_uint8, np.uint8).reshape(seg.height, seg.width, 3)
    expected = SEGMENTATION_RGB[semantic_class(world, drone[0], drone[1])]
    assert tuple(seg_bgr[72, 128, ::-1]) == tuple(expected)

    client.landAsync().join()
    state = client.getMultirotorState()
    assert state.landed_state == airsim.LandedState.Landed
    p = state.kinematics_estimated.position
    landed_enu = home + np.array([p.y_val, p.x_val, -p.z_val])
    assert abs(landed_enu[2] - surface(world, landed_enu[0], landed_enu[1])) < 0.5


def find_slope(world, rise=60.0, run=300.0):
    """(start xy, end xy) with the ground `rise` m higher at the end, `run` m away (searched on a
    coarse level around the origin, then checked at the finest)."""
    for a in np.linspace(0, 2 * math.pi, 24, endpoint=False):
        d = np.array([math.cos(a), math.sin(a)])
        r = np.arange(0.0, 5000.0, 50.0)
        g = world.height_at(r * d[0], r * d[1], level=3)[1]
        step = int(run / 50)
        for i in range(len(r) - step):
            a_xy, b_xy = r[i] * d, r[i + step] * d
            if g[i + step] - g[i] > rise and surface(world, *b_xy) - surface(world, *a_xy) > rise:
                return a_xy, b_xy, d
    raise AssertionError("no slope found near the origin")


def test_flying_into_a_mountain_reports_a_collision_and_stops(sim, world):
    port, settings = sim
    home = home_enu(settings)
    a_xy, b_xy, d = find_slope(world)
    altitude = surface(world, *a_xy) + 20.0  # clear at the start, 40 m below the ground at the end
    client = airsim.MultirotorClient(ip="127.0.0.1", port=port)
    client.reset()
    client.enableApiControl(True)
    client.armDisarm(True)
    client.takeoffAsync().join()
    start = to_ned((a_xy[0], a_xy[1], altitude), home)
    client.simSetVehiclePose(airsim.Pose(airsim.Vector3r(*start), airsim.to_quaternion(0, 0, 0)), False)
    assert not client.simGetCollisionInfo().has_collided
    target = b_xy + 100.0 * d
    move = client.moveToPositionAsync(*to_ned((target[0], target[1], altitude), home), 12)
    move.join()
    info = client.simGetCollisionInfo()
    assert info.has_collided and info.object_name in ("terrain", "building")
    assert move.result is False  # the move ended on contact
    state = client.getMultirotorState()
    v = state.kinematics_estimated.linear_velocity
    assert math.hypot(v.x_val, v.y_val) < 0.5
    p = state.kinematics_estimated.position
    flown = math.hypot(p.x_val - start[0], p.y_val - start[1])
    assert 1.0 < flown < float(np.linalg.norm(target - a_xy)) - 50.0  # stopped on the slope, short of the target
    contact = home + np.array([p.y_val, p.x_val, -p.z_val])
    assert contact[2] - surface(world, contact[0], contact[1]) < 1.0  # against the ground, not in mid-air


def test_unknown_calls_get_rpclibs_error_text_and_the_connection_survives(sim):
    port, _ = sim
    client = airsim.MultirotorClient(ip="127.0.0.1", port=port)
    with pytest.raises(Exception) as err:
        client.client.call("simFlyToTheMoon", 1, 2)
    assert "rpclib: server could not find function 'simFlyToTheMoon' with argument count 2." in str(err.value)
    assert client.ping()


def test_a_mission_file_flown_end_to_end_records_a_dataset_whose_poses_match(sim, world, tmp_path):
    """`worldstream airsim fly` (its own process, the official client) over a mountain: every file
    loads, frames are interval_s of sim time apart, poses agree with each other, with the planned
    path and with the world, and the ground truth agrees with the images."""
    port, settings = sim
    home = home_enu(settings)
    a_xy, b_xy, d = find_slope(world)
    end = b_xy + 100.0 * d  # the same climb the collision test flies into
    client = airsim.MultirotorClient(ip="127.0.0.1", port=port)
    client.reset()
    start = a_xy - 150.0 * d  # on the ground a short run before the climb: the mission starts where the drone is
    client.simSetVehiclePose(airsim.Pose(airsim.Vector3r(*to_ned((start[0], start[1], -1000.0), home)),
                                         airsim.to_quaternion(0, 0, 0)), False)  # lifted onto the surface
    mission = tmp_path / "mission.yaml"
    mission.write_text(f"""
name: over-the-ridge
speed: 15
altitude: {{reference: agl, value: 30}}
clearance_m: 10
capture: {{interval_s: 2.0, camera: bottom_center, images: [scene, depth_planar, segmentation]}}
waypoints:
  - [{a_xy[0]:.2f}, {a_xy[1]:.2f}]
  - {{x: {end[0]:.2f}, y: {end[1]:.2f}}}
""")
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(settings))
    out = tmp_path / "dataset"
    run = subprocess.run([sys.executable, "-m", "worldstream", "airsim", "fly", str(mission), "--settings",
                          str(settings_path), "--port", str(port), "--out", str(out)],
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr

    manifest, records = load_dataset(out)
    assert manifest["complete"] and manifest["frames"] == len(records) >= manifest["path_sim_s"] / 2.0
    np.testing.assert_allclose(manifest["home_enu"], home, atol=0.01)
    intr = json.loads((out / "intrinsics.json").read_text())
    assert (intr["width"], intr["height"], intr["fov_deg"]) == (256, 144, 90.0)
    times = np.array([r["time_ns"] for r in records]) / 1e9
    gaps = np.diff(times)  # lockstep: one capture every interval of sim time, and one when the path ends
    assert np.abs(gaps[:-1] - 2.0).max() < 0.02 and 0 < gaps[-1] <= 2.02
    path = np.array(manifest["path_enu"])
    for r in records:
        scene = np.asarray(Image.open(out / r["files"]["scene"]))
        seg = np.asarray(Image.open(out / r["files"]["segmentation"]).convert("RGB"))
        depth = np.load(out / r["files"]["depth_planar"])
        assert scene.shape == seg.shape == (144, 256, 3) and depth.shape == (144, 256) and depth.dtype == np.float32
        v, c = r["vehicle"], r["camera"]
        ned = np.array(v["position_ned"])
        np.testing.assert_allclose(v["position_enu"], home + [ned[1], ned[0], -ned[2]], atol=1e-6)
        np.testing.assert_allclose(np.array(c["camera_to_world_enu"])[:3, 3], c["position_enu"], atol=1e-6)
        down = np.array(c["camera_to_world_enu"])[:3, :3] @ [1.0, 0.0, 0.0]  # the camera's optical axis
        np.testing.assert_allclose(down, [0.0, 0.0, -1.0], atol=1e-6)
        assert not r["collided"]
        truth = r["ground_truth"]
        enu = np.array(v["position_enu"])
        assert abs(truth["agl_m"] - (enu[2] - surface(world, enu[0], enu[1]))) < 0.01
        assert truth["agl_m"] > 10.0  # never below the clearance
        assert abs(float(depth[72, 128]) - truth["agl_m"]) <= 0.02 * truth["agl_m"] + 0.2
        seg_ids = {tuple(SEGMENTATION_RGB[i]): i for i in range(256) if SEGMENTATION_RGB[i].any()}
        colours, counts = np.unique(seg.reshape(-1, 3), axis=0, return_counts=True)
        top_class = seg_ids[tuple(colours[counts.argmax()])]
        assert next(iter(truth["classes_in_view"])) == CLASSES[top_class]
        # worldstream sim's segmentation is in the world's class palette: the shares are the image's own
        assert truth["classes_from"] == "segmentation"
        shares = {CLASSES[seg_ids[tuple(c)]] if tuple(c) in seg_ids else "sky": n / counts.sum()
                  for c, n in zip(colours, counts)}
        assert truth["classes_in_view"].keys() == shares.keys()
        assert all(abs(truth["classes_in_view"][k] - v) < 1e-6 for k, v in shares.items())
        if 0 < r["index"] < len(records) - 1:  # on the path leg: within a few metres of the planned path
            assert distance_to_polyline(enu, path) < 3.0
    last = np.array(records[-1]["vehicle"]["position_enu"])
    assert np.linalg.norm(last - path[-1]) < 1.0
    climb = path[:, 2].max() - path[0, 2]
    assert climb > 40.0  # the path climbed the ridge instead of flying into it


def distance_to_polyline(p: np.ndarray, line: np.ndarray) -> float:
    a, b = line[:-1], line[1:]
    t = np.clip(np.einsum("ij,ij->i", p - a, b - a) / np.maximum(np.einsum("ij,ij->i", b - a, b - a), 1e-12), 0, 1)
    return float(np.linalg.norm(a + (b - a) * t[:, None] - p, axis=1).min())


def resident_chunks(folder) -> list[dict]:
    """The chunks `worldstream airsim follow --out folder` lists as resident (none before its first write)."""
    try:
        return json.loads((folder / "resident.json").read_text())["chunks"]
    except FileNotFoundError:
        return []


def finest_holding(chunks: list[dict], x: float, y: float) -> dict | None:
    """The chunk of the finest level among `chunks` whose bounds hold (x, y), if any."""
    for chunk in chunks:
        w, s, e, n = chunk["bounds"]
        if ChunkKey.parse(chunk["key"]).level == SPEC.levels - 1 and w <= x < e and s < y <= n:
            return chunk
    return None


def test_follow_streams_chunks_around_the_flying_drone(sim, sim_cache, world, tmp_path):
    """`worldstream airsim follow` (its own process) between the simulator and a real `worldstream
    serve`: while the official client flies the drone 300 m north, the chunks stream around it and
    the finest level ends up resident under it (waited for, however long the machine takes), on
    disk as complete GLBs. Ctrl-C (SIGINT) stops it cleanly: exit 0, its summary on stdout, no
    traceback. The server shares the simulator's disk cache (the chunks both need are generated
    once)."""
    port, settings = sim
    home = home_enu(settings)
    server_port, server = start_worldstream(["serve", "--seed", str(SPEC.seed), "--workers", "2",
                                             "--cache", str(sim_cache)])
    follower = None
    try:
        settings_path = tmp_path / "settings.json"
        settings_path.write_text(json.dumps(settings))
        client = airsim.MultirotorClient(ip="127.0.0.1", port=port)
        client.reset()
        out = tmp_path / "follow"
        follower = subprocess.Popen([sys.executable, "-m", "worldstream", "airsim", "follow", "--settings",
                                     str(settings_path), "--port", str(port), "--server", f"ws://127.0.0.1:{server_port}/",
                                     "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client.enableApiControl(True)
        client.armDisarm(True)
        client.takeoffAsync().join()
        z = to_ned((0.0, 0.0, max(surface(world, 0.0, y) for y in range(0, 301, 20)) + 40.0), home)[2]
        client.moveToZAsync(z, 10).join()
        client.moveToPositionAsync(300.0, 0.0, z, 15).join()
        p = client.simGetVehiclePose().position
        assert p.x_val > 290.0  # under a finest chunk (256 to 512 m north) that the start did not need
        drone = home + np.array([p.y_val, p.x_val, -p.z_val])
        deadline = time.monotonic() + 300
        while True:  # until more than ten chunks are resident, the finest level's under the drone among them
            resident = resident_chunks(out)
            under = finest_holding(resident, drone[0], drone[1])
            if under is not None and len(resident) > 10:
                break
            assert follower.poll() is None, follower.communicate()[1][-2000:]
            assert time.monotonic() < deadline, f"{len(resident)} chunks resident; finest under the drone: {under}"
            time.sleep(0.2)
        follower.send_signal(signal.SIGINT)  # it streams until stopped
        stdout, stderr = follower.communicate(timeout=60)
        assert follower.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert summary["chunks_received"] >= len(resident) > 10 and summary["views_sent"] > 0, summary
        assert summary["finest_under_vehicle"] is not None, summary
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.communicate(timeout=20)
        server.terminate()
        server.wait(20)
    for chunk in resident:
        glb = (out / chunk["folder"] / "mesh.glb").read_bytes()
        assert glb[:4] == b"glTF" and int.from_bytes(glb[8:12], "little") == len(glb)
