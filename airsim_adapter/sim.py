"""The headless AirSim-compatible simulator: vehicles, clock, collisions and the RPC methods the
official client calls (DESIGN.md section 5), with AirSim's argument lists.

Motion calls are coroutines that return when their goal is met (the client's `.join()`); a new
motion call on a vehicle cancels the previous one (which returns False); state queries answer at
any time. The clock advances in steps of at most STEP_S sim seconds, scaled by ClockSpeed.
"""

from __future__ import annotations

import asyncio
import io
import math
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from ..core import frames
from ..core.world import World
from ..render import IMAGE_TYPES, Pose, image_of
from ..render.images import outputs_for
from ..render.view import WorldView
from . import flight, structs
from .flight import Goal, VehicleState
from .ground import Ground
from .settings import CAMERA_NAMES, SimSettings, VehicleSettings

STEP_S = 0.01
GROUND_POLL_S = 0.25  # wall seconds between checks that the ground mosaics are ahead of the vehicle
TICK_S = 0.01  # wall seconds between physics updates
HALF_HEIGHT_M = 0.15  # vehicle body below its centre
SERVER_VERSION = 1
MIN_CLIENT_VERSION = 1


class SimError(RuntimeError):
    """An error the client sees as the call's error text."""


@dataclass
class Vehicle:
    settings: VehicleSettings
    state: VehicleState = field(default_factory=VehicleState)
    api_control: bool = False
    armed: bool = False
    goal: Goal = field(default_factory=lambda: Goal("hover"))
    path_index: int = 0
    done: asyncio.Future | None = None
    timeout_at: float = math.inf
    collision: dict = field(default_factory=structs.collision_info)
    home_enu: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def enu(self, ned=None) -> np.ndarray:
        """Vehicle-frame NED -> world ENU."""
        return frames.airsim_to_enu(self.state.position if ned is None else ned, self.home_enu)


class Simulator:
    """service: a ChunkService for the world (the server's cache, disk cache and worker pool): the
    cameras' ground is then fetched through it in the background; None builds it in process.
    ground: a Ground already filled around the spawn (make_simulator fetches it through the service)."""

    def __init__(self, world: World, settings: SimSettings, service=None, ground: Ground | None = None):
        self.world = world
        self.service = service
        self.ground_fetches = 0
        self.settings = settings
        self.clock_speed = settings.clock_speed
        self.time_s = 0.0
        self.paused = False
        self.pause_at: float | None = None
        self._sleeper: asyncio.Future | None = None  # the physics loop's wait for its next tick
        self._last_tick = time.monotonic()
        self.ground = ground or Ground(world)
        self.vehicles: dict[str, Vehicle] = {}
        for vs in settings.vehicles:
            self.vehicles[vs.name] = self._spawn(vs)
        self.default_vehicle = settings.vehicles[0].name
        self.view = WorldView(service if service is not None else world)  # cameras draw the chunk meshes

    # ------------------------------------------------------------------ world and clock
    def _spawn(self, vs: VehicleSettings) -> Vehicle:
        home = frames.airsim_to_enu(np.asarray(vs.spawn, np.float64), (0.0, 0.0, 0.0))
        self.ground.around(home[0], home[1])
        surface = float(self.ground.surface(home[0:1], home[1:2])[0])
        home[2] = max(home[2], surface + HALF_HEIGHT_M)  # never spawn inside the ground
        v = Vehicle(settings=vs, home_enu=home)
        v.state = VehicleState(yaw=math.radians(vs.yaw_deg), landed=True)
        return v

    def vehicle(self, name: str) -> Vehicle:
        v = self.vehicles.get(name or self.default_vehicle)
        if v is None:
            raise SimError(f"Vehicle with name '{name}' is not found; vehicles: {', '.join(self.vehicles)}")
        return v

    @property
    def time_ns(self) -> int:
        return int(round(self.time_s * 1e9))

    def advance(self, sim_seconds: float) -> None:
        """Run physics for sim_seconds (in steps of at most STEP_S)."""
        steps = max(1, math.ceil(sim_seconds / STEP_S - 1e-9))
        dt = sim_seconds / steps
        for _ in range(steps):
            self.time_s += dt
            for v in self.vehicles.values():
                self._step_vehicle(v, dt)
            if self.pause_at is not None and self.time_s >= self.pause_at - 1e-9:
                self.paused, self.pause_at = True, None
                break

    async def stream_ground(self) -> None:
        """Keep the ground mosaics ahead of the default vehicle through the chunk service."""
        while self.service is not None:
            await asyncio.sleep(GROUND_POLL_S)
            enu = self.vehicles[self.default_vehicle].enu()
            try:
                self.ground_fetches += await self.ground.prefetch(float(enu[0]), float(enu[1]), self.service)
            except Exception as exc:  # noqa: BLE001 - the ground is then built on the spot; say why once per failure
                print(f"worldstream sim: fetching the ground through the chunk service failed ({exc!r}); "
                      f"building it in process until a fetch succeeds", file=sys.stderr)
                await asyncio.sleep(5.0)

    async def run(self) -> None:
        """The physics loop: ClockSpeed sim seconds per wall second while not paused; the ground
        streams alongside it."""
        streamer = asyncio.create_task(self.stream_ground())
        try:
            await self._physics()
        finally:
            streamer.cancel()

    async def _physics(self) -> None:
        """Ticks every TICK_S wall seconds, or sooner when a simContinueForTime span ends earlier
        (ClockSpeed 100 runs 0.2 sim s in 2 wall ms, not in a whole tick); a resume re-plans the
        tick and starts the wall clock it is credited from."""
        loop = asyncio.get_running_loop()
        self._last_tick = time.monotonic()
        while True:
            delay = TICK_S
            if not self.paused and self.pause_at is not None:
                delay = min(delay, max(self.pause_at - self.time_s, 0.0) / max(self.clock_speed, 1e-9))
            self._sleeper = sleeper = loop.create_future()
            timer = loop.call_later(delay, lambda: sleeper.done() or sleeper.set_result(False))
            resumed = await sleeper
            timer.cancel()
            if resumed:
                continue
            now = time.monotonic()
            wall, self._last_tick = min(now - self._last_tick, 0.25), now
            if not self.paused:
                budget = wall * self.clock_speed
                if self.pause_at is not None:
                    budget = min(budget, self.pause_at - self.time_s)
                if budget > 0:
                    self.advance(budget)

    def _step_vehicle(self, v: Vehicle, dt: float) -> None:
        if v.state.landed and v.goal.kind in ("hover", "land", "yaw") or not v.armed and v.state.landed:
            if v.goal.kind == "land":
                self._finish(v, True)
            return
        state, v.path_index = flight.step(v.state, v.goal, dt, v.path_index)
        enu = v.enu(state.position)
        self.ground.around(enu[0], enu[1])
        surface = float(self.ground.surface(enu[0:1], enu[1:2])[0])
        depth = surface + HALF_HEIGHT_M - enu[2]
        if depth > 0:
            down_speed = state.velocity[2]
            lifted = np.array(state.position) - np.array([0.0, 0.0, depth])
            if v.goal.kind == "land" or (v.state.landed and down_speed >= 0):
                state = replace(state, position=tuple(lifted), velocity=(0.0, 0.0, 0.0), landed=v.goal.kind == "land")
            else:
                self._collide(v, state, enu, surface, depth)
                state = replace(state, position=tuple(lifted), velocity=(0.0, 0.0, 0.0), acceleration=(0.0, 0.0, 0.0))
                v.state = state
                self._finish(v, False)
                v.goal = Goal("hover")
                return
        v.state = state
        if self.time_s >= v.timeout_at:
            self._finish(v, False)
            v.goal = Goal("hover")
        elif flight.arrived(state, v.goal, self.time_s, v.path_index):
            if v.goal.kind == "velocity":
                v.goal = Goal("hover")
            self._finish(v, True)

    def _collide(self, v: Vehicle, state: VehicleState, enu, surface: float, depth: float) -> None:
        e = 1.0
        sx = self.ground.surface(np.array([enu[0] + e, enu[0] - e]), np.array([enu[1]] * 2))
        sy = self.ground.surface(np.array([enu[0]] * 2), np.array([enu[1] + e, enu[1] - e]))
        n_enu = np.array([-(sx[0] - sx[1]) / (2 * e), -(sy[0] - sy[1]) / (2 * e), 1.0])
        n_enu /= np.linalg.norm(n_enu)
        ground = float(self.ground.ground(enu[0:1], enu[1:2])[0])
        name = "terrain"
        if surface - ground > 1.0:  # something stands on the ground: a tree crown or a roof
            crown, _ = self.world.trees_at(enu[0:1], enu[1:2])
            name = "tree" if float(crown[0]) >= surface - ground - 0.5 else "building"
        impact = np.array([enu[0], enu[1], surface])
        v.collision = structs.collision_info(True, frames.enu_to_airsim(n_enu), frames.enu_to_airsim(impact, v.home_enu),
                                             state.position, depth, self.time_ns, name,
                                             {"terrain": 0, "building": 1, "tree": 2}[name])

    def _finish(self, v: Vehicle, ok: bool) -> None:
        if v.done is not None and not v.done.done():
            v.done.set_result(ok)
        v.done = None
        v.timeout_at = math.inf

    async def _command(self, name: str, goal: Goal, timeout_s: float = math.inf) -> bool:
        v = self.vehicle(name)
        if not v.api_control:
            raise SimError("Vehicle cannot be controlled because EnableApiControl is not set")
        if not v.armed:
            raise SimError("Vehicle is not armed: call armDisarm(True) first")
        self._finish(v, False)  # a new motion call cancels the previous one
        v.goal, v.path_index = goal, 0
        v.timeout_at = self.time_s + timeout_s if timeout_s and timeout_s < 1e30 else math.inf
        v.done = asyncio.get_running_loop().create_future()
        if goal.kind != "land" and goal.kind != "hover":
            v.state = replace(v.state, landed=False)
        return await v.done

    # ------------------------------------------------------------------ RPC methods (AirSim names and argument lists)
    def ping(self):
        return True

    def getServerVersion(self):
        return SERVER_VERSION

    def getMinRequiredClientVersion(self):
        return MIN_CLIENT_VERSION

    def listVehicles(self):
        return list(self.vehicles)

    def reset(self):
        for name, v in list(self.vehicles.items()):
            self._finish(v, False)
            self.vehicles[name] = self._spawn(v.settings)

    def enableApiControl(self, is_enabled, vehicle_name=""):
        self.vehicle(vehicle_name).api_control = bool(is_enabled)

    def isApiControlEnabled(self, vehicle_name=""):
        return self.vehicle(vehicle_name).api_control

    def armDisarm(self, arm, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        v.armed = bool(arm)
        return True

    def _resume(self) -> None:
        """The clock runs again from now: wake the physics loop to plan its next tick."""
        self._last_tick = time.monotonic()
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.set_result(True)

    def simPause(self, is_paused):
        was_paused = self.paused
        self.paused = bool(is_paused)
        self.pause_at = None
        if was_paused and not self.paused:
            self._resume()

    def simIsPaused(self):
        return self.paused

    def simContinueForTime(self, seconds):
        was_paused = self.paused
        self.pause_at = self.time_s + float(seconds)
        self.paused = False
        if was_paused:
            self._resume()
        elif self._sleeper is not None and not self._sleeper.done():
            self._sleeper.set_result(True)  # running: only the next tick's time changes

    def simGetVehiclePose(self, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        return structs.pose(v.state.position, structs.yaw_quaternion(v.state.yaw))

    def simSetVehiclePose(self, pose, ignore_collision, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        p = structs.from_vector3r(pose["position"])
        q = pose.get("orientation", {})
        w, x, y, z = (q.get(k, 0.0) for k in ("w_val", "x_val", "y_val", "z_val"))
        yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        if not ignore_collision:
            enu = v.enu(p)
            self.ground.around(enu[0], enu[1])
            surface = float(self.ground.surface(enu[0:1], enu[1:2])[0])
            if enu[2] < surface + HALF_HEIGHT_M:
                p[2] -= surface + HALF_HEIGHT_M - enu[2]
        self._finish(v, False)
        v.goal = Goal("hover")
        v.state = replace(v.state, position=tuple(p), velocity=(0.0, 0.0, 0.0), yaw=yaw)

    def simGetGroundTruthKinematics(self, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        s = v.state
        return structs.kinematics(s.position, structs.yaw_quaternion(s.yaw), s.velocity, s.acceleration,
                                  (0.0, 0.0, s.yaw_rate))

    def simGetCollisionInfo(self, vehicle_name=""):
        return self.vehicle(vehicle_name).collision

    def getHomeGeoPoint(self, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        lat, lon, alt = frames.enu_to_geodetic(v.home_enu, self.world.spec.origin)
        return structs.geo_point(float(lat), float(lon), float(alt))

    def getMultirotorState(self, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        s = v.state
        lat, lon, alt = frames.enu_to_geodetic(v.enu(), self.world.spec.origin)
        return {"collision": v.collision,
                "kinematics_estimated": self.simGetGroundTruthKinematics(vehicle_name),
                "gps_location": structs.geo_point(float(lat), float(lon), float(alt)),
                "timestamp": self.time_ns, "landed_state": 0 if s.landed else 1, "rc_data": structs.rc_data(),
                "ready": True, "ready_message": "", "can_arm": True}

    def cancelLastTask(self, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        self._finish(v, False)
        v.goal = Goal("hover")

    async def takeoff(self, timeout_sec=20, vehicle_name=""):
        v = self.vehicle(vehicle_name)
        p = v.state.position
        goal = Goal("position", target=(p[0], p[1], p[2] - flight.TAKEOFF_HEIGHT_M), speed=2.0)
        return await self._command(vehicle_name, goal, timeout_sec)

    async def land(self, timeout_sec=60, vehicle_name=""):
        return await self._command(vehicle_name, Goal("land"), timeout_sec)

    async def hover(self, vehicle_name=""):
        return await self._command(vehicle_name, Goal("hover"))

    async def moveToPosition(self, x, y, z, velocity, timeout_sec=3e38, drivetrain=0, yaw_mode=None, lookahead=-1,
                             adaptive_lookahead=1, vehicle_name=""):
        goal = Goal("position", target=(float(x), float(y), float(z)), speed=_speed(velocity),
                    **_yaw(yaw_mode, drivetrain))
        return await self._command(vehicle_name, goal, timeout_sec)

    async def moveToZ(self, z, velocity, timeout_sec=3e38, yaw_mode=None, lookahead=-1, adaptive_lookahead=1,
                      vehicle_name=""):
        p = self.vehicle(vehicle_name).state.position
        goal = Goal("position", target=(p[0], p[1], float(z)), speed=_speed(velocity), **_yaw(yaw_mode, 0))
        return await self._command(vehicle_name, goal, timeout_sec)

    async def moveOnPath(self, path, velocity, timeout_sec=3e38, drivetrain=0, yaw_mode=None, lookahead=-1,
                         adaptive_lookahead=1, vehicle_name=""):
        points = tuple(tuple(structs.from_vector3r(p)) for p in path)
        if not points:
            raise SimError("moveOnPath needs at least one point")
        goal = Goal("path", path=points, speed=_speed(velocity), **_yaw(yaw_mode, drivetrain))
        return await self._command(vehicle_name, goal, timeout_sec)

    async def moveByVelocity(self, vx, vy, vz, duration, drivetrain=0, yaw_mode=None, vehicle_name=""):
        goal = Goal("velocity", velocity=(float(vx), float(vy), float(vz)), until=self.time_s + float(duration),
                    **_yaw(yaw_mode, drivetrain))
        return await self._command(vehicle_name, goal)

    async def rotateToYaw(self, yaw, timeout_sec=3e38, margin=5, vehicle_name=""):
        goal = Goal("yaw", yaw_target=math.radians(float(yaw)), margin=math.radians(float(margin)))
        return await self._command(vehicle_name, goal, timeout_sec)

    def simGetCameraInfo(self, camera_name, vehicle_name="", external=False):
        v, cam = self._camera(camera_name, vehicle_name)
        pos, q = self._camera_pose(v, cam)
        k = cam.intrinsics.matrix()
        return {"pose": structs.pose(pos, q), "fov": cam.intrinsics.fov_deg,
                "proj_mat": {"matrix": k.tolist()}}

    async def simGetImages(self, requests, vehicle_name="", external=False):
        """One render per camera (all its targets in one pass) serves every image type asked of it;
        poses are taken when the call arrives, and rendering runs off the event loop."""
        if not isinstance(requests, list):
            raise SimError(f"simGetImages takes a list of ImageRequest maps, got {requests!r:.80}")
        parsed = [self._request(r, vehicle_name) for r in requests]
        wanted: dict[str, tuple] = {}
        for v, cam, kind, _, _ in parsed:
            pos, q = self._camera_pose(v, cam)
            entry = wanted.setdefault(cam.name, (v, cam, pos, q, set()))
            entry[4].add(IMAGE_TYPES[kind])
        stamp = self.time_ns
        frames_by_camera = {}
        for name, (v, cam, pos, q, names) in wanted.items():
            frames_by_camera[name] = await self.view.frame(Pose.from_airsim(v.enu(pos), q), cam.intrinsics,
                                                           outputs_for(names))
        return await asyncio.to_thread(  # PNG encoding and float lists of big images: not on the event loop
            lambda: [self._response(frames_by_camera[cam.name], kind, as_float, compress, wanted[cam.name][2:4], stamp)
                     for v, cam, kind, as_float, compress in parsed])

    # ------------------------------------------------------------------ cameras
    def _camera(self, camera_name, vehicle_name):
        v = self.vehicle(vehicle_name)
        name = CAMERA_NAMES.get(str(camera_name), str(camera_name))
        cam = v.settings.cameras.get(name) or v.settings.cameras.get(str(camera_name))
        if cam is None:
            raise SimError(f"Camera with name '{camera_name}' is not found on vehicle '{v.settings.name}'; cameras: "
                           f"{', '.join(v.settings.cameras)}")
        return v, cam

    def _camera_pose(self, v: Vehicle, cam) -> tuple[np.ndarray, tuple]:
        """Camera position (vehicle-frame NED) and orientation (NED quaternion, body FRD)."""
        body = structs.rotation_matrix(structs.yaw_quaternion(v.state.yaw))
        pos = np.asarray(v.state.position) + body @ np.asarray(cam.offset)
        q = structs.yaw_quaternion(v.state.yaw + math.radians(cam.yaw_deg), math.radians(cam.pitch_deg),
                                   math.radians(cam.roll_deg))
        return pos, q

    def _request(self, request, vehicle_name: str) -> tuple:
        if not isinstance(request, dict):
            raise SimError(f"an ImageRequest must be a map {{camera_name, image_type, pixels_as_float, compress}}, "
                           f"got {request!r:.80}")
        kind = int(request.get("image_type", 0))
        if kind not in IMAGE_TYPES:
            raise SimError(f"image_type {kind} is not rendered; supported: "
                           + ", ".join(f"{k} ({n})" for k, n in IMAGE_TYPES.items()))
        v, cam = self._camera(request.get("camera_name", "0"), vehicle_name)
        return v, cam, kind, bool(request.get("pixels_as_float", False)), bool(request.get("compress", True))

    def _response(self, frame, kind: int, as_float: bool, compress: bool, pose, stamp: int) -> dict:
        w, h = frame.intrinsics.width, frame.intrinsics.height
        data = image_of(frame, IMAGE_TYPES[kind])
        raw, floats = b"", []
        if as_float:
            values = data if data.ndim == 2 else data.mean(axis=2)
            floats = np.ascontiguousarray(values, np.float32).reshape(-1)  # packed as AirSim's float vector
        else:
            if data.ndim == 2:  # float images as 8 bit: depth in metres clipped to 255, unit images scaled
                scale = 255.0 if IMAGE_TYPES[kind] in ("depth_vis", "disparity_normalized") else 1.0
                data = np.repeat(np.clip(np.rint(data * scale), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            if compress:
                raw = _png(data)
            else:
                raw = np.ascontiguousarray(data[..., ::-1]).tobytes()  # BGR, as AirSim
        pos, q = pose
        return structs.image_response(raw, floats, pos, q, stamp, w, h, kind, as_float, compress and not as_float)


def _png(image: np.ndarray) -> bytes:
    """PNG at zlib level 1: at AirSim's small camera sizes a level-6 encode cost more than drawing
    (8 ms or more a 256x144 image on this 2-core machine, several times level 1's) for files only
    about a quarter smaller."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _speed(velocity) -> float:
    v = float(velocity)
    if not v > 0:
        raise SimError(f"velocity must be > 0 m/s, got {velocity}")
    return v


def _yaw(yaw_mode, drivetrain) -> dict:
    """Goal fields from AirSim's YawMode {is_rate, yaw_or_rate (degrees)} and DrivetrainType."""
    if int(drivetrain or 0) == 1:  # ForwardOnly: face the direction of motion
        return {"face_motion": True}
    if not isinstance(yaw_mode, dict):
        return {"yaw_rate": 0.0}
    value = math.radians(float(yaw_mode.get("yaw_or_rate", 0.0)))
    if yaw_mode.get("is_rate", True):
        return {"yaw_rate": value}
    return {"yaw_target": value}
