"""Settlements: a road grid, blocks, lots and buildings, as pure functions of world position.

The world is cut into square blocks of `BLOCK` metres, with roads on the block borders (every 4th
line a wider main road). A block is urban where the settlement density is high enough and the
ground suits building (land, no mountains, no water at its centre). An urban block is split into
n x n lots (n falls as density rises: dense centres get few large plots, villages many small
ones); each lot may hold one rectangular building whose size, placement and floor count come from
hashing (block, lot) indices. Any point can thus find "its" building without a list, so rasters are
seamless and level-independent, and chunk building lists are enumerated from the same function.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .hashing import M32, hash2, mix32, salt, unit_float
from .noise import fbm, octaves, smoothstep

BLOCK = 96.0  # metres, block pitch including the road
MAIN_EVERY = 4  # every 4th grid line is a main road
HALF_ROAD = 4.0  # half width of a street, metres
HALF_MAIN = 7.0  # half width of a main road
SIDEWALK = 2.5
FLOOR_HEIGHT = 3.2


class Building(NamedTuple):
    """One building; footprint corners counter-clockwise in world ENU metres (float64)."""

    id: int
    footprint: tuple[tuple[float, float], ...]
    base: float
    roof: float
    floors: int
    block: tuple[int, int]
    lot: tuple[int, int]

    def to_dict(self) -> dict:
        return {"id": self.id, "footprint": [list(p) for p in self.footprint], "base_height": self.base,
                "roof_height": self.roof, "height": self.roof - self.base, "floors": self.floors,
                "block": list(self.block), "lot": list(self.lot)}


def settlement_octaves(seed: int) -> list:
    return octaves(seed, 20, 16000.0, 3)


def raw_density(x: torch.Tensor, y: torch.Tensor, octs: list, urbanization: float = 1.0) -> torch.Tensor:
    """Settlement density before terrain gating, 0..1 (1 = dense centre); float32."""
    z = fbm(x, y, octs) * (1.0 / 0.14)
    return smoothstep(1.15 - 0.4 * (urbanization - 1.0), 2.6, z)


def gate(macro: dict[str, torch.Tensor]) -> torch.Tensor:
    """How buildable the ground is (0..1) from macro fields at a block centre."""
    dry = 1.0 - macro["water"]
    return (smoothstep(0.25, 0.1, macro["mountain"]) * smoothstep(2.0, 6.0, macro["height"]) * dry
            * smoothstep(0.9, 0.5, macro["roughness"]))


def half_width(line: torch.Tensor) -> torch.Tensor:
    """Half width (m) of the road on grid line index `line` (int64)."""
    main = torch.remainder(line, MAIN_EVERY) == 0
    return torch.where(main, torch.full_like(line, 0, dtype=torch.float32) + HALF_MAIN,
                       torch.full_like(line, 0, dtype=torch.float32) + HALF_ROAD)


def lots_per_side(density: torch.Tensor) -> torch.Tensor:
    return torch.where(density > 0.7, 2, torch.where(density > 0.35, 3, 4)).to(torch.int64)


def lot_building(seed: int, bx: torch.Tensor, by: torch.Tensor, li: torch.Tensor, lj: torch.Tensor,
                 density: torch.Tensor) -> dict[str, torch.Tensor]:
    """The building of lot (li, lj) in block (bx, by); all inputs broadcast, any shape.

    Returns float64 rectangles (x0, y0, x1, y1, world metres), `present` (bool), `floors` (int64),
    `height` (float32 m) and `id` (int64 holding a non-zero 32-bit id).
    """
    key = salt(seed, 21)
    h = hash2(bx * 16 + li, by * 16 + lj, key)
    u = [unit_float(h)]
    for k in range(1, 7):
        u.append(unit_float(mix32(torch.bitwise_xor(h, (0x9E3779B9 * k) & M32))))
    present = u[0] < (0.45 + 0.5 * density)

    n = lots_per_side(density).to(torch.float64)
    west = bx.to(torch.float64) * BLOCK
    south = by.to(torch.float64) * BLOCK
    mw = half_width(bx).to(torch.float64) + SIDEWALK
    me = half_width(bx + 1).to(torch.float64) + SIDEWALK
    ms = half_width(by).to(torch.float64) + SIDEWALK
    mn = half_width(by + 1).to(torch.float64) + SIDEWALK
    lw = (BLOCK - mw - me) / n
    lh = (BLOCK - ms - mn) / n
    fw = (0.55 + 0.35 * u[1]).to(torch.float64)
    fh = (0.55 + 0.35 * u[2]).to(torch.float64)
    setback = 1.0
    x0 = west + mw + li.to(torch.float64) * lw + setback + (lw - 2 * setback) * (1.0 - fw) * u[3].to(torch.float64)
    y0 = south + ms + lj.to(torch.float64) * lh + setback + (lh - 2 * setback) * (1.0 - fh) * u[4].to(torch.float64)
    x1 = x0 + (lw - 2 * setback) * fw
    y1 = y0 + (lh - 2 * setback) * fh

    d3 = density * density * density
    max_extra = 1.0 + 36.0 * d3
    floors = (1.0 + torch.floor(density * 4.0) + torch.floor(u[5] * u[5] * u[5] * max_extra)).to(torch.int64)
    height = floors.to(torch.float32) * FLOOR_HEIGHT + 0.6 + u[6] * 0.8
    bid = torch.where(h == 0, torch.ones_like(h), h)
    return {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "present": present, "floors": floors,
            "height": height, "id": bid}


def locate(x: torch.Tensor, y: torch.Tensor, density: torch.Tensor) -> dict[str, torch.Tensor]:
    """Block and lot indices of world points; density is the (gated) density of each point's block."""
    bx = torch.floor(x * (1.0 / BLOCK)).to(torch.int64)
    by = torch.floor(y * (1.0 / BLOCK)).to(torch.int64)
    lx = x - bx.to(torch.float64) * BLOCK
    ly = y - by.to(torch.float64) * BLOCK
    n = lots_per_side(density)
    mw = half_width(bx).to(torch.float64) + SIDEWALK
    me = half_width(bx + 1).to(torch.float64) + SIDEWALK
    ms = half_width(by).to(torch.float64) + SIDEWALK
    mn = half_width(by + 1).to(torch.float64) + SIDEWALK
    li = torch.floor((lx - mw) / ((BLOCK - mw - me) / n)).to(torch.int64)
    lj = torch.floor((ly - ms) / ((BLOCK - ms - mn) / n)).to(torch.int64)
    return {"bx": bx, "by": by, "lx": lx, "ly": ly, "li": torch.clamp(li, 0, None), "lj": torch.clamp(lj, 0, None),
            "n": n}
