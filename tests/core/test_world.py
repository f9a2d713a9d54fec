"""The guarantees of the world core: seamless, deterministic and order-free, cascade-consistent,
unbounded; and heights, buildings and classes that agree with each other."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from worldstream.core import CLASS_IDS, CLASSES, ChunkKey, World, WorldSpec
from worldstream.core.errors import GeneratorError
from worldstream.core.settlements import footprint_local, roof_surface_np

TOWN = ChunkKey(3, 1, -2)  # seed 7: a chunk with a few thousand buildings
FAR = 2**31


def digest(chunk) -> str:
    h = hashlib.sha256()
    for name, a in sorted(chunk.arrays().items()):
        h.update(name.encode() + np.ascontiguousarray(a).tobytes())
    h.update(repr(chunk.buildings).encode())
    return h.hexdigest()


@pytest.mark.parametrize("key", [ChunkKey(0, 0, 0), ChunkKey(2, -1, 0), TOWN, ChunkKey(6, 20, -40),
                                 ChunkKey(5, FAR, -FAR), ChunkKey(6, -FAR, FAR - 1)])
def test_neighbours_share_border_samples_bit_for_bit(world, key):
    c = world.chunk(key)
    east = world.chunk(ChunkKey(key.level, key.x + 1, key.y))
    north = world.chunk(ChunkKey(key.level, key.x, key.y + 1))
    for name in ("dem", "dsm", "water"):
        a, e, n = getattr(c, name), getattr(east, name), getattr(north, name)
        assert np.array_equal(a[:, -1], e[:, 0]), name
        assert np.array_equal(a[0, :], n[-1, :]), name


def test_a_chunk_makes_building_tuples_only_when_read(spec):
    """Coarse chunks list every building they meet, which only sidecars and fine meshes read: the
    generator keeps them as columns (BuildingTable) that read as the tuple of Building."""
    import pickle

    from worldstream.core.building_table import BuildingTable
    from worldstream.core.settlements import Building
    from worldstream.exporters.formats import export_chunk

    c = World(spec, cache_chunks=0).chunk(TOWN)
    table = c.buildings
    assert isinstance(table, BuildingTable) and len(table) > 500
    export_chunk(c, spec, ("glb",))  # 8 m/px: no building meshes, so no tuples
    assert table._rows is None
    rows = table.rows()
    assert type(rows) is tuple and all(type(b) is Building for b in rows) and table.rows() is rows
    assert table == rows and rows == tuple(table) and repr(table) == repr(rows)
    assert table[3] == rows[3] and table[-2:] == rows[-2:] and table[:0] == ()
    assert table != rows[:-1] and table != list(rows)
    again = pickle.loads(pickle.dumps(table))
    assert again._rows is None and again == table
    assert {type(v) for v in rows[0]} == {int, tuple, float, str}
    with pytest.raises(ValueError, match="rows"):
        BuildingTable(*(col[:1] if i == 2 else col for i, col in enumerate(table._columns)))


def test_town_chunk_has_buildings_that_raise_the_dsm_not_the_dem(world):
    c = world.chunk(TOWN)
    assert len(c.buildings) > 500
    ids = {b.id for b in c.buildings}
    assert len(ids) == len(c.buildings)
    on_building = c.semantic == CLASS_IDS["building"]
    assert set(np.unique(c.instances[on_building]).tolist()) <= ids
    assert np.array_equal(c.instances > 0, on_building)  # at 8 m/px trees are tree cover, without ids
    assert (c.dsm >= c.dem).all() and (c.dsm > c.dem + 2.5).mean() > 0.02
    for b in c.buildings[:50]:
        assert b.roof - b.base >= 3.0 and len(b.footprint) == 4
    assert (c.semantic == CLASS_IDS["road"]).mean() > 0.01


def footprint_mask(c, b, margin: float = 0.0) -> np.ndarray:
    """(H, W) bool: the chunk's samples inside building b's footprint (a rectangle of any
    orientation) grown by `margin` metres (shrunk where negative)."""
    west, _, _, north = c.bounds
    k = c.dem.shape[0]
    xs = west + np.arange(k) * c.resolution
    ys = north - np.arange(k) * c.resolution
    s, t, w, h = footprint_local(b, xs[None, :], ys[:, None])
    return (s >= -margin) & (s <= w + margin) & (t >= -margin) & (t <= h + margin)


def ground_under(c, b) -> np.ndarray | None:
    """The chunk's DEM samples inside building b's footprint, None if the footprint is not
    wholly in the chunk (a building owned by a neighbour) or holds no sample."""
    west, south, east, north = c.bounds
    p = np.asarray(b.footprint)
    if p[:, 0].min() < west or p[:, 0].max() > east or p[:, 1].min() < south or p[:, 1].max() > north:
        return None
    inside = footprint_mask(c, b)
    return c.dem[inside] if inside.any() else None


@pytest.mark.parametrize("key", [ChunkKey(4, 3, -4), ChunkKey(5, 5, -6), ChunkKey(6, 11, -12)])
def test_buildings_on_hills_stand_on_graded_ground(world, key):
    """Towns on slopes: every building's walls reach below the ground under its footprint and
    its roof stands clear above it (the lowest buildings are one floor, 3.8 m or more)."""
    c = world.chunk(key)
    checked = 0
    for b in c.buildings:
        ground = ground_under(c, b)
        if ground is None:
            continue
        assert ground.min() >= b.base + 0.4
        assert b.roof >= ground.max() + 3.0
        checked += 1
    assert checked > 40
    assert np.ptp(c.dem) > 40  # hilly: the check means something


def test_dsm_is_the_dem_raised_by_tree_crowns_and_listed_buildings_only(world):
    c = world.chunk(TOWN)
    ground = c.vegetation_surface()  # DEM + crowns
    res, (west, _, _, north) = c.resolution, c.bounds
    n = c.dem.shape[0]
    xs = west + np.arange(n) * res
    ys = north - np.arange(n) * res
    covered = np.zeros_like(c.dem, dtype=bool)
    for b in c.buildings:
        inside = footprint_mask(c, b)
        covered |= inside
        gx, gy = np.broadcast_to(xs[None, :], c.dem.shape)[inside], np.broadcast_to(ys[:, None], c.dem.shape)[inside]
        # the roof surface from the footprint's corners, as a client computes it: to float32 rounding
        # of the generator's own rectangle
        assert np.allclose(c.dsm[inside], np.maximum(ground[inside], roof_surface_np(b, gx, gy)), rtol=0, atol=1e-3)
    assert covered.any()
    assert np.array_equal(c.dsm[~covered], ground[~covered])
    assert (c.canopy > 0).mean() > 0.01  # the town has trees


def test_same_key_same_bytes_in_any_order(spec):
    keys = [ChunkKey(4, 1, -2), ChunkKey(4, 2, -2), ChunkKey(6, 3, 3), TOWN]
    first = {k: digest(World(spec, cache_chunks=0).chunk(k)) for k in keys}
    w = World(spec, cache_chunks=0)
    second = {k: digest(w.chunk(k)) for k in reversed(keys)}
    assert first == second


def test_same_bytes_in_another_process_with_another_thread_count(spec, world):
    keys = [ChunkKey(4, 1, -2), TOWN, ChunkKey(6, FAR, -3)]
    code = (
        "import sys, torch; torch.set_num_threads(2)\n"
        "from worldstream.core import World, WorldSpec, ChunkKey\n"
        "from tests.core.test_world import digest\n"
        f"w = World(WorldSpec.from_json({spec.to_json()!r}), cache_chunks=0)\n"
        f"for k in {[k.path() for k in keys]!r}: print(digest(w.chunk(ChunkKey.parse(k))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [digest(world.chunk(k)) for k in keys]


@pytest.mark.parametrize("parent", [ChunkKey(1, 0, 0), ChunkKey(2, 0, -1), ChunkKey(5, 10, -20), ChunkKey(5, FAR, FAR)])
def test_cascade_children_reproduce_their_parent(world, parent):
    """Tolerances: DEM and DSM decimated by 2 equal the parent's samples bit for bit; the ortho
    averaged 2x2 differs by at most 12/255 in mean per channel (towns: sub-pixel roads and houses are
    point-sampled at coarse levels) and 20/255 in mean absolute value;
    the parent's class is among its 4 child pixels for >= 95% of pixels."""
    p = world.chunk(parent)
    h = p.size // 2
    for child in parent.children():
        c = world.chunk(child)
        dx, dy = child.x - 2 * parent.x, child.y - 2 * parent.y
        r0, c0 = (1 - dy) * h, dx * h
        assert np.array_equal(c.dem[::2, ::2], p.dem[r0:r0 + h + 1, c0:c0 + h + 1])
        assert np.array_equal(c.dsm[::2, ::2], p.dsm[r0:r0 + h + 1, c0:c0 + h + 1])
        co = c.ortho.astype(np.float64).reshape(h, 2, h, 2, 3).mean(axis=(1, 3))
        po = p.ortho[r0:r0 + h, c0:c0 + h].astype(np.float64)
        assert np.abs((co - po).mean(axis=(0, 1))).max() <= 12.0
        assert np.abs(co - po).mean() <= 20.0
        quads = c.semantic.reshape(h, 2, h, 2).transpose(0, 2, 1, 3).reshape(h, h, 4)
        assert (quads == p.semantic[r0:r0 + h, c0:c0 + h, None]).any(-1).mean() >= 0.95


def test_far_chunks_are_precise_and_varied(world):
    c = world.chunk(ChunkKey(6, FAR, -FAR))
    assert np.isfinite(c.dem).all() and c.dem.std() > 0.05
    w, s, e, n = c.bounds
    assert e - w == 256.0 and w == FAR * 256.0


def test_height_at_matches_the_chunk_samples_and_interpolates_between_them(world, spec):
    key = TOWN
    c = world.chunk(key)
    res = c.resolution
    west, _, _, north = c.bounds
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 257, 200), rng.integers(0, 257, 200)
    ground, surface = world.height_at(west + j * res, north - i * res, level=key.level)
    assert np.array_equal(ground.astype(np.float32), c.dem[i, j])
    assert np.array_equal(surface.astype(np.float32), c.dsm[i, j])
    u, v = rng.uniform(0, 256, 50), rng.uniform(0, 256, 50)
    g, _ = world.height_at(west + u * res, north - v * res, level=key.level)
    j0, i0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - j0, v - i0
    d = c.dem.astype(np.float64)
    expect = (d[i0, j0] * (1 - fu) * (1 - fv) + d[i0, j0 + 1] * fu * (1 - fv)
              + d[i0 + 1, j0] * (1 - fu) * fv + d[i0 + 1, j0 + 1] * fu * fv)
    assert np.allclose(g, expect, atol=1e-4)


def test_layers_have_documented_shapes_and_types(world):
    c = world.chunk(ChunkKey(4, 0, 0))
    n = c.size
    assert c.ortho.shape == (n, n, 3) and c.ortho.dtype == np.uint8
    assert c.dem.shape == c.dsm.shape == (n + 1, n + 1) and c.dem.dtype == np.float32
    assert c.semantic.dtype == np.uint8 and set(np.unique(c.semantic)) <= set(CLASSES)
    assert c.instances.dtype == np.uint32 and c.instances.shape == (n, n)
    with pytest.raises(ValueError):
        c.dem[0, 0] = 1.0  # chunks are immutable


def test_the_world_is_varied_like_earth(world):
    """Over a 40 km region at 64 m/px the land cover spans the classes and the relief is real."""
    seen = np.zeros(len(CLASSES))
    heights = []
    for x in range(-2, 1):
        for y in range(-2, 1):
            c = world.chunk(ChunkKey(0, x, y))
            seen += np.bincount(c.semantic.ravel(), minlength=len(CLASSES))
            heights.append(c.dem)
    frac = seen / seen.sum()
    for name in ("water", "grass", "forest", "rock", "farmland", "road", "sand"):
        assert frac[CLASS_IDS[name]] > 0.001, name
    assert frac[CLASS_IDS["building"]] > 0.0002  # at 64 m/px few pixel centres fall on a roof
    h = np.concatenate([a.ravel() for a in heights])
    assert h.max() - h.min() > 500.0 and (h == 0).mean() > 0.01  # mountains and sea


def test_unknown_generator_and_bad_params_are_clear():
    with pytest.raises(GeneratorError, match="unknown generator"):
        World(WorldSpec(generator="nope"))
    with pytest.raises(GeneratorError, match="unknown procedural parameters"):
        World(WorldSpec(generator_params={"mountains": 2}))
    with pytest.raises(GeneratorError, match="outside this world's levels"):
        World(WorldSpec(levels=3)).chunk(ChunkKey(3, 0, 0))
