"""Missions: the file format (JSON or YAML, docs/airsim.md) and the terrain-following path planner.

A mission is a list of waypoints in world ENU metres or geodetic degrees, each with an altitude
above the generated surface (agl) or above sea level (asl), a speed and what to capture. The
planner densifies every leg over the relief, lifts it to the requested height above the highest
surface near the track (so the path never runs into terrain or buildings), limits its climb and
descent grade, and thins it back to the points that matter. Pure functions; no I/O but `load_mission`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core import frames
from ..core.errors import WorldstreamError
from ..core.spec import GeoOrigin

IMAGE_TYPES = {"scene": 0, "depth_planar": 1, "depth_perspective": 2, "segmentation": 5}
REFERENCES = ("agl", "asl")

SurfaceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N,) x, y world metres -> (N,) surface z


class MissionError(WorldstreamError, ValueError):
    """A mission file is malformed; the message names the field and what was expected."""


@dataclass(frozen=True)
class Waypoint:
    """x, y: world ENU metres; altitude: metres above the surface (agl) or world ENU z (asl)."""

    x: float
    y: float
    altitude: float
    reference: str


@dataclass(frozen=True)
class Capture:
    interval_s: float = 1.0
    camera: str = "bottom_center"
    images: tuple[str, ...] = ("scene", "depth_planar", "segmentation")


@dataclass(frozen=True)
class Mission:
    waypoints: tuple[Waypoint, ...]
    speed: float = 10.0
    capture: Capture | None = Capture()
    vehicle: str = ""
    clearance_m: float = 10.0  # the least height above any surface near the track, whatever the altitude asked
    max_grade: float = 0.5  # climb or descent per metre flown
    land: bool = True
    name: str = "mission"


def _number(value, where: str, low: float = -math.inf, high: float = math.inf, strict_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MissionError(f"{where}: expected a number, got {value!r}")
    if value < low or (strict_low and value <= low) or value > high:
        bound = f"> {low}" if strict_low else f">= {low}"
        raise MissionError(f"{where}: expected a number {bound}" + (f" and <= {high}" if high < math.inf else "")
                           + f", got {value!r}")
    return float(value)


def _altitude(doc, where: str, default: tuple[float, str] | None) -> tuple[float, str]:
    if doc is None:
        if default is None:
            raise MissionError(f"{where}: an altitude is required, e.g. {{reference: agl, value: 60}}")
        return default
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return _number(doc, where), default[1] if default else "agl"
    if not isinstance(doc, dict) or set(doc) - {"reference", "value"}:
        raise MissionError(f"{where}: expected a number or {{reference: agl|asl, value: metres}}, got {doc!r}")
    ref = doc.get("reference", "agl")
    if ref not in REFERENCES:
        raise MissionError(f"{where}.reference: expected one of {', '.join(REFERENCES)}, got {ref!r}")
    return _number(doc.get("value"), f"{where}.value"), ref


def parse_mission(doc, origin: GeoOrigin) -> Mission:
    """A mission document (the parsed JSON or YAML) -> Mission, geodetic waypoints converted to
    world ENU with the world's origin. Raises MissionError naming the first bad field."""
    if not isinstance(doc, dict):
        raise MissionError(f"a mission must be a mapping with 'waypoints', got {type(doc).__name__}")
    known = {"name", "vehicle", "frame", "altitude", "speed", "clearance_m", "max_grade", "capture", "land", "waypoints"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise MissionError(f"unknown mission field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    frame = doc.get("frame", "world")
    if frame not in ("world", "geodetic"):
        raise MissionError(f"frame: expected 'world' (ENU metres) or 'geodetic' (degrees), got {frame!r}")
    default_alt = _altitude(doc.get("altitude"), "altitude", (60.0, "agl"))
    raw = doc.get("waypoints")
    if not isinstance(raw, list) or not raw:
        raise MissionError("waypoints: expected a non-empty list")
    points = []
    for i, w in enumerate(raw):
        where = f"waypoints[{i}]"
        if isinstance(w, (list, tuple)):
            if len(w) not in (2, 3):
                raise MissionError(f"{where}: expected [x, y] or [x, y, altitude] ([lat, lon, ...] in the geodetic frame)")
            a, b = _number(w[0], f"{where}[0]"), _number(w[1], f"{where}[1]")
            alt = _altitude(w[2] if len(w) == 3 else None, f"{where}[2]", default_alt)
        elif isinstance(w, dict):
            names = ("lat", "lon") if frame == "geodetic" else ("x", "y")
            extra = set(w) - set(names) - {"altitude"}
            if extra or not all(n in w for n in names):
                raise MissionError(f"{where}: expected keys {names[0]}, {names[1]} and optionally altitude "
                                   f"(frame {frame}), got {sorted(w)}")
            a, b = _number(w[names[0]], f"{where}.{names[0]}"), _number(w[names[1]], f"{where}.{names[1]}")
            alt = _altitude(w.get("altitude"), f"{where}.altitude", default_alt)
        else:
            raise MissionError(f"{where}: expected a list or a mapping, got {w!r}")
        if frame == "geodetic":
            _number(a, f"{where} latitude", -90, 90)
            _number(b, f"{where} longitude", -180, 180)
            x, y = (float(v) for v in frames.geodetic_to_enu(a, b, origin.alt, origin)[:2])
        else:
            x, y = a, b
        value, ref = alt
        if ref == "asl":
            value -= origin.alt  # world ENU z is height above the origin's altitude
        points.append(Waypoint(x, y, value, ref))
    cap = doc.get("capture", {})
    capture = None
    if cap is not None:
        if not isinstance(cap, dict) or set(cap) - {"interval_s", "camera", "images"}:
            raise MissionError(f"capture: expected {{interval_s, camera, images}} or null, got {cap!r}")
        images = tuple(cap.get("images", Capture.images))
        bad = [t for t in images if t not in IMAGE_TYPES]
        if bad or not images:
            raise MissionError(f"capture.images: expected a non-empty list of {', '.join(IMAGE_TYPES)}, got {list(images)}")
        capture = Capture(_number(cap.get("interval_s", 1.0), "capture.interval_s", 0.0, strict_low=True),
                          str(cap.get("camera", Capture.camera)), images)
    land = doc.get("land", True)
    if not isinstance(land, bool):
        raise MissionError(f"land: expected true or false, got {land!r}")
    return Mission(waypoints=tuple(points),
                   speed=_number(doc.get("speed", 10.0), "speed", 0.0, 100.0, strict_low=True),
                   capture=capture, vehicle=str(doc.get("vehicle", "")),
                   clearance_m=_number(doc.get("clearance_m", 10.0), "clearance_m", 0.0),
                   max_grade=_number(doc.get("max_grade", 0.5), "max_grade", 0.0, 10.0, strict_low=True),
                   land=land, name=str(doc.get("name", "mission")))


def load_mission(path: Path | str, origin: GeoOrigin) -> Mission:
    """Read a mission file: .json, or .yaml / .yml."""
    path = Path(path)
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the file's fault
        raise MissionError(f"{path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {exc}") from None
    return parse_mission(doc, origin)


@dataclass(frozen=True, eq=False)
class PlannedPath:
    """points: (N, 3) float64 world ENU metres, the path to fly (thinned); dense: (M, 3) the
    densified path before thinning; floor: (M,) the least z allowed at each dense point."""

    points: np.ndarray
    dense: np.ndarray
    floor: np.ndarray

    @property
    def length_m(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


def plan_path(mission: Mission, start_xy: tuple[float, float], surface: SurfaceFn, step_m: float = 5.0,
              tolerance_m: float = 1.0) -> PlannedPath:
    """The path from start_xy through every waypoint, following the terrain.

    Each dense sample's envelope is the highest surface within `reach` of it (a ring stencil;
    reach covers a path follower cutting corners by half a second of flight); agl legs fly their
    altitude above that envelope, asl legs at their altitude; nothing goes below envelope +
    clearance (agl legs: + min(clearance, agl)); grades are then limited by raising points only,
    and the path is thinned where a straight segment stays within tolerance_m and above the floor."""
    wps = mission.waypoints
    first = Waypoint(float(start_xy[0]), float(start_xy[1]), wps[0].altitude, wps[0].reference)
    legs = list(zip((first,) + wps[:-1], wps))
    xy, alt, ref = [np.array([[first.x, first.y]])], [np.array([first.altitude])], [np.array([first.reference == "agl"])]
    for a, b in legs:
        n = max(1, math.ceil(math.hypot(b.x - a.x, b.y - a.y) / step_m))
        t = np.arange(1, n + 1) / n
        xy.append(np.stack([a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t], axis=1))
        alt.append(a.altitude + (b.altitude - a.altitude) * t if a.reference == b.reference else np.full(n, b.altitude))
        ref.append(np.full(n, b.reference == "agl"))
    xy, alt, agl = np.concatenate(xy), np.concatenate(alt), np.concatenate(ref)
    reach = max(8.0, 0.5 * mission.speed + 2.0)
    envelope = _envelope(xy, surface, reach)
    envelope = _along_track_max(envelope, max(1, math.ceil(reach / step_m)))
    floor = envelope + np.where(agl, np.minimum(mission.clearance_m, np.maximum(alt, 0.0)), mission.clearance_m)
    z = np.maximum(np.where(agl, envelope + alt, alt), floor)
    z = _limit_grade(z, np.r_[0.0, np.linalg.norm(np.diff(xy, axis=0), axis=1)], mission.max_grade)
    dense = np.column_stack([xy, z])
    keep = _thin(dense, floor, tolerance_m)
    return PlannedPath(points=dense[keep], dense=dense, floor=floor)


def _envelope(xy: np.ndarray, surface: SurfaceFn, reach: float) -> np.ndarray:
    """(N, 2) -> (N,) the highest surface at the point and on two rings (reach/2, reach) around it."""
    angles = np.arange(8) * (math.pi / 4)
    ring = np.concatenate([[[0.0, 0.0]], *[r * np.stack([np.cos(angles), np.sin(angles)], 1) for r in (reach / 2, reach)]])
    pts = (xy[:, None, :] + ring[None]).reshape(-1, 2)
    return np.asarray(surface(pts[:, 0], pts[:, 1]), np.float64).reshape(len(xy), -1).max(axis=1)


def _along_track_max(values: np.ndarray, half_window: int) -> np.ndarray:
    out = values.copy()
    for k in range(1, half_window + 1):
        out[k:] = np.maximum(out[k:], values[:-k])
        out[:-k] = np.maximum(out[:-k], values[k:])
    return out


def _limit_grade(z: np.ndarray, ds: np.ndarray, grade: float) -> np.ndarray:
    """Raise points so |dz| <= grade * ds between neighbours: climbs start early, descents end late."""
    z = z.copy()
    for i in range(len(z) - 2, -1, -1):
        z[i] = max(z[i], z[i + 1] - grade * ds[i + 1])
    for i in range(1, len(z)):
        z[i] = max(z[i], z[i - 1] - grade * ds[i])
    return z


def _thin(dense: np.ndarray, floor: np.ndarray, tolerance_m: float) -> np.ndarray:
    """Indices of the points to keep: greedy, each segment as long as every sample it skips lies
    within tolerance_m of it and the segment passes above the floor there."""
    keep, i, n = [0], 0, len(dense)
    while i < n - 1:
        j = i + 1
        while j + 1 < n:
            k = np.arange(i + 1, j + 2)
            cand = j + 1
            t = (k - i) / (cand - i)  # samples are evenly spaced within a leg; across legs this is conservative
            seg = dense[i] + (dense[cand] - dense[i]) * t[:, None]
            inner = k[:-1]
            s = seg[:-1]
            if (np.linalg.norm(s - dense[inner], axis=1) > tolerance_m).any() or (s[:, 2] < floor[inner]).any():
                break
            j = cand
        keep.append(j)
        i = j
    return np.array(keep)
