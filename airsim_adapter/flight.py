"""A SimpleFlight-like multirotor, reduced to what scripts observe: velocity tracking with an
acceleration limit, yaw tracking with a rate limit, and the goals of AirSim's motion calls.
Positions are NED metres in the vehicle's frame (origin at its spawn point); pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

MAX_ACCEL = 6.0  # m/s^2
MAX_YAW_RATE = math.radians(120.0)  # rad/s
ARRIVAL_M = 0.2
TAKEOFF_HEIGHT_M = 3.0
LAND_SPEED = 1.5  # m/s


@dataclass(frozen=True)
class VehicleState:
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # NED, vehicle frame
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    acceleration: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0  # radians, NED (0 north, clockwise seen from above)
    yaw_rate: float = 0.0
    landed: bool = True


@dataclass(frozen=True)
class Goal:
    """What the current motion call asks for. kind: hover | position | path | velocity | yaw | land.
    target: NED (3,) for position; path: waypoints; velocity: NED (3,) with `until` (sim s);
    yaw_target (rad) or yaw_rate (rad/s) per the call's YawMode; speed: m/s."""

    kind: str
    target: tuple | None = None
    path: tuple = ()
    speed: float = 5.0
    velocity: tuple | None = None
    until: float = math.inf
    yaw_target: float | None = None
    yaw_rate: float | None = None
    face_motion: bool = False
    margin: float = math.radians(5.0)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def desired_velocity(state: VehicleState, goal: Goal, path_index: int) -> tuple[np.ndarray, int]:
    """(velocity to track, next path index)."""
    p = np.asarray(state.position)
    if goal.kind == "velocity":
        return np.asarray(goal.velocity, np.float64), path_index
    if goal.kind == "land":
        return np.array([0.0, 0.0, LAND_SPEED]), path_index
    if goal.kind in ("position", "path"):
        points = [goal.target] if goal.kind == "position" else list(goal.path)
        i = path_index
        while i < len(points) - 1 and np.linalg.norm(np.asarray(points[i]) - p) < max(1.0, goal.speed * 0.5):
            i += 1
        d = np.asarray(points[i], np.float64) - p
        dist = float(np.linalg.norm(d))
        if dist < 1e-6:
            return np.zeros(3), i
        last = i == len(points) - 1
        speed = min(goal.speed, math.sqrt(2 * 0.8 * MAX_ACCEL * dist), 1.5 * dist) if last else goal.speed
        return d / dist * speed, i
    return np.zeros(3), path_index


def step(state: VehicleState, goal: Goal, dt: float, path_index: int = 0) -> tuple[VehicleState, int]:
    """Advance dt seconds towards the goal."""
    want, path_index = desired_velocity(state, goal, path_index)
    v = np.asarray(state.velocity)
    dv = want - v
    limit = MAX_ACCEL * dt
    n = np.linalg.norm(dv)
    if n > limit:
        dv *= limit / n
    v_new = v + dv
    p_new = np.asarray(state.position) + (v + v_new) / 2 * dt
    yaw = state.yaw
    if goal.yaw_rate is not None:
        rate = max(-MAX_YAW_RATE, min(MAX_YAW_RATE, goal.yaw_rate))
    else:
        target = goal.yaw_target
        if goal.face_motion and np.hypot(v_new[0], v_new[1]) > 0.5:
            target = math.atan2(v_new[1], v_new[0])
        rate = 0.0 if target is None else max(-MAX_YAW_RATE, min(MAX_YAW_RATE, _wrap(target - yaw) / max(dt, 1e-3)))
    yaw = _wrap(yaw + rate * dt)
    return replace(state, position=tuple(p_new), velocity=tuple(v_new), acceleration=tuple(dv / max(dt, 1e-9)),
                   yaw=yaw, yaw_rate=rate, landed=False), path_index


def arrived(state: VehicleState, goal: Goal, now: float, path_index: int) -> bool:
    """Is the goal met (the call may return)?"""
    speed = float(np.linalg.norm(state.velocity))
    if goal.kind == "position" or goal.kind == "path":
        end = goal.target if goal.kind == "position" else goal.path[-1]
        last = goal.kind == "position" or path_index >= len(goal.path) - 1
        return last and float(np.linalg.norm(np.asarray(end) - state.position)) < ARRIVAL_M and speed < 0.5
    if goal.kind == "velocity":
        return now >= goal.until
    if goal.kind == "yaw":
        return goal.yaw_target is not None and abs(_wrap(goal.yaw_target - state.yaw)) <= goal.margin
    if goal.kind == "land":
        return state.landed
    return True  # hover
