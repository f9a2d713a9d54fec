"""Benchmark: relief statistics of the generated world against real elevation models.

Usage: python bench/bench_realism.py [--quick] [--seed S] [--rev GITREV]

The real data are the SRTM-derived samples that ship inside matplotlib (mpl-data/sample_data):
`jacksboro_fault_dem.npz` (3 arc-second SRTM, Jacksboro fault, Tennessee) and `topobathy.npz`
(topography and bathymetry of south-west British Columbia on a 2 x 1.33 arc-minute grid). Their
sample spacing in metres comes from the files' geographic metadata (degrees per sample and the
latitude of the grid): dx = N(lat) cos(lat) dlon, dy = M(lat) dlat on the WGS84 ellipsoid.

For each real sample the generated world is sampled on a grid of the same size and spacing
(heights of the level that resolves half that spacing, before settlements grade the ground) at a
deterministic grid of candidate regions (4 x 4 with --quick, 7 x 7 without). Each is screened on
every 4th sample: same relief class (relief = p98 - p2 of the land heights), land fraction within
0.2, and the slope W1 distance to the real data subsampled the same way; the best 2 (quick) or 6
screened candidates are measured at full resolution and the best fitting one is reported. Figures: slope distribution over land (Wasserstein-1 distance in degrees, median and
p90), hypsometric integral of the land, and the exponent beta of the radially averaged 2D power
spectrum (P ~ k^-beta, fitted over log-spaced wavenumbers from 8 periods per field to 4 samples per period).
Also printed: the relief (p98 - p2) and the share of land samples that are closed pits.
Targets: slope W1 <= 2 deg and p90 within 15 % for every real sample.

`--rev GITREV` measures the generator of another commit (its core/ and worldstream/ exported with
git archive into a temporary folder and imported from there), e.g. `--rev HEAD~3` for a baseline.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

W1_TARGET = 2.0  # degrees
MACRO_LATTICE = 16.0  # metres: the procedural generator's macro lattice (generators/procedural.py)
P90_TARGET = 0.15  # relative
CLASSES = ((0.0, "plains"), (200.0, "hills"), (1000.0, "mountains"))  # lower bound of window relief (m)


# ---------------------------------------------------------------- real data
@dataclass
class Sample:
    name: str
    z: np.ndarray  # float64 metres, row 0 = one edge (orientation does not matter to the figures)
    dx: float  # metres between columns
    dy: float  # metres between rows
    land: np.ndarray  # bool


def _radii(lat_deg: float) -> tuple[float, float]:
    """WGS84 meridional (M) and prime-vertical (N) radii of curvature at a latitude, metres."""
    a, f = 6378137.0, 1.0 / 298.257223563
    e2 = f * (2.0 - f)
    s2 = math.sin(math.radians(lat_deg)) ** 2
    n = a / math.sqrt(1.0 - e2 * s2)
    return n * (1.0 - e2) / (1.0 - e2 * s2), n


def sample_dir() -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")


def real_samples() -> list[Sample]:
    d = sample_dir()
    out = []
    j = np.load(os.path.join(d, "jacksboro_fault_dem.npz"))
    z = j["elevation"].astype(np.float64)
    lat = 0.5 * (float(j["ymin"]) + float(j["ymax"]))
    m, n = _radii(lat)
    dx = n * math.cos(math.radians(lat)) * math.radians(float(j["dx"]))
    dy = m * math.radians(float(j["dy"]))
    out.append(Sample("jacksboro_fault_dem (SRTM 3\", Tennessee)", z, dx, dy, np.ones(z.shape, bool)))

    t = np.load(os.path.join(d, "topobathy.npz"))
    lon, lats = t["longitude"].astype(np.float64), t["latitude"].astype(np.float64)
    lat = float(lats.mean())
    m, n = _radii(lat)
    dlon = (lon[-1] - lon[0]) / (lon.size - 1)
    dlat = (lats[-1] - lats[0]) / (lats.size - 1)
    z = t["topo"].astype(np.float64)
    dx = n * math.cos(math.radians(lat)) * math.radians(dlon)
    dy = m * math.radians(dlat)
    out.append(Sample("topobathy (SW British Columbia, land only)", np.maximum(z, 0.0), dx, dy, z > 0))
    return out


# ---------------------------------------------------------------- figures
def slopes(z: np.ndarray, dx: float, dy: float, land: np.ndarray) -> np.ndarray:
    """Slope in degrees (central differences) at land samples whose four neighbours are land."""
    gy, gx = np.gradient(z, dy, dx)
    s = np.degrees(np.arctan(np.hypot(gx, gy)))
    ok = land.copy()
    ok[1:, :] &= land[:-1, :]
    ok[:-1, :] &= land[1:, :]
    ok[:, 1:] &= land[:, :-1]
    ok[:, :-1] &= land[:, 1:]
    ok[0, :] = ok[-1, :] = False
    ok[:, 0] = ok[:, -1] = False
    return s[ok]


def hypsometric_integral(z: np.ndarray, land: np.ndarray) -> float:
    h = z[land]
    lo, hi = float(h.min()), float(h.max())
    return (float(h.mean()) - lo) / max(hi - lo, 1e-9)


def spectral_exponent(z: np.ndarray, dx: float, dy: float) -> float:
    """beta of P(k) ~ k^-beta: plane-detrended, Hann-windowed field, radially averaged power."""
    ny, nx = z.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    a = np.stack([np.ones(z.size), xx.ravel(), yy.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(a, z.ravel(), rcond=None)
    r = z - (a @ coef).reshape(z.shape)
    r = r * np.outer(np.hanning(ny), np.hanning(nx))
    p = np.abs(np.fft.fft2(r)) ** 2
    kx = np.fft.fftfreq(nx, dx)
    ky = np.fft.fftfreq(ny, dy)
    k = np.hypot(kx.reshape(1, -1), ky.reshape(-1, 1))
    dmax = max(dx, dy)
    lo, hi = 8.0 / min(nx * dx, ny * dy), 1.0 / (4.0 * dmax)  # 8 periods per field .. 4 samples a period
    edges = np.geomspace(lo, hi, 16)
    ks, ps = [], []
    for a0, a1 in zip(edges[:-1], edges[1:]):
        sel = (k >= a0) & (k < a1)
        if sel.sum() >= 4:
            ks.append(math.sqrt(a0 * a1))
            ps.append(p[sel].mean())
    slope, _ = np.polyfit(np.log10(ks), np.log10(ps), 1)
    return float(-slope)


def relief(z: np.ndarray, land: np.ndarray) -> float:
    h = z[land]
    if h.size < 16:
        return 0.0
    return float(np.percentile(h, 98) - np.percentile(h, 2))


def relief_class(r: float) -> str:
    name = CLASSES[0][1]
    for lo, n in CLASSES:
        if r >= lo:
            name = n
    return name


def pit_fraction(z: np.ndarray, land: np.ndarray) -> float:
    """Share of land samples lower than all 8 land neighbours: closed depressions, which a
    consistently draining surface lacks (a printed figure, no target; SRTM's integer metres
    hide some shallow pits)."""
    c = z[1:-1, 1:-1]
    ok = land[1:-1, 1:-1].copy()
    lowest = np.ones(c.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                lowest &= c < z[1 + dy:z.shape[0] - 1 + dy, 1 + dx:z.shape[1] - 1 + dx]
                ok &= land[1 + dy:z.shape[0] - 1 + dy, 1 + dx:z.shape[1] - 1 + dx]
    return float((lowest & ok).sum() / max(ok.sum(), 1))


def figures(z, dx, dy, land) -> dict:
    s = slopes(z, dx, dy, land)
    return {"slopes": s, "median": float(np.median(s)), "p90": float(np.percentile(s, 90)),
            "hi": hypsometric_integral(z, land), "beta": spectral_exponent(z, dx, dy),
            "relief": relief(z, land), "land": float(land.mean()), "pits": pit_fraction(z, land)}


def w1(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b))


# ---------------------------------------------------------------- the generated world
def _level_for(spacing: float, spec) -> int:
    """The coarsest level whose resolution is at most half the spacing (its detail resolved)."""
    level = 0
    while level + 1 < spec.levels and spec.resolution(level) > spacing * 0.5:
        level += 1
    return level


def generated(gen, x0: float, y0: float, shape, dx: float, dy: float, level: int):
    """Natural ground height (m, float64) and water mask of the generated world on a grid: the
    macro relief plus the level's detail octaves at the amplitude the procedural generator gives
    them outside towns (roughness, faded out at the water), before settlements grade the ground."""
    import torch

    from worldstream.core import lattice, terrain

    ny, nx = shape
    xs = torch.from_numpy((x0 + np.arange(nx) * dx).astype(np.float64))
    ys = torch.from_numpy((y0 + np.arange(ny) * dy).astype(np.float64))
    x, y = xs.reshape(1, -1), ys.reshape(-1, 1)
    with torch.no_grad():
        if gen.spec.resolution(level) >= MACRO_LATTICE:
            m = gen.macro(x, y)
        else:
            m = lattice.on_grid(gen.macro, xs, ys, MACRO_LATTICE)
        dry = torch.clamp(-m["wetness"], 0.0, 1.0)
        octs = terrain.detail_octaves(gen.spec.seed, gen.spec.base_resolution, level)
        z = m["height"] + terrain.detail_height(x, y, octs, m["roughness"] * dry)
    return z.double().numpy(), (m["wetness"] > 0).numpy()


def candidates(n: int, span: float) -> list[tuple[float, float]]:
    """n x n region origins on a fixed world grid `span` metres apart (deterministic)."""
    c = (n - 1) / 2.0
    return [((i - c) * span, (j - c) * span) for j in range(n) for i in range(n)]


def compare(gen, spec, sample: Sample, real: dict, quick: bool, log=print) -> dict:
    ny, nx = sample.z.shape
    level = _level_for(min(sample.dx, sample.dy), spec)
    ext = max(nx * sample.dx, ny * sample.dy)
    grid_n = 4 if quick else 7
    span = max(ext * 1.37, 23000.0)
    cls = relief_class(real["relief"])
    # screen every candidate on every 4th sample (4x the spacing): relief class, land fraction, and
    # the W1 distance of its slopes to the real data's slopes measured the same way
    coarse = sample.z[::4, ::4]
    real_coarse = slopes(coarse, sample.dx * 4, sample.dy * 4, sample.land[::4, ::4])
    screened = []
    for (x0, y0) in candidates(grid_n, span):
        zc, wc = generated(gen, x0, y0, coarse.shape, sample.dx * 4, sample.dy * 4, level)
        land = wc == 0
        lf = float(land.mean())
        if relief_class(relief(zc, land)) != cls or abs(lf - real["land"]) > 0.2:
            continue
        sc = slopes(zc, sample.dx * 4, sample.dy * 4, land)
        if sc.size >= 16:
            screened.append((w1(sc, real_coarse), x0, y0))
    screened.sort()
    keep = screened[: (2 if quick else 6)]
    best = None
    for _, x0, y0 in keep:
        z, wat = generated(gen, x0, y0, (ny, nx), sample.dx, sample.dy, level)
        f = figures(z, sample.dx, sample.dy, wat == 0)
        f["w1"] = w1(f["slopes"], real["slopes"])
        f["p90_err"] = f["p90"] / real["p90"] - 1.0
        f["region"] = (x0, y0)
        f["score"] = f["w1"] / W1_TARGET + abs(f["p90_err"]) / P90_TARGET
        if best is None or f["score"] < best["score"]:
            best = f
    if best is None:
        return {"class": cls, "level": level, "found": False, "candidates": len(screened)}
    best.update({"class": cls, "level": level, "found": True, "candidates": len(screened)})
    return best


def run(seed: int = 7, quick: bool = False, log=print) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from worldstream.core import World, WorldSpec

    world = World(WorldSpec(seed=seed), cache_chunks=0)
    gen, spec = world.generator, world.spec
    rows = []
    for sample in real_samples():
        real = figures(sample.z, sample.dx, sample.dy, sample.land)
        g = compare(gen, spec, sample, real, quick, log)
        rows.append({"name": sample.name, "dx": sample.dx, "dy": sample.dy, "shape": sample.z.shape,
                     "real": real, "gen": g})
        ny, nx = sample.z.shape
        log(f"{sample.name}: {nx} x {ny} samples, dx {sample.dx:.1f} m, dy {sample.dy:.1f} m, "
            f"relief {real['relief']:.0f} m ({g['class']}), land {real['land']:.2f}")
        log(f"  {'':10} {'slope W1':>8} {'median':>7} {'p90':>7} {'p90 err':>8} {'HI':>6} {'beta':>6} {'relief':>7} "
            f"{'pits %':>6}")
        log(f"  {'real':10} {'':>8} {real['median']:7.2f} {real['p90']:7.2f} {'':>8} {real['hi']:6.3f} "
            f"{real['beta']:6.2f} {real['relief']:7.0f} {real['pits'] * 100:6.2f}")
        if not g["found"]:
            log(f"  generated: no region of class {g['class']} among the candidates")
            continue
        ok = g["w1"] <= W1_TARGET and abs(g["p90_err"]) <= P90_TARGET
        log(f"  {'generated':10} {g['w1']:8.2f} {g['median']:7.2f} {g['p90']:7.2f} {g['p90_err'] * 100:7.1f}% "
            f"{g['hi']:6.3f} {g['beta']:6.2f} {g['relief']:7.0f} {g['pits'] * 100:6.2f}  region origin "
            f"({g['region'][0]:.0f}, {g['region'][1]:.0f}) m, level {g['level']}, "
            f"{g['candidates']} candidates of the class; {'meets' if ok else 'MISSES'} the targets")
    return rows


def _run_rev(rev: str, argv: list[str]) -> int:
    """Run this bench against the generator of commit `rev` (core/ and worldstream/ from git)."""
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        arch = subprocess.run(["git", "archive", rev, "core", "worldstream"], cwd=root, capture_output=True,
                              check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
        os.rename(os.path.join(tmp, "core"), os.path.join(tmp, "worldstream", "core"))
        env = dict(os.environ, PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""))
        code = ("import sys; sys.path.insert(0, %r); import worldstream; assert worldstream.__file__.startswith(%r); "
                "sys.path.insert(0, %r); import bench_realism; bench_realism.main(%r)"
                % (tmp, tmp, os.path.dirname(os.path.abspath(__file__)), argv))
        print(f"generator of {rev}:")
        return subprocess.run([sys.executable, "-c", code], env=env).returncode


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer candidate regions, for tests")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rev", help="measure the generator of this git revision instead")
    args = ap.parse_args(argv)
    if args.rev:
        rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != args.rev and a != "--rev"
                and not a.startswith("--rev=")]
        raise SystemExit(_run_rev(args.rev, rest))
    return run(args.seed, args.quick)


if __name__ == "__main__":
    main()
