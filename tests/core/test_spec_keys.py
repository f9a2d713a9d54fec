import json
import math

import pytest
from hypothesis import given, strategies as st

from worldstream.core import ChunkKey, ChunkKeyError, GeoOrigin, SpecError, WorldSpec, keys_in_radius

specs = st.builds(
    WorldSpec,
    seed=st.integers(0, 2**63 - 1),
    base_resolution=st.sampled_from([0.5, 1.0, 8.0, 64.0, 128.0]),
    chunk_size=st.sampled_from([16, 64, 256, 1024]),
    levels=st.integers(1, 24),
    origin=st.builds(GeoOrigin, lat=st.floats(-90, 90), lon=st.floats(-180, 180), alt=st.floats(-100, 5000)),
    generator_params=st.dictionaries(st.sampled_from(["relief", "lakes", "urbanization"]), st.floats(0, 3)),
)


@given(specs)
def test_spec_json_round_trip(spec):
    assert WorldSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["seed"] == spec.seed


@pytest.mark.parametrize("kwargs, words", [
    ({"seed": -1}, "seed"), ({"seed": 2**63}, "seed"), ({"base_resolution": 3.0}, "power of two"),
    ({"base_resolution": float("nan")}, "base_resolution"), ({"chunk_size": 100}, "chunk_size"),
    ({"levels": 0}, "levels"), ({"generator_params": {"x": object()}}, "JSON"),
])
def test_spec_rejects_bad_values_with_a_clear_message(kwargs, words):
    with pytest.raises(SpecError, match=words):
        WorldSpec(**kwargs)
    with pytest.raises(ValueError):  # SpecError is also a ValueError
        WorldSpec(**kwargs)


def test_spec_rejects_bad_json():
    with pytest.raises(SpecError, match="not valid JSON"):
        WorldSpec.from_json("{")
    with pytest.raises(SpecError, match="unknown world spec fields"):
        WorldSpec.from_json('{"seed": 1, "colour": 3}')
    with pytest.raises(SpecError, match="lat"):
        GeoOrigin(lat=91)


keys = st.builds(ChunkKey, level=st.integers(1, 29), x=st.integers(-2**38, 2**38), y=st.integers(-2**38, 2**38))


@given(keys)
def test_parent_children_neighbours(key):
    assert key in key.parent().children()
    for child in key.children():
        assert child.parent() == key
    assert len(set(key.neighbours())) == 8 and key not in key.neighbours()
    assert ChunkKey.parse(key.path()) == key


@given(keys)
def test_bounds_nest_and_at_finds_the_chunk(key):
    spec = WorldSpec(levels=24, base_resolution=64.0)
    if key.level >= spec.levels:
        return
    w, s, e, n = key.bounds(spec)
    assert e - w == spec.chunk_extent(key.level) == n - s
    assert ChunkKey.at(spec, w, s, key.level) == key
    assert ChunkKey.at(spec, (w + e) / 2, (s + n) / 2, key.level) == key
    pw, ps, pe, pn = key.parent().bounds(spec)
    assert pw <= w < e <= pe and ps <= s < n <= pn


def test_key_errors():
    for bad in [(0, 1.5, 0), (-1, 0, 0), (0, 2**41, 0), (True, 0, 0)]:
        with pytest.raises(ChunkKeyError):
            ChunkKey(*bad)
    with pytest.raises(ChunkKeyError, match="no parent"):
        ChunkKey(0, 0, 0).parent()
    with pytest.raises(ChunkKeyError, match="level/x/y"):
        ChunkKey.parse("1/2")


def test_keys_in_radius_covers_the_square():
    spec = WorldSpec()
    e = spec.chunk_extent(6)
    ks = keys_in_radius(spec, 10.0, -10.0, 300.0, 6)
    xs = sorted({k.x for k in ks})
    assert xs[0] * e <= 10.0 - 300.0 and (xs[-1] + 1) * e >= 10.0 + 300.0
    assert len(ks) == len(xs) ** 2 and math.isclose(len(xs), 4)
    assert keys_in_radius(spec, 0.0, 0.0, 0.0, 6) == [ChunkKey(6, 0, 0)]
