"""Mission files and the terrain-following planner (no simulator needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldstream.airsim_adapter.mission import MissionError, load_mission, parse_mission, plan_path
from worldstream.core import World, WorldSpec
from worldstream.core import frames

SPEC = WorldSpec(seed=7)  # the session's world (tests/conftest.py `world`), whose chunks the simulator tests reuse
ORIGIN = SPEC.origin


def surface_fn(world):
    return lambda x, y: world.height_at(x, y)[1]


@pytest.mark.parametrize("doc, message", [
    ({}, "waypoints: expected a non-empty list"),
    ({"waypoints": [[0, 0]], "sped": 3}, "unknown mission field(s) sped"),
    ({"waypoints": [[0]]}, "waypoints[0]: expected [x, y] or [x, y, altitude]"),
    ({"waypoints": [{"x": 1}]}, "waypoints[0]: expected keys x, y"),
    ({"waypoints": [[0, "a"]]}, "waypoints[0][1]: expected a number, got 'a'"),
    ({"waypoints": [[0, 0]], "altitude": {"reference": "msl", "value": 3}}, "altitude.reference: expected one of agl, asl"),
    ({"waypoints": [[0, 0]], "speed": 0}, "speed: expected a number > 0.0"),
    ({"waypoints": [[0, 0]], "capture": {"images": ["infrared"]}}, "capture.images: expected a non-empty list of scene"),
    ({"frame": "geodetic", "waypoints": [[91, 8]]}, "waypoints[0] latitude: expected a number >= -90"),
    ({"frame": "utm", "waypoints": [[0, 0]]}, "frame: expected 'world'"),
    ([1, 2], "a mission must be a mapping"),
])
def test_bad_missions_say_what_was_expected(doc, message):
    with pytest.raises(MissionError) as err:
        parse_mission(doc, ORIGIN)
    assert message in str(err.value)


def test_geodetic_and_asl_waypoints_land_on_world_coordinates(tmp_path):
    lat, lon, _ = frames.enu_to_geodetic(np.array([1200.0, -800.0, 0.0]), ORIGIN)
    doc = {"frame": "geodetic", "speed": 12, "altitude": {"reference": "asl", "value": ORIGIN.alt + 500.0},
           "waypoints": [[float(lat), float(lon)], {"lat": float(lat), "lon": float(lon), "altitude": 80}]}
    m = parse_mission(doc, ORIGIN)
    assert abs(m.waypoints[0].x - 1200.0) < 0.05 and abs(m.waypoints[0].y + 800.0) < 0.05
    assert (m.waypoints[0].altitude, m.waypoints[0].reference) == (500.0, "asl")
    assert (m.waypoints[1].altitude, m.waypoints[1].reference) == (80.0, "asl")  # a bare number keeps the default reference
    (tmp_path / "m.json").write_text(json.dumps(doc))
    yaml_text = "frame: geodetic\nspeed: 12\naltitude: {reference: asl, value: %r}\nwaypoints:\n  - [%r, %r]\n  - {lat: %r, lon: %r, altitude: 80}\n" % (
        ORIGIN.alt + 500.0, float(lat), float(lon), float(lat), float(lon))
    (tmp_path / "m.yaml").write_text(yaml_text)
    assert load_mission(tmp_path / "m.json", ORIGIN) == load_mission(tmp_path / "m.yaml", ORIGIN) == m
    (tmp_path / "bad.yaml").write_text("waypoints: [[0, 0]\n")
    with pytest.raises(MissionError, match="not valid YAML"):
        load_mission(tmp_path / "bad.yaml", ORIGIN)


def sampled_clearance(world, points: np.ndarray) -> np.ndarray:
    """Height above the surface along every straight segment of the path, every metre."""
    out = []
    for a, b in zip(points[:-1], points[1:]):
        t = np.linspace(0.0, 1.0, int(np.linalg.norm(b[:2] - a[:2])) + 2)[:, None]
        s = a + (b - a) * t
        out.append(s[:, 2] - world.height_at(s[:, 0], s[:, 1])[1])
    return np.concatenate(out)


def test_the_planned_path_follows_the_terrain_and_never_enters_it(world):
    # across the ridge 4.5 km east of the origin (the collision test's mountain), then back over a town
    m = parse_mission({"speed": 15, "altitude": {"reference": "agl", "value": 40}, "clearance_m": 10, "max_grade": 0.4,
                       "waypoints": [[4400, 0], [4900, 0], [4900, 300]]}, ORIGIN)
    path = plan_path(m, (4300.0, -50.0), surface_fn(world))
    clearance = sampled_clearance(world, path.points)
    assert clearance.min() > 10.0  # the straight segments flown never come closer than the clearance (trees too)
    # over bare relief (no trees: crowns a few metres apart make the surface's upper envelope, which
    # the path follows, much higher than the surface under the path) it flies the height asked
    bare = World(WorldSpec(seed=7, generator_params=(("vegetation", 0),)), cache_chunks=0)
    bare_path = plan_path(m, (4300.0, -50.0), surface_fn(bare))
    agl = bare_path.dense[:, 2] - bare.height_at(bare_path.dense[:, 0], bare_path.dense[:, 1])[1]
    assert np.median(agl) == pytest.approx(40.0, abs=3.0)  # follows the terrain at the height asked
    assert path.points[:, 2].max() - path.points[:, 2].min() > 40.0  # ... which here climbs
    d = np.diff(path.dense, axis=0)
    grade = np.abs(d[:, 2]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    assert grade.max() <= 0.4 + 1e-9
    assert len(path.points) < len(path.dense) / 3  # thinned
    np.testing.assert_allclose(path.points[0, :2], (4300.0, -50.0))
    np.testing.assert_allclose(path.points[-1, :2], (4900.0, 300.0))


def test_asl_legs_below_the_relief_are_lifted_to_the_clearance(world):
    m = parse_mission({"speed": 10, "altitude": {"reference": "asl", "value": ORIGIN.alt + 0.0}, "clearance_m": 15,
                       "waypoints": [[4400, 0], [4900, 0]]}, ORIGIN)
    path = plan_path(m, (4400.0, 0.0), surface_fn(world))
    assert sampled_clearance(world, path.points).min() > 15.0 - 1.0  # thinning tolerance
