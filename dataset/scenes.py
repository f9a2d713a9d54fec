"""Scene sites: where in the unbounded world the dataset's scenes lie, spread over relief and
land-cover types, or read from a file.

Candidates lie on a CANDIDATE_STEP grid over a square region around the world origin. Each is
classed from the level-0 chunk under it (the coarsest level, which every view loads anyway):
cover from the class raster and the buildings listed within TOWN_RADIUS, relief from the range
of the bare-earth heights within WINDOW_M. Sites are then drawn stratum by stratum (cover x
relief) in a seeded order, towns taking TOWN_SHARE of them (buildings carry most questions), at
least `spacing` apart; finally they are ordered along a serpentine path so that consecutive scenes
share coarse chunks."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.biomes import CLASS_IDS
from ..core.errors import WorldstreamError
from ..core.keys import ChunkKey
from ..core.world import World

CANDIDATE_STEP = 512.0  # metres between candidate sites
WINDOW_M = 512.0  # side of the square a site is classed over
TOWN_RADIUS = 250.0  # buildings within this distance make a town
TOWN_BUILDINGS = 6
TOWN_SHARE = 0.45
MAX_WATER = 0.6  # candidates with more water than this are skipped
COVERS = ("town", "forest", "farmland", "grassland", "arid", "rock_snow", "waterside")
RELIEFS = ("flat", "hilly", "mountainous")
RELIEF_RANGES = (20.0, 90.0)  # height range (m) over WINDOW_M: below the first flat, below the second hilly
_GROUPS = {"forest": ("forest", "tree"), "farmland": ("farmland",), "grassland": ("grass",), "arid": ("desert", "sand"),
           "rock_snow": ("rock", "snow")}


class DatasetError(WorldstreamError, ValueError):
    """Bad dataset input or a dataset folder that does not match; the message says what was expected."""


@dataclass(frozen=True)
class Site:
    """A scene's centre: x, y world ENU metres; relief (RELIEFS) and cover (COVERS) class."""

    x: float
    y: float
    relief: str
    cover: str

    def to_dict(self) -> dict:
        return {"x": round(self.x, 3), "y": round(self.y, 3), "relief": self.relief, "cover": self.cover}


def classify(world: World, x: float, y: float) -> tuple[str, str] | None:
    """(relief, cover) of the site at (x, y) from its level-0 chunk; None where it is mostly water."""
    chunk = world.chunk(ChunkKey.at(world.spec, x, y, 0))
    return classify_in(chunk, building_centres(chunk), x, y)


def classify_in(chunk, centres: np.ndarray, x: float, y: float) -> tuple[str, str] | None:
    """`classify` with the level-0 chunk under (x, y) and its building centres (building_centres) given."""
    west, south, east, north = chunk.bounds
    res = chunk.resolution
    half = max(1, int(round(WINDOW_M / 2 / res)))
    col, row = int((x - west) / res), int((north - y) / res)
    r0, r1 = max(0, row - half), min(chunk.size, row + half + 1)
    c0, c1 = max(0, col - half), min(chunk.size, col + half + 1)
    sem = chunk.semantic[r0:r1, c0:c1]
    shares = {name: float(np.mean(sem == cid)) for name, cid in CLASS_IDS.items()}
    if shares["water"] > MAX_WATER:
        return None
    dem = chunk.dem[r0:r1 + 1, c0:c1 + 1]
    span = float(dem.max() - dem.min())
    relief = RELIEFS[int(np.searchsorted(RELIEF_RANGES, span, side="right"))]
    near = int(np.sum(np.hypot(centres[:, 0] - x, centres[:, 1] - y) < TOWN_RADIUS)) if len(centres) else 0
    if near >= TOWN_BUILDINGS:
        cover = "town"
    elif shares["water"] >= 0.2:
        cover = "waterside"
    else:
        cover = max(_GROUPS, key=lambda g: (sum(shares[c] for c in _GROUPS[g]), g))
    return relief, cover


def building_centres(chunk) -> np.ndarray:
    """(N, 2) float64 footprint centroids of a chunk's listed buildings."""
    return np.array([np.mean(b.footprint, axis=0) for b in chunk.buildings], np.float64).reshape(-1, 2)


def pick_sites(world: World, seed: int, n: int, region_m: float, spacing_m: float) -> list[Site]:
    """n sites in the square of side region_m around the origin, spread over the strata."""
    if n < 1:
        raise DatasetError(f"--scenes must be at least 1, got {n}")
    if not region_m > 0:
        raise DatasetError(f"--region must be a positive number of metres, got {region_m}")
    half = region_m / 2.0
    steps = np.arange(-half + CANDIDATE_STEP / 2, half, CANDIDATE_STEP)
    rng = np.random.default_rng([seed, 0x5CE4E])
    order = rng.permutation(len(steps) ** 2)  # candidates classed in this order, so a build stops early
    strata: dict[tuple[str, str], list[tuple[float, float]]] = {}
    e0 = world.spec.chunk_extent(0)
    # class the candidates chunk by chunk (one level-0 chunk in memory at a time)
    cands = [(float(steps[i % len(steps)]), float(steps[i // len(steps)])) for i in order]
    by_chunk: dict[tuple[int, int], list[int]] = {}
    for j, (x, y) in enumerate(cands):
        by_chunk.setdefault((math.floor(x / e0), math.floor(y / e0)), []).append(j)
    labels: dict[int, tuple[str, str] | None] = {}
    for cx, cy in sorted(by_chunk):
        chunk = world.chunk(ChunkKey(0, cx, cy))
        centres = building_centres(chunk)
        for j in by_chunk[cx, cy]:
            labels[j] = classify_in(chunk, centres, *cands[j])
    for j, (x, y) in enumerate(cands):
        if labels[j] is not None:
            strata.setdefault((labels[j][1], labels[j][0]), []).append((x, y))
    if not strata:
        raise DatasetError(f"no dry land in the {region_m:g} m square around the origin; try a larger --region")
    towns = sorted(k for k in strata if k[0] == "town")
    others = sorted(k for k in strata if k[0] != "town")
    want_towns = min(sum(len(strata[k]) for k in towns), math.ceil(TOWN_SHARE * n)) if others else n
    chosen: list[Site] = []

    def take(keys: list[tuple[str, str]], count: int) -> None:
        cursor = {k: 0 for k in keys}
        while count > 0 and keys:
            progressed = False
            for k in keys:
                pool = strata[k]
                while cursor[k] < len(pool):
                    x, y = pool[cursor[k]]
                    cursor[k] += 1
                    if all(math.hypot(x - s.x, y - s.y) >= spacing_m for s in chosen):
                        chosen.append(Site(x, y, k[1], k[0]))
                        count -= 1
                        progressed = True
                        break
                if count == 0:
                    return
            if not progressed:
                return

    take(towns, want_towns)
    take(others, n - len(chosen))
    take(towns + others, n - len(chosen))  # strata ran out: fill from any
    if len(chosen) < n:
        raise DatasetError(f"only {len(chosen)} sites {spacing_m:g} m apart fit in the {region_m:g} m region; "
                           f"asked for {n}: enlarge --region")
    return serpentine(chosen, 2048.0)


def serpentine(sites: list[Site], band_m: float) -> list[Site]:
    """Sites ordered in west-east bands of band_m from south to north, alternating direction."""
    def key(s: Site):
        band = math.floor(s.y / band_m)
        return (band, s.x if band % 2 == 0 else -s.x, s.y)
    return sorted(sites, key=key)


def read_centres(path: Path | str) -> tuple[tuple[float, float], ...]:
    """Scene centres from a JSON file: a list of [x, y] or {"x": .., "y": ..} (world metres), in order."""
    try:
        doc = json.loads(Path(path).read_text())
        points = tuple((float(p["x"]), float(p["y"])) if isinstance(p, dict) else (float(p[0]), float(p[1]))
                       for p in doc)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DatasetError(f"--centers {path}: expected a JSON list of [x, y] or {{\"x\": X, \"y\": Y}} in world "
                           f"metres ({exc})") from None
    if not points or not all(math.isfinite(c) for p in points for c in p):
        raise DatasetError(f"--centers {path}: expected a non-empty list of finite coordinates")
    return points
