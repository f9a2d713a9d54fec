"""AirSim settings.json for a worldstream world: build one (`worldstream airsim settings`) and read
one (the headless simulator). NED origin (AirSim's PlayerStart) = world ENU origin, whose geodetic
position is OriginGeopoint; each vehicle's own frame starts at its spawn point, as in AirSim."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..core.world import World
from ..render.camera import Intrinsics

CAMERA_NAMES = {"0": "front_center", "1": "front_right", "2": "front_left", "3": "bottom_center", "4": "back_center"}
CAMERA_PITCH_DEG = {"front_center": 0.0, "front_right": 0.0, "front_left": 0.0, "bottom_center": -90.0,
                    "back_center": 0.0}
CAMERA_YAW_DEG = {"back_center": 180.0}
SPAWN_CLEARANCE_M = 0.5


@dataclass(frozen=True)
class CameraSettings:
    name: str
    intrinsics: Intrinsics = Intrinsics()
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # NED metres from the vehicle
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    yaw_deg: float = 0.0


@dataclass(frozen=True)
class VehicleSettings:
    name: str
    spawn: tuple[float, float, float]  # NED metres from PlayerStart (= world ENU origin)
    yaw_deg: float = 0.0
    cameras: dict = field(default_factory=dict)  # name -> CameraSettings


@dataclass(frozen=True)
class SimSettings:
    clock_speed: float = 1.0
    vehicles: tuple[VehicleSettings, ...] = ()


def default_cameras(width: int = 256, height: int = 144, fov_deg: float = 90.0) -> dict:
    intr = Intrinsics(width, height, fov_deg)
    return {n: CameraSettings(n, intr, pitch_deg=CAMERA_PITCH_DEG[n], yaw_deg=CAMERA_YAW_DEG.get(n, 0.0))
            for n in CAMERA_NAMES.values()}


def build_settings(world: World, spawns: dict[str, tuple[float, float]] | None = None, clock_speed: float = 1.0,
                   width: int = 256, height: int = 144, fov_deg: float = 90.0) -> dict:
    """settings.json content: SimMode Multirotor, OriginGeopoint from the world's origin, every
    vehicle (name -> world ENU x, y) spawned SPAWN_CLEARANCE_M above the generated surface, cameras
    with Scene / depth / segmentation capture settings."""
    spawns = spawns or {"Drone1": (0.0, 0.0)}
    o = world.spec.origin
    vehicles = {}
    for name, (x, y) in spawns.items():
        _, surface = world.height_at([x], [y])
        cams = {}
        for cam in CAMERA_NAMES.values():
            cams[cam] = {"CaptureSettings": [{"ImageType": t, "Width": width, "Height": height, "FOV_Degrees": fov_deg}
                                             for t in (0, 1, 2, 5)],
                         "X": 0.0, "Y": 0.0, "Z": 0.0, "Pitch": CAMERA_PITCH_DEG[cam], "Roll": 0.0,
                         "Yaw": CAMERA_YAW_DEG.get(cam, 0.0)}
        vehicles[name] = {"VehicleType": "SimpleFlight", "AutoCreate": True, "X": float(y), "Y": float(x),
                          "Z": -float(surface[0]) - SPAWN_CLEARANCE_M, "Yaw": 0.0, "Cameras": cams}
    return {"SettingsVersion": 1.2, "SimMode": "Multirotor", "ClockSpeed": clock_speed,
            "OriginGeopoint": {"Latitude": o.lat, "Longitude": o.lon, "Altitude": o.alt},
            "Vehicles": vehicles, "worldstream": {"world": json.loads(world.spec.to_json())}}


def unreal_plugin_ini(server_url: str = "ws://127.0.0.1:8765/", token: str | None = None,
                      views_per_second: float = 10.0, max_sse: float = 16.0) -> str:
    """The WorldStream Unreal plugin's settings (a Config/DefaultGame.ini section, docs/unreal.md) that
    match a settings.json from build_settings: the PlayerStart (AirSim's NED origin, at OriginGeopoint)
    stands on the world ENU origin, so PlayerStartEnu is (0, 0, 0)."""
    return ("[/Script/WorldStream.WorldStreamSubsystem]\n"
            f"ServerUrl={server_url}\n"
            f"Token={token or ''}\n"
            "bConnectOnBeginPlay=True\n"
            f"ViewsPerSecond={views_per_second:g}\n"
            f"MaxScreenSpaceError={max_sse:g}\n"
            "PlayerStartEnu=(X=0.000000,Y=0.000000,Z=0.000000)\n"
            "RebaseDistanceM=0\n"
            "bComplexCollision=True\n")


def parse_settings(doc: dict) -> SimSettings:
    """settings.json -> SimSettings; raises ValueError naming what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("settings must be a JSON object")
    mode = doc.get("SimMode", "Multirotor")
    if mode not in ("Multirotor", ""):
        raise ValueError(f"SimMode {mode!r} is not supported: the headless simulator flies Multirotor only")
    clock = float(doc.get("ClockSpeed", 1.0))
    if not 0 < clock <= 100:
        raise ValueError(f"ClockSpeed must be in (0, 100], got {clock}")
    vehicles = []
    for name, v in (doc.get("Vehicles") or {"SimpleFlight": {}}).items():
        kind = v.get("VehicleType", "SimpleFlight")
        if kind not in ("SimpleFlight", "PX4Multirotor", "ArduCopter"):
            raise ValueError(f"vehicle {name}: VehicleType {kind!r} is not a multirotor")
        cams = default_cameras()
        for cname, c in (v.get("Cameras") or {}).items():
            cap = next((s for s in c.get("CaptureSettings", []) if s.get("ImageType", 0) == 0),
                       (c.get("CaptureSettings") or [{}])[0])
            intr = Intrinsics(int(cap.get("Width", 256)), int(cap.get("Height", 144)), float(cap.get("FOV_Degrees", 90)))
            cams[cname] = CameraSettings(cname, intr, (float(c.get("X", 0)), float(c.get("Y", 0)), float(c.get("Z", 0))),
                                         float(c.get("Pitch", 0)), float(c.get("Roll", 0)), float(c.get("Yaw", 0)))
        vehicles.append(VehicleSettings(name, (float(v.get("X", 0)), float(v.get("Y", 0)), float(v.get("Z", 0))),
                                        float(v.get("Yaw", 0)), cams))
    return SimSettings(clock_speed=clock, vehicles=tuple(vehicles))
