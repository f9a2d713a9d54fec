"""Towns: terraced grading (retaining walls of a few metres), building types by zone, roof kinds,
and roofs that are the same surface in the DSM and in the mesh."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from worldstream.core import ChunkKey
from worldstream.core.settlements import ROOFS, TYPES, footprint_local, roof_surface_np
from worldstream.exporters.chunk_mesh import chunk_mesh

from .test_world import footprint_mask, ground_under

# seed 7. Hill towns whose old block planes left embankments of 9 to 42 m at 1 m/px (max 42.4 m
# in 6/11/-12), and the dense town 19 km north with every building type.
HILL_TOWNS = [ChunkKey(6, 11, -12), ChunkKey(6, 12, -12), ChunkKey(6, 10, -12), ChunkKey(6, 14, -12),
              ChunkKey(6, 8, -14), ChunkKey(6, 12, -10)]
TYPES_L3 = ChunkKey(3, 0, 9)  # 2 km with houses, row houses, apartments, centre towers and industry
TYPES_L5 = ChunkKey(5, 1, 38)  # 512 m with flat, gabled and hipped roofs
MAX_WALL = 4.0  # metres: the highest retaining wall / embankment allowed inside towns


def steep_runs(dem: np.ndarray, res: float, slope: float = 1.0) -> np.ndarray:
    """Height (m) of the steep run each sample belongs to: along rows and columns, consecutive
    steps steeper than `slope` (45 degrees) in one direction are one embankment, and its height is
    the sum of their rises. (H, W) float64, 0 off embankments."""
    out = np.zeros(dem.shape)
    for a, back in ((dem.astype(np.float64), False), (dem.astype(np.float64).T, True)):
        dz = np.diff(a, axis=1)
        res_map = np.zeros(a.shape)
        for mask in (dz > slope * res, dz < -slope * res):
            acc = np.zeros(a.shape[0])
            run = np.zeros(dz.shape)
            for j in range(dz.shape[1]):  # running height of each run ...
                acc = np.where(mask[:, j], acc + np.abs(dz[:, j]), 0.0)
                run[:, j] = acc
            cur = np.zeros(a.shape[0])
            for j in range(dz.shape[1] - 1, -1, -1):  # ... spread back as the run's total
                cur = np.where(mask[:, j], np.maximum(cur, run[:, j]), 0.0)
                run[:, j] = cur
            res_map[:, :-1] = np.maximum(res_map[:, :-1], run)
            res_map[:, 1:] = np.maximum(res_map[:, 1:], run)
        out = np.maximum(out, res_map.T if back else res_map)
    return out


def urban_mask(world, chunk) -> np.ndarray:
    """Samples in urban blocks (streets on their edges included)."""
    g = world.generator
    res, (w, s, e, n) = chunk.resolution, chunk.bounds
    k = chunk.dem.shape[0]
    xs = torch.tensor(w + np.arange(k) * res, dtype=torch.float64)
    ys = torch.tensor(n - np.arange(k) * res, dtype=torch.float64)
    bx0, by0, table = g._block_table(w, s, e, n)
    return g._street_grid(table, bx0, by0, xs.reshape(1, -1), ys.reshape(-1, 1))[1][..., 0].numpy() > 0


def test_town_embankments_are_a_few_metres_at_most(world):
    """Before terracing these towns had 9-42 m embankments inside; now the ground steps in
    terraces: no steep run inside towns is higher than MAX_WALL, while the towns still have
    real relief (they follow the hill) and retaining walls do exist."""
    worst, walls, relief = 0.0, 0, []
    for key in HILL_TOWNS:
        c = world.chunk(key)
        town = urban_mask(world, c)
        assert town.mean() > 0.2
        runs = steep_runs(c.dem, c.resolution)[town]
        worst = max(worst, float(runs.max()))
        walls += int((runs > 1.5).sum())
        relief.append(float(np.ptp(c.dem[town])))
    assert worst <= MAX_WALL, f"an embankment of {worst:.1f} m inside a town"
    assert walls > 100  # terraces, not a flattened world
    assert max(relief) > 40.0


def test_buildings_stand_on_their_terraces(world):
    """Walls reach below the ground under every footprint; the eaves stand clear above it."""
    checked = 0
    for key in (HILL_TOWNS[0], HILL_TOWNS[1], ChunkKey(6, 2, 77)):
        c = world.chunk(key)
        for b in c.buildings:
            ground = ground_under(c, b)
            if ground is None:
                continue
            assert ground.min() >= b.base + 0.4
            assert b.roof >= ground.max() + 3.0
            assert b.ridge >= b.roof
            checked += 1
    assert checked > 100


def test_types_and_roofs_by_zone(world):
    c = world.chunk(TYPES_L3)
    by_type = collections.defaultdict(list)
    for b in c.buildings:
        by_type[b.type].append(b)
    assert set(by_type) == set(TYPES)
    assert {b.roof_kind for b in c.buildings} == set(ROOFS)
    for b in by_type["apartment"] + by_type["centre"]:
        assert b.roof_kind == "flat" and b.ridge == b.roof
    assert all(b.roof_kind in ("gabled", "hipped") for b in by_type["house"])
    assert all(b.roof_kind == "gabled" for b in by_type["row_house"])
    assert {b.roof_kind for b in by_type["industrial"]} == {"flat", "gabled"}

    def sides(b):
        return footprint_local(b, 0.0, 0.0)[2:]

    def area(b):
        w, h = sides(b)
        return w * h

    floors = {t: np.median([b.floors for b in bs]) for t, bs in by_type.items()}
    assert floors["house"] <= 2 and 2 <= floors["row_house"] <= 3
    assert floors["centre"] > floors["apartment"] >= 4
    assert np.median([area(b) for b in by_type["industrial"]]) > 3 * np.median([area(b) for b in by_type["house"]])
    halls = [b for b in by_type["industrial"] if b.roof_kind == "gabled"]
    assert max((b.ridge - b.roof) / (0.5 * min(sides(b))) for b in halls) < 0.25
    # row houses fill their lot along the street: a row house's nearest neighbour in its block is a
    # few metres away at most (the gap is what the streets' shear takes off the lot's width)
    rows = collections.defaultdict(list)
    for b in by_type["row_house"]:
        rows[b.block].append(np.asarray(b.footprint))
    gaps = [min(np.linalg.norm(p[:, None] - q[None], axis=-1).min() for q in row if q is not p)
            for row in rows.values() if len(row) > 1 for p in row]
    assert len(gaps) > 20 and np.median(gaps) < 3.0  # detached houses: 8 m or more
    d = c.buildings[0].to_dict()
    assert d["roof"] in ROOFS and d["type"] in TYPES and d["ridge_height"] >= d["roof_height"]


def test_roof_dsm_is_the_roof_mesh(world):
    """At every DSM sample strictly inside a footprint, the DSM is max(ground, roof surface)
    (ground: the DEM, with tree crowns where the world has them), and the roof surface is where a
    vertical ray hits that building's roof triangles in the mesh."""
    c = world.chunk(TYPES_L5)
    ground = c.vegetation_surface() if hasattr(c, "vegetation_surface") else c.dem
    m = chunk_mesh(c, world.spec)
    roof = next(p for p in m.primitives if p.kind == "roof")
    west, south, _, north = c.bounds
    res, k = c.resolution, c.dem.shape[0]
    xs, ys = west + np.arange(k) * res, north - np.arange(k) * res
    checked = collections.Counter()
    for row, b in enumerate(m.buildings):
        inside = footprint_mask(c, b, -1e-6)
        if not inside.any():
            continue
        gx = np.broadcast_to(xs[None, :], inside.shape)[inside]
        gy = np.broadcast_to(ys[:, None], inside.shape)[inside]
        surface = roof_surface_np(b, gx, gy)
        # from the footprint's corners, as a client computes it: to float32 rounding of the generator's rectangle
        assert np.allclose(c.dsm[inside], np.maximum(ground[inside], surface), rtol=0, atol=1e-3)
        tri = roof.triangles[np.all(roof.feature[roof.triangles] == row, axis=1)]
        p = roof.positions[tri].astype(np.float64)
        up = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])[:, 2]
        p, up = p[up > 0], up[up > 0]  # the roof faces (the floor faces down)
        qx, qy = gx - west, gy - south
        hit = np.full(len(qx), np.nan)
        for t in range(len(p)):
            a, bb, cc = p[t]
            wb = ((qx - a[0]) * (cc[1] - a[1]) - (cc[0] - a[0]) * (qy - a[1])) / up[t]
            wc = ((bb[0] - a[0]) * (qy - a[1]) - (qx - a[0]) * (bb[1] - a[1])) / up[t]
            on = (wb >= -1e-7) & (wc >= -1e-7) & (wb + wc <= 1 + 1e-7)
            hit[on] = (a[2] + wb * (bb[2] - a[2]) + wc * (cc[2] - a[2]))[on]
        assert not np.isnan(hit).any()
        np.testing.assert_allclose(hit, surface, atol=2e-3)
        checked[b.roof_kind] += len(hit)
    assert set(checked) == set(ROOFS) and min(checked.values()) > 100


@pytest.mark.parametrize("parent", [ChunkKey(5, 1, 38), ChunkKey(5, 5, -6)])
def test_pitched_roofs_keep_the_cascade_bit_exact(world, parent):
    """Children's DEM and DSM decimated by 2 are the parent's samples bit for bit, and same-level
    neighbours share their borders, in towns with pitched roofs and terraces."""
    p = world.chunk(parent)
    h = p.size // 2
    for child in parent.children():
        c = world.chunk(child)
        dx, dy = child.x - 2 * parent.x, child.y - 2 * parent.y
        r0, c0 = (1 - dy) * h, dx * h
        assert np.array_equal(c.dem[::2, ::2], p.dem[r0:r0 + h + 1, c0:c0 + h + 1])
        assert np.array_equal(c.dsm[::2, ::2], p.dsm[r0:r0 + h + 1, c0:c0 + h + 1])
    east = world.chunk(ChunkKey(parent.level, parent.x + 1, parent.y))
    assert np.array_equal(p.dsm[:, -1], east.dsm[:, 0]) and np.array_equal(p.dem[:, -1], east.dem[:, 0])
    assert (p.dsm > p.dem + 2).mean() > 0.02
