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

from dataclasses import dataclass

import torch

from . import lattice
from .hashing import salt
from .noise import Octave, eroded_fbm, fbm, gradient_noise, octaves, ridged, smoothstep

FBM_STD = 0.14  # measured standard deviation of a 3-4 octave `fbm`; fields below are in its units
SMOOTH_LATTICE = 512.0  # metres: world lattice the kilometre-scale fields are interpolated from
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
            temperature=octaves(seed, 11, 80000.0, 3),
            moisture=octaves(seed, 12, 30000.0, 3),
        )


def smooth_fields(x: torch.Tensor, y: torch.Tensor, octs: MacroOctaves) -> dict[str, torch.Tensor]:
    """The slowly varying inputs of the relief (kilometre scales), in fbm std units (float32):
    domain warp (metres), continent, masks, river and lake fields, climate."""
    warp = 1400.0
    wx = fbm(x, y, octs.warp_x) * (warp / FBM_STD)
    wy = fbm(x, y, octs.warp_y) * (warp / FBM_STD)
    xw = x + wx.to(torch.float64)
    yw = y + wy.to(torch.float64)
    z = 1.0 / FBM_STD
    return {
        "warp_x": wx, "warp_y": wy,
        "continent": fbm(xw, yw, octs.continent) * z,
        "mountain_mask": fbm(x, y, octs.mountain_mask) * z,
        "hill_mask": fbm(x, y, octs.hill_mask) * z,
        "plateau_mask": fbm(x, y, octs.plateau_mask) * z,
        "rivers": fbm(xw, yw, octs.rivers) * z,
        "lakes": fbm(x, y, octs.lakes) * z,
        "temperature": fbm(x, y, octs.temperature) * z,
        "moisture": fbm(x, y, octs.moisture) * z,
    }


def macro_fields(x: torch.Tensor, y: torch.Tensor, octs: MacroOctaves,
                 params: TerrainParams = TerrainParams()) -> dict[str, torch.Tensor]:
    """Level-independent relief and climate at world points.

    x, y: float64 metres, broadcastable. Returns float32 tensors of the broadcast shape:
    height (m, water surface over water), water (1 where water, else 0), wetness (continuous,
    > 0 exactly where water), water_level (m),
    mountain (0..1 mountain mask), roughness (relative detail amplitude), temperature (deg C),
    moisture (0..1), coast (0..1, 1 on low coastal land).
    """
    s = lattice.interpolate(lambda a, b: smooth_fields(a, b, octs), x, y, SMOOTH_LATTICE)
    xw = x + s["warp_x"].to(torch.float64)
    yw = y + s["warp_y"].to(torch.float64)

    cont = s["continent"] - params.sea_level_bias
    base = (cont + 0.9) * 260.0  # smooth continental level: 0 m at the coast, ~250 m per std inland

    land = smoothstep(-0.3, 0.5, cont)
    mountain = smoothstep(0.35, 1.3, s["mountain_mask"]) * land
    peaks = ridged(xw, yw, octs.mountains)
    height_m = peaks * peaks * (2600.0 * params.relief) * mountain

    hill_mask = smoothstep(-1.2, 1.5, s["hill_mask"])
    hills = eroded_fbm(xw, yw, octs.hills, erosion=0.6) * (1.0 / 0.083)
    height_h = hills * ((35.0 + 140.0 * hill_mask) * params.relief) * land

    h = base + height_m + height_h

    # plateaus: terraces with steep risers where the plateau mask is high
    plateau = smoothstep(0.9, 1.5, s["plateau_mask"]) * land
    step = 45.0
    t = h * (1.0 / step)
    tf = torch.floor(t)
    terraced = (tf + smoothstep(0.72, 0.95, t - tf)) * step
    h = h + (terraced - h) * plateau

    # wetness: a continuous signed score, > 0 in water, so interpolated shorelines stay smooth
    wet = -h * 0.2
    water_level = torch.zeros_like(h)

    # rivers: the zero set of a warped field; valleys carved down to the smooth continental level
    river_level = base - 3.0
    if params.rivers > 0:
        r = torch.abs(s["rivers"])
        on_land = smoothstep(8.0, 30.0, base)
        width = 0.035 * params.rivers
        valley = smoothstep(width, width + 0.22, r)  # 0 in the channel, 1 outside the valley
        carved = river_level + 1.5 + (h - river_level - 1.5) * valley
        lower = torch.minimum(h, carved)
        h = h + (lower - h) * on_land
        river_wet = (width - r) * (1.0 / width) - (1.0 - on_land) * 4.0
        water_level = torch.where(river_wet > wet, river_level, water_level)
        wet = torch.maximum(wet, river_wet)

    # lakes: rare basins flattened to a level just under the continental level
    if params.lakes > 0:
        q = s["lakes"]
        lake_level = base - 1.0
        allowed = smoothstep(0.6, 0.3, mountain) * smoothstep(10.0, 30.0, base)
        shore = smoothstep(1.55, 1.8, q) * allowed
        h = h + (lake_level + 0.6 - h) * shore
        lake_wet = (q - 1.8) * 10.0 - (1.0 - allowed) * 4.0
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
    total = torch.zeros(torch.broadcast_shapes(x.shape, y.shape), dtype=torch.float32, device=x.device)
    for o in octs:
        total = total + gradient_noise(x, y, o) * (o.spacing * 0.06) * amplitude
    return total
