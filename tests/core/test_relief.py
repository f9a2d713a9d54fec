"""Relief measured against real elevation data, river banks without stair-steps, drainage sanity.

The figures and targets are those of bench/bench_realism.py (see docs/realism.md).
"""

import os
import sys

import numpy as np
import pytest
import torch

from worldstream.core import World, WorldSpec, lattice, terrain

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench")


@pytest.fixture(scope="module")
def gen():
    return World(WorldSpec(seed=7), cache_chunks=0).generator


def test_quick_realism_bench_meets_the_targets():
    pytest.importorskip("matplotlib", reason="the real elevation samples ship inside matplotlib")
    sys.path.insert(0, os.path.abspath(BENCH))
    try:
        import bench_realism as bench
    finally:
        sys.path.pop(0)
    rows = bench.run(seed=7, quick=True, log=lambda *a: None)
    assert len(rows) == 2
    for r in rows:
        g = r["gen"]
        assert g["found"], f"{r['name']}: no generated region of class {g['class']}"
        assert g["w1"] <= bench.W1_TARGET, (r["name"], g["w1"])
        assert abs(g["p90_err"]) <= bench.P90_TARGET, (r["name"], g["p90"], r["real"]["p90"])


def _river_points(gen, count=6):
    """Deterministic samples of inland water near its shore, outside ranges, around the origin."""
    xs = torch.arange(-64, 64, dtype=torch.float64) * 156.25
    ys = torch.arange(-64, 64, dtype=torch.float64) * 156.25
    m = gen.macro(xs.reshape(1, -1), ys.reshape(-1, 1))
    river = (m["water"] > 0) & (m["water_level"] > 0) & (m["mountain"] < 0.5) & (m["wetness"] < 0.25)  # near a shore
    r, c = torch.nonzero(river, as_tuple=True)
    assert r.numel() > 50, "no rivers near the origin"
    pick = np.linspace(0, r.numel() - 1, count).astype(int)
    return [(float(xs[c[i]]), float(ys[r[i]])) for i in pick]


def _dilate(a, n):
    a = a.copy()
    for _ in range(n):
        b = a.copy()
        b[1:] |= a[:-1]
        b[:-1] |= a[1:]
        b[:, 1:] |= a[:, :-1]
        b[:, :-1] |= a[:, 1:]
        a = b
    return a


def test_river_banks_have_no_stair_steps(gen):
    """At 1 m/px the water and the foot of its banks (land within 2 m of it) lie at the water
    level, and adjacent samples near a shore differ by little. The previous generator's banks
    jumped 1.5 m where land and water nodes of the 16 m lattice alternated, so the surface along a
    shore rose and fell in 16 m stairs (up to 1.8 m off the water level at these places)."""
    size = 64
    worst_step = worst_level = 0.0
    shores = 0
    for x0, y0 in _river_points(gen):
        c0, r0 = int(np.floor(x0)) - size // 2, int(np.floor(y0)) - size // 2
        cc, rr = np.meshgrid(np.arange(c0, c0 + size), np.arange(r0, r0 + size))
        dem, _ = gen.sample_heights(6, cc.ravel(), rr.ravel())
        dem = dem.reshape(size, size).astype(np.float64)
        m = lattice.at_points(gen.macro, torch.from_numpy(cc.ravel() * 1.0), torch.from_numpy(rr.ravel() * 1.0), 16.0)
        water = (m["wetness"] > 0).numpy().reshape(size, size)
        level = m["water_level"].numpy().reshape(size, size)
        shore = _dilate(water, 4) & _dilate(~water, 4)
        shores += int(shore.sum())
        jx = np.abs(np.diff(dem, axis=1))[shore[:, 1:] & shore[:, :-1]]
        jy = np.abs(np.diff(dem, axis=0))[shore[1:] & shore[:-1]]
        worst_step = max(worst_step, float(np.concatenate([jx, jy, [0.0]]).max()))
        wet_or_foot = _dilate(water, 2)
        if wet_or_foot.any():
            worst_level = max(worst_level, float(np.abs(dem - level)[wet_or_foot].max()))
    assert shores > 1000, "the sampled windows hold too little shore"
    assert worst_level < 0.25, worst_level
    assert worst_step < 0.35, worst_step


def test_land_never_lies_below_the_drainage_base(gen):
    """Inland (continental level >= 0) the macro ground stands at or above the rivers' level of
    its place, so every valley can drain down to a river and no river is perched above the land
    beside it; the rivers' level falls to sea level at the coast."""
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(20000, generator=g, dtype=torch.float64) - 0.5) * 200000.0
    y = (torch.rand(20000, generator=g, dtype=torch.float64) - 0.5) * 200000.0
    octs = gen.macro_octaves
    m = gen.macro(x, y)
    s = lattice.interpolate(lambda a, b: terrain.smooth_fields(a, b, octs), x, y, terrain.SMOOTH_LATTICE)
    base = (s["continent"] + 0.9) * 260.0
    drain = terrain.drainage_base(base)
    inland = (base >= 0) & (m["water"] == 0)
    assert int(inland.sum()) > 5000
    assert bool(torch.all(m["height"][inland] >= drain[inland] - 1e-3))
    river = (m["water"] > 0) & (m["water_level"] > 0)
    assert bool(torch.all(m["water_level"][river] >= 0))
    b = torch.linspace(-50.0, 500.0, 1101)
    d = terrain.drainage_base(b)
    assert float(d[b <= 0].abs().max()) == 0.0 and bool(torch.all(d[1:] >= d[:-1]))
    assert bool(torch.all(d[b > 0] <= b[b > 0]))
