"""Procedural terrain: the level-independent macro relief, and the per-level detail octaves.

`macro_fields` is a pure function of world position (float64 metres): continents and coasts,
warped ridged mountain ranges, eroded hills, terraced plateaus, river valleys and lakes carved to
smooth water levels, and the climate fields biomes are drawn from. Water is hydro-flattened: the
height returned over water is the water surface (sea level 0 m, rivers and lakes at their level).

`detail_height` adds the octaves a level resolves beyond the macro relief. The octave first added
at level L+1 has its lattice on level L's sample grid, where gradient noise is exactly zero, so
level L+1 reproduces level L bit for bit at every sample they share (the cascade guarantee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import lattice
from .hashing import salt
from .noise import Octave, eroded_fbm, fbms, octave_noise, octaves, ridged, smoothstep, valleys
from .shapes import broadcast_shape

FBM_STD = 0.14  # measured standard deviation of a 3-4 octave `fbm`; fields below are in its units
SMOOTH_LATTICE = 512.0  # metres: world lattice the kilometre-scale fields are interpolated from
# Relief constants, fitted with bench/bench_realism.py against SRTM samples (docs/realism.md)
RANGE_WARP, HILL_WARP = 0.5, 0.25  # share of the domain warp bending ranges and hills
RANGE_HEIGHT = 2800.0  # metres: ridged ranges are peaks ** 1.5 (fuller ranges than peaks ** 2)
HILL_BASE, HILL_RANGE = 80.0, 30.0  # metres of hill relief per std, outside and inside hill country
UPLAND = 0.05  # more metres of hill relief per std for each metre the continent stands above the sea
HILL_OFFSET = 1.5  # std: hills stand mostly above the drainage base instead of half below it
HILL_EROSION = 0.3  # slope damping of the hill octaves (eroded_fbm)
HILL_INLAND = -0.6  # continental std where hills reach their full height (they start at the coast)
FLOOD_PLAIN = 15.0  # metres: softness of the floor at the drainage base
BANK = 0.03  # river-field units of flat bank beyond the channel (about its half width)
RIVER_VALLEY = 0.22  # river-field units from the bank strip to the shoulder of a shallow valley
VALLEY_OPENING = 200.0  # metres of depth that widen a river valley by another RIVER_VALLEY
VALLEY_DEPTH_CAP = 1000.0  # metres: deeper valleys (in high ranges) open no wider than this depth gives
POINT_BLOCK = 32_768  # scattered points `macro_fields` evaluates at once: larger temporaries spill the
# caches (a 416 000-point call costs twice as much as 13 calls of 32 000 points)
DISSECTION = 0.2  # share of the height above the drainage base the coarsest tributary valleys cut
# The macro relief's finest octave has a 192 m lattice (3 x s_0): finer detail comes from detail_octaves.


@dataclass(frozen=True)
class TerrainParams:
    """Knobs of the procedural relief (all multipliers default to 1)."""

    relief: float = 1.0  # scales mountains and hills
    sea_level_bias: float = 0.0  # in continental std units: > 0 gives more sea
    rivers: float = 1.0  # scales river width (0 disables rivers)
    lakes: float = 1.0  # 0 disables lakes


@dataclass(frozen=True)
class MacroOctaves:
    """All octave sets of the macro relief for one seed (precomputed keys)."""

    warp_x: list
    warp_y: list
    continent: list
    mountain_mask: list
    mountains: list
    hills: list
    hill_mask: list
    plateau_mask: list
    rivers: list
    lakes: list
    valleys: list
    temperature: list
    moisture: list

    @classmethod
    def for_seed(cls, seed: int) -> "MacroOctaves":
        return cls(
            warp_x=octaves(seed, 1, 9000.0, 3),
            warp_y=octaves(seed, 2, 9000.0, 3),
            continent=octaves(seed, 3, 60000.0, 4),
            mountain_mask=octaves(seed, 4, 36000.0, 3),
            mountains=octaves(seed, 5, 6144.0, 6),  # 6144 m .. 192 m
            hills=octaves(seed, 6, 3072.0, 5),  # 3072 m .. 192 m
            hill_mask=octaves(seed, 7, 20000.0, 2),
            plateau_mask=octaves(seed, 8, 24000.0, 3),
            rivers=octaves(seed, 9, 14000.0, 3),
            lakes=octaves(seed, 10, 5000.0, 2),
            valleys=octaves(seed, 13, 2400.0, 2),  # 2400 m and 1200 m
            temperature=octaves(seed, 11, 80000.0, 3),
            moisture=octaves(seed, 12, 30000.0, 3),
        )


def smooth_fields(x: torch.Tensor, y: torch.Tensor, octs: MacroOctaves) -> dict[str, torch.Tensor]:
    """The slowly varying inputs of the relief (kilometre scales), in fbm std units (float32):
    domain warp (metres), continent, masks, river and lake fields, climate."""
    warp = 1400.0
    unwarped = ("warp_x", "warp_y", "mountain_mask", "hill_mask", "plateau_mask", "lakes", "temperature", "moisture")
    f = dict(zip(unwarped, fbms(x, y, [getattr(octs, name) for name in unwarped])))
    wx = f.pop("warp_x") * (warp / FBM_STD)
    wy = f.pop("warp_y") * (warp / FBM_STD)
    xw = x + wx.to(torch.float64)
    yw = y + wy.to(torch.float64)
    continent, rivers = fbms(xw, yw, (octs.continent, octs.rivers))
    z = 1.0 / FBM_STD
    return {"warp_x": wx, "warp_y": wy, "continent": continent * z, "rivers": rivers * z,
            **{name: v * z for name, v in f.items()}}


def drainage_base(base: torch.Tensor) -> torch.Tensor:
    """The rivers' level (m) under a continental level `base` (m): 3 m below it inland, falling
    to sea level at the coast (0 at base <= 0, non-decreasing in base), so rivers reach the sea
    at its surface. Inland, the macro ground never lies below it (see `macro_fields`)."""
    return torch.clamp(base - 3.0 * smoothstep(0.0, 30.0, base), min=0.0)


def macro_fields(x: torch.Tensor, y: torch.Tensor, octs: MacroOctaves,
                 params: TerrainParams = TerrainParams()) -> dict[str, torch.Tensor]:
    """Level-independent relief and climate at world points.

    x, y: float64 metres, broadcastable. Returns float32 tensors of the broadcast shape:
    height (m, water surface over water), water (1 where water, else 0), wetness (continuous,
    > 0 exactly where water), water_level (m),
    mountain (0..1 mountain mask), roughness (relative detail amplitude), temperature (deg C),
    moisture (0..1), coast (0..1, 1 on low coastal land).

    Many scattered points are evaluated POINT_BLOCK at a time (the same bits: every value is a
    pure function of its point); a separable grid (x (1, W), y (H, 1)) in one call.
    """
    shape = broadcast_shape(x.shape, y.shape)
    n = math.prod(shape)
    if n <= POINT_BLOCK or (x.dim() == 2 and y.dim() == 2 and x.shape[0] == 1 and y.shape[1] == 1):
        return _macro_fields(x, y, octs, params)
    x, y = x.expand(shape).reshape(-1), y.expand(shape).reshape(-1)
    size = -(-n // -(-n // POINT_BLOCK))  # blocks of equal size, none over POINT_BLOCK
    parts = [_macro_fields(x[i:i + size], y[i:i + size], octs, params) for i in range(0, n, size)]
    return {k: torch.cat([p[k] for p in parts]).reshape(shape) for k in parts[0]}


def _macro_fields(x: torch.Tensor, y: torch.Tensor, octs: MacroOctaves, params: TerrainParams) -> dict[str, torch.Tensor]:
    """`macro_fields` in one pass over the points."""
    s = lattice.interpolate(lambda a, b: smooth_fields(a, b, octs), x, y, SMOOTH_LATTICE)
    xw = x + s["warp_x"].to(torch.float64)
    yw = y + s["warp_y"].to(torch.float64)

    cont = s["continent"] - params.sea_level_bias
    base = (cont + 0.9) * 260.0  # smooth continental level: 0 m at the coast, ~250 m per std inland

    land = smoothstep(-0.3, 0.5, cont)
    mountain = smoothstep(0.35, 1.3, s["mountain_mask"]) * land
    # the domain warp bends ranges and hills; at full strength it also squeezes them up to twice
    # as steep where it converges, which widens the slope distribution far beyond real relief
    wx32, wy32 = s["warp_x"].to(torch.float64), s["warp_y"].to(torch.float64)
    peaks = ridged(x + wx32 * RANGE_WARP, y + wy32 * RANGE_WARP, octs.mountains)
    height_m = peaks * torch.sqrt(peaks) * (RANGE_HEIGHT * params.relief) * mountain

    hill_mask = smoothstep(-1.2, 1.5, s["hill_mask"])
    hills = eroded_fbm(x + wx32 * HILL_WARP, y + wy32 * HILL_WARP, octs.hills, erosion=HILL_EROSION) * (1.0 / 0.083)
    upland = torch.clamp(base, min=0.0) * UPLAND  # relief grows with the height above the sea
    inland = smoothstep(-0.9, HILL_INLAND, cont)  # hills rise from the coast (base 0 m) on
    height_h = (hills + HILL_OFFSET) * ((HILL_BASE + HILL_RANGE * hill_mask + upland) * params.relief) * inland

    h = base + height_m + height_h

    # plateaus: terraces with steep risers where the plateau mask is high
    plateau = smoothstep(0.9, 1.5, s["plateau_mask"]) * land
    step = 45.0
    t = h * (1.0 / step)
    tf = torch.floor(t)
    terraced = (tf + smoothstep(0.72, 0.95, t - tf)) * step
    h = h + (terraced - h) * plateau

    # the drainage base: the rivers' level, the smooth continental level 3 m down inland, falling
    # to sea level (0 m) at the coast, so every river reaches the sea at its surface
    river_level = drainage_base(base)
    # land never sinks below it: basins fill up to flood plains just above the rivers (a soft
    # maximum with sqrt only), so no river is perched above the land beside it
    above = h - river_level
    floored = river_level + (above + torch.sqrt(above * above + FLOOD_PLAIN * FLOOD_PLAIN)) * 0.5
    h = h + (floored - h) * smoothstep(-12.0, 0.0, base)

    # dissection: branching valleys cut into the relief above the drainage base
    if params.rivers > 0:
        h = river_level + (h - river_level) * valleys(xw, yw, octs.valleys, depth=DISSECTION)

    # wetness: a continuous signed score, > 0 in water, so interpolated shorelines stay smooth
    wet = -h * 0.2
    water_level = torch.zeros_like(h)

    # rivers: the zero set of a warped field. The ground meets the water at its level with zero
    # slope and stays there for a bank strip a few lattice cells wide, so the surface interpolated
    # from the 16 m lattice is flat across the shore: no step where land and water nodes
    # alternate along a bank, and no bulge of the water surface next to a steep bank.
    if params.rivers > 0:
        r = torch.abs(s["rivers"])
        width = 0.035 * params.rivers
        # 0 in the channel, 1 outside the valley; deeper valleys open wider, so their walls keep
        # below threshold-hillslope steepness instead of growing with the relief they cut
        depth = torch.clamp(h - river_level, 0.0, VALLEY_DEPTH_CAP)
        span = RIVER_VALLEY * (1.0 + depth * (1.0 / VALLEY_OPENING))
        tv = torch.clamp((r - (width + BANK)) / span, 0.0, 1.0)
        valley = tv * (2.0 - tv)  # V-shaped: steepest at the bank strip, flat at the shoulder
        h = torch.minimum(h, river_level + (h - river_level) * valley)
        river_wet = (width - r) * (1.0 / width) - smoothstep(0.0, -4.0, base) * 4.0
        water_level = torch.where(river_wet > wet, river_level, water_level)
        wet = torch.maximum(wet, river_wet)

    # lakes: rare basins flattened to the drainage base; like river banks,
    # the shore meets the water at its level with zero slope and a flat strip
    if params.lakes > 0:
        q = s["lakes"]
        lake_level = river_level  # one level with the rivers, so a lake's shore never lifts a river bank
        allowed = smoothstep(0.6, 0.3, mountain) * smoothstep(10.0, 30.0, base)
        lake_wet = (q - 1.8) * 10.0 - (1.0 - allowed) * 4.0
        shore = smoothstep(-3.3, -0.3, lake_wet)  # reaches the lake's level before its water line
        h = h + (lake_level - h) * shore
        water_level = torch.where(lake_wet > wet, lake_level, water_level)
        wet = torch.maximum(wet, lake_wet)

    water = (wet > 0).to(torch.float32)
    surface = torch.where(water > 0.5, water_level, h)
    coast = smoothstep(6.0, 1.0, surface) * (1.0 - water)

    temperature = 17.0 + s["temperature"] * 7.0 - surface * 0.0065
    moisture = torch.clamp(0.5 + s["moisture"] * 0.28 + coast * 0.2, 0.0, 1.0)
    roughness = (0.25 + 1.6 * mountain + 0.5 * hill_mask) * (1.0 - water)
    return {
        "height": surface,
        "water": water,
        "wetness": wet,
        "water_level": water_level,
        "mountain": mountain,
        "roughness": roughness,
        "temperature": temperature,
        "moisture": moisture,
        "coast": coast,
    }


def detail_octaves(seed: int, base_resolution: float, level: int) -> list[Octave]:
    """Octaves resolved at `level` beyond the macro relief: lattice spacings s_0 .. s_(level-1)."""
    return [Octave(base_resolution / 2.0**j, salt(seed, 100, j)) for j in range(level)]


def detail_height(x: torch.Tensor, y: torch.Tensor, octs: list[Octave], amplitude: torch.Tensor) -> torch.Tensor:
    """Sum of detail octaves (float32 metres), each scaled by its spacing and by `amplitude`.

    Summed coarse to fine, so the partial sum up to level L is bit-identical to level L's total.
    """
    total = torch.zeros(broadcast_shape(x.shape, y.shape), dtype=torch.float32, device=x.device)
    for o, n in zip(octs, octave_noise(x, y, octs)):
        total = total + n * (o.spacing * 0.06) * amplitude
    return total
