"""`worldstream airsim fly`: fly a mission with the official `airsim` client (against Unreal with
AirSim or against `worldstream sim`) and record a dataset along it.

The path comes from `mission.plan_path` over the world's generated surface. The vehicle takes off
if landed, climbs on the spot to the path's first height, then flies the rest with moveOnPathAsync.
In lockstep mode (the default) the simulation is paused for every capture and advanced by
simContinueForTime(interval), so frames are exactly `interval_s` of sim time apart and pose and
images belong to the same instant however slowly images render; in realtime mode captures follow
the sim clock while it runs freely.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from ..core import frames
from ..core.errors import WorldstreamError
from ..core.world import World
from .dataset import (DatasetWriter, camera_to_world, class_fractions, class_shares, image_files, segmentation_classes,
                      unproject)
from .ground import Ground
from .mission import IMAGE_TYPES, Mission, plan_path
from ..render.camera import Intrinsics

CLIMB_SPEED_MAX = 8.0  # m/s, the vertical climb to the path's start
PAUSE_POLL_S = 0.001  # the sim pauses again within a few ms at ClockSpeed 100


class FlightError(WorldstreamError, RuntimeError):
    """The mission could not be flown (collision, timeout); the message says where and why."""


def _vec(v) -> np.ndarray:
    return np.array([v.x_val, v.y_val, v.z_val], np.float64)


def _quat(q) -> tuple[float, float, float, float]:
    return (float(q.w_val), float(q.x_val), float(q.y_val), float(q.z_val))


def _done(future) -> bool:
    """Has an async call's reply come in? (msgpackrpc's Future keeps it in _set_flag.)"""
    return bool(getattr(future, "_set_flag", False))


FLUSH_FRAMES = 100  # frame records wait for their heights at most this many captures


class Recorder:
    """Captures one frame: images through the client, poses, and ground truth from the world.

    Images are written as they come. Heights under the vehicle (World.height_at at the finest
    level: one call costs about as much for a hundred points as for one) are looked up for up to
    FLUSH_FRAMES captures at once, then those frames' records are written (`flush`; fly_mission
    flushes the rest when the path ends). The classes in view come from the segmentation image when
    it is in the world's class palette (`worldstream sim` draws the chunks' classes: the shares are
    then exactly the image's); otherwise (AirSim in Unreal colours meshes) the depth image is
    unprojected onto the world's class layers (`Ground`, built when first needed)."""

    def __init__(self, client, airsim, mission: Mission, world: World, home_enu: np.ndarray, writer: DatasetWriter):
        self.client, self.airsim, self.mission, self.world = client, airsim, mission, world
        self.home_enu, self.writer = home_enu, writer
        self.ground: Ground | None = None
        self.intrinsics: dict | None = None
        self.frames = 0
        self._pending: list[dict] = []  # captured, waiting for their heights
        self.seconds = 0.0  # wall seconds spent capturing (flushes included)
        self.timing = {"rpc": 0.0, "truth": 0.0, "write": 0.0}  # wall seconds by part

    def flush(self) -> None:
        """Heights for the frames waiting, then their records."""
        if not self._pending:
            return
        t0 = time.perf_counter()
        enu = np.array([r["vehicle"]["position_enu"] for r in self._pending])
        ground, surface = self.world.height_at(enu[:, 0], enu[:, 1])
        t1 = time.perf_counter()
        for r, z, s, g in zip(self._pending, enu[:, 2], surface, ground):
            classes = r["ground_truth"]
            r["ground_truth"] = {"surface_m": float(s), "ground_m": float(g), "agl_m": float(z - s), **classes}
            self.writer.write_record(r)
        self._pending = []
        t2 = time.perf_counter()
        self.timing["truth"] += t1 - t0
        self.timing["write"] += t2 - t1
        self.seconds += t2 - t0

    def classes_in_view(self, images: dict, depth, cam_q, cam_enu) -> tuple[dict, str] | None:
        """({class: share of pixels}, where from) or None without a segmentation or depth image."""
        seg = images.get("segmentation")
        if seg is not None:
            found = segmentation_classes(np.asarray(Image.open(io.BytesIO(bytes(seg))).convert("RGB")))
            if found is not None:
                return class_shares(*found), "segmentation"
        if depth is None:
            return None
        if self.ground is None:
            self.ground = Ground(self.world)
        intr = Intrinsics(self.intrinsics["width"], self.intrinsics["height"], self.intrinsics["fov_deg"])
        return classes_by_unprojection(self.ground, depth[1], intr, cam_q, cam_enu, depth[0] == "depth_planar"), depth[0]

    def capture(self) -> dict:
        t0 = time.perf_counter()
        try:
            return self._capture()
        finally:
            self.seconds += time.perf_counter() - t0

    def _requests(self):
        cam = self.mission.capture.camera
        out = []
        for kind in self.mission.capture.images:
            depth = kind.startswith("depth")
            out.append(self.airsim.ImageRequest(cam, IMAGE_TYPES[kind], pixels_as_float=depth, compress=not depth))
        return out

    def _capture(self) -> dict:
        vehicle = self.mission.vehicle
        t0 = time.perf_counter()
        state = self.client.getMultirotorState(vehicle_name=vehicle)
        responses = self.client.simGetImages(self._requests(), vehicle_name=vehicle)
        collision = self.client.simGetCollisionInfo(vehicle_name=vehicle)
        if len(responses) != len(self.mission.capture.images):
            raise FlightError(f"simGetImages answered {len(responses)} images for {len(self.mission.capture.images)} requests")
        images, depth = {}, None
        for kind, r in zip(self.mission.capture.images, responses):
            if r.width <= 0 or r.height <= 0:
                raise FlightError(f"camera {self.mission.capture.camera!r} returned an empty {kind} image: {r.message!r}")
            if kind.startswith("depth"):
                images[kind] = np.asarray(r.image_data_float, np.float32).reshape(r.height, r.width)
                depth = (kind, images[kind]) if depth is None or kind == "depth_planar" else depth
            else:
                images[kind] = r.image_data_uint8
        first = responses[0]
        cam_ned, cam_q = _vec(first.camera_position), _quat(first.camera_orientation)
        if self.intrinsics is None:
            info = self.client.simGetCameraInfo(self.mission.capture.camera, vehicle_name=vehicle)
            intr = Intrinsics(first.width, first.height, float(info.fov))
            self.intrinsics = {"camera": self.mission.capture.camera, "width": intr.width, "height": intr.height,
                               "fov_deg": intr.fov_deg, "K": intr.matrix().tolist(), "distortion": None,
                               "camera_frame": "x forward, y right, z down (AirSim); pixel (0, 0) top left"}
            self.writer.write_json("intrinsics.json", self.intrinsics)
        t1 = time.perf_counter()
        kin = state.kinematics_estimated
        pos_ned = _vec(kin.position)
        enu = frames.airsim_to_enu(pos_ned, self.home_enu)
        truth = {}  # heights first, when flushed
        cam_enu = frames.airsim_to_enu(cam_ned, self.home_enu)
        classes = self.classes_in_view(images, depth, cam_q, cam_enu)
        if classes is not None:
            truth["classes_in_view"], truth["classes_from"] = classes
        lat, lon, alt = (float(a) for a in frames.enu_to_geodetic(enu, self.world.spec.origin))
        index = self.frames
        names, blobs = image_files(index, images)
        record = {
            "index": index, "time_ns": int(state.timestamp), "files": names,
            "vehicle": {"position_ned": pos_ned.tolist(), "orientation_ned": list(_quat(kin.orientation)),
                        "velocity_ned": _vec(kin.linear_velocity).tolist(), "position_enu": enu.tolist(),
                        "geodetic": [lat, lon, alt]},
            "camera": {"name": self.mission.capture.camera, "position_ned": cam_ned.tolist(),
                       "orientation_ned": list(cam_q), "position_enu": cam_enu.tolist(),
                       "camera_to_world_enu": camera_to_world(cam_ned, cam_q, self.home_enu).round(9).tolist()},
            "ground_truth": truth, "collided": bool(collision.has_collided),
        }
        t2 = time.perf_counter()
        self.writer.write_images(blobs)
        self.frames += 1
        self._pending.append(record)
        self.timing["rpc"] += t1 - t0
        self.timing["truth"] += t2 - t1
        self.timing["write"] += time.perf_counter() - t2
        if len(self._pending) >= FLUSH_FRAMES:
            self.flush()
        return record


def classes_by_unprojection(ground: Ground, depth: np.ndarray, intr: Intrinsics, cam_q, cam_enu, planar: bool) -> dict:
    """{class: share of pixels}: the depth image unprojected to world points, each point's class
    read from the world's class layers around it (Ground's fine tier near the vehicle, coarse beyond)."""
    pts, hit = unproject(depth, intr, cam_q, cam_enu, planar=planar)
    ground.around(float(cam_enu[0]), float(cam_enu[1]))
    ids, _ = ground.layers(pts[hit, 0], pts[hit, 1])
    return class_fractions(ids, int((~hit).sum()))


def _record_lockstep(client, recorder: Recorder, future, interval_s: float) -> None:
    """The sim is paused: capture, advance interval_s of sim time, wait for the pause; a last
    capture when the motion call has answered."""
    while True:
        recorder.capture()
        if _done(future):
            return
        client.simContinueForTime(interval_s)
        while not client.simIsPause() and not _done(future):
            time.sleep(PAUSE_POLL_S)


def _record_realtime(client, recorder: Recorder, future, interval_s: float, start_ns: int) -> None:
    """The sim runs freely: capture whenever the sim clock passes the next capture time, and once
    more when the motion call has answered."""
    next_ns = start_ns
    while not _done(future):
        if client.getMultirotorState(vehicle_name=recorder.mission.vehicle).timestamp >= next_ns:
            recorder.capture()
            next_ns += int(interval_s * 1e9)
        else:
            time.sleep(PAUSE_POLL_S)
    recorder.capture()


def fly_mission(client, airsim, mission: Mission, world: World, out: Path | str | None, lockstep: bool = True,
                log=lambda msg: None) -> dict:
    """Fly `mission` with a connected official client (`airsim` is the imported package), record
    a dataset into `out` (None: fly only) and return the run's summary (also in dataset.json)."""
    v = mission.vehicle
    client.enableApiControl(True, vehicle_name=v)
    client.armDisarm(True, vehicle_name=v)
    home = client.getHomeGeoPoint(vehicle_name=v)
    home_enu = frames.geodetic_to_enu(home.latitude, home.longitude, home.altitude, world.spec.origin)
    state = client.getMultirotorState(vehicle_name=v)
    start = frames.airsim_to_enu(_vec(state.kinematics_estimated.position), home_enu)
    path = plan_path(mission, (start[0], start[1]), lambda x, y: world.height_at(x, y)[1])
    log(f"path: {len(path.points)} points, {path.length_m:.0f} m, from {start[0]:.0f},{start[1]:.0f} "
        f"at {path.points[0, 2]:.0f} m up to {path.points[:, 2].max():.0f} m")
    writer = DatasetWriter(out) if out is not None and mission.capture is not None else None
    recorder = Recorder(client, airsim, mission, world, home_enu, writer) if writer else None
    t_wall = time.perf_counter()
    t_sim0 = state.timestamp
    if state.landed_state == airsim.LandedState.Landed:
        client.takeoffAsync(vehicle_name=v).join()
    first = frames.enu_to_airsim(path.points[0], home_enu)
    client.moveToZAsync(float(first[2]), min(mission.speed, CLIMB_SPEED_MAX), vehicle_name=v).join()
    ned = [airsim.Vector3r(*map(float, frames.enu_to_airsim(p, home_enu))) for p in path.points[1:]]
    sim_budget_s = path.length_m / mission.speed * 3 + 60
    path_wall0 = time.perf_counter()
    if recorder and lockstep:
        client.simPause(True)  # before the path's start time is read: the clock stands still from here
    path_t0 = client.getMultirotorState(vehicle_name=v).timestamp
    future = client.moveOnPathAsync(ned, mission.speed, timeout_sec=sim_budget_s, drivetrain=airsim.DrivetrainType.ForwardOnly,
                                    yaw_mode=airsim.YawMode(False, 0), vehicle_name=v)
    end_state = None
    try:
        if recorder is None:
            future.join()
        elif lockstep:
            _record_lockstep(client, recorder, future, mission.capture.interval_s)
        else:
            _record_realtime(client, recorder, future, mission.capture.interval_s, path_t0)
        if recorder:
            end_state = client.getMultirotorState(vehicle_name=v)  # the path's end: the sim clock before the flush
            recorder.flush()  # the last frames' heights and records: part of recording the path
    finally:
        if recorder and lockstep:
            client.simPause(False)
    reached = future.get()
    path_wall_s = time.perf_counter() - path_wall0
    collision = client.simGetCollisionInfo(vehicle_name=v)
    if end_state is None:
        end_state = client.getMultirotorState(vehicle_name=v)
    end = frames.airsim_to_enu(_vec(end_state.kinematics_estimated.position), home_enu)
    miss = float(np.linalg.norm(end - path.points[-1]))
    if not reached:
        what = f"collided with {collision.object_name} at NED {_vec(collision.impact_point).round(1).tolist()}" \
            if collision.has_collided else "stopped before the end (timeout or cancelled)"
        raise FlightError(f"mission {mission.name!r}: the vehicle {what}; {miss:.1f} m from the last point")
    sim_s = (end_state.timestamp - path_t0) / 1e9
    wall_s = time.perf_counter() - t_wall
    if mission.land:
        client.landAsync(vehicle_name=v).join()
    summary = {"mission": mission.name, "vehicle": v or None, "home_enu": home_enu.tolist(),
               "path_enu": path.points.round(3).tolist(), "path_length_m": path.length_m,
               "end_miss_m": miss, "path_sim_s": sim_s, "total_sim_s": (client.getMultirotorState(vehicle_name=v).timestamp - t_sim0) / 1e9,
               "path_wall_s": path_wall_s, "wall_s": wall_s, "lockstep": lockstep, "world": world.spec.to_dict(),
               "capture": asdict(mission.capture) if mission.capture else None,
               "capture_s_mean": recorder.seconds / max(recorder.frames, 1) if recorder else None,
               "capture_ms": {k: round(1000 * v / max(recorder.frames, 1), 2) for k, v in recorder.timing.items()}
               if recorder else None}
    if writer:
        t = time.perf_counter()
        writer.finish(summary)  # syncs every file to disk, then writes dataset.json
        summary["frames"] = writer.count
        summary["finish_s"] = time.perf_counter() - t
    return summary
