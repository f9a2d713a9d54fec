"""Settlements: streets, blocks, lots, buildings, country roads and bridges, as pure functions of position.

The street grid lies in street coordinates (u, v) (core/streets.py: a per-seed rotation of a
smooth domain warp of the world), so in the world streets curve, turn from town to town and meet
at varying angles. The grid is cut into square blocks of `BLOCK` street metres, with streets on
the block borders (every 4th line a wider main road). A block is urban where the settlement
density is high enough and the ground suits building (land, no mountains, no water at its
centre). An urban block is split into n x n lots (n falls as density rises: dense centres get
few large plots, villages many small ones); each lot may hold one building whose size, placement
and floor count come from hashing (block, lot) indices. Building types follow the zone: detached
houses (gabled or hipped roofs) in villages and outskirts, row houses along the streets where it
is denser, apartment blocks (flat roofs) denser still, taller towers in the centres, and large
low industrial halls (flat or shallow gabled) in districts picked by a hashed field on 4 x 4
block cells. In the world a footprint is a rectangle aligned with the street its lot faces
(`world_rects`). Every TRUNK_EVERY-th grid line runs on as a trunk road across all open land,
wild or settled, every COUNTRY_EVERY-th as a country road where the land is settled, and every
NEAR_TOWN_EVERY-th near towns (`countryside`); where a road crosses a
river its deck stands BRIDGE_CLEARANCE above the water (`road_at`, `crossing`). Any point can thus find "its" road and building
without a list, so rasters are seamless and level-independent, and chunk building lists are
enumerated from the same functions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .hashing import M32, hash2, mix32, salt, unit_float
from .noise import fbm, octaves, smoothstep
from .streets import StreetFrame

BLOCK = 96.0  # metres, block pitch including the road
MAIN_EVERY = 4  # every 4th grid line is a main road
HALF_ROAD = 4.0  # half width of a street, metres
HALF_MAIN = 7.0  # half width of a main road
SIDEWALK = 2.5
TRUNK_EVERY = 32  # every 32nd grid line (3 km apart) runs on across wild land too: the networks of towns join
COUNTRY_EVERY = 16  # every 16th grid line (1.5 km apart; main roads in towns) runs on as a country road,
NEAR_TOWN_EVERY = 8  # and near towns every 8th (770 m): most towns meet one, so the roads reach them
HALF_COUNTRY = 3.0  # half width of a country road
COUNTRY_MARGIN = 1.6  # settlement field (std) below the town threshold where country roads still run
NEAR_TOWN_MARGIN = 0.4  # the same for the denser roads near towns
BRIDGE_CLEARANCE = 5.0  # metres from the water surface to the top of a bridge deck
SHORT_SPAN = 2  # the longest water crossing of a street, in grid segments (about 190 m)
LONG_SPAN = 5  # the same on country and trunk roads and main roads on their lines (about 480 m)
URBAN, COUNTRY, DRY = 0, 4, 5  # columns of a block row: gated density (> 0 urban), country-road level
                               # (`countryside`), the block's south-west grid node on dry land (1.0) or not
BLOCK_ROW = 6  # fields of a block row (ProceduralGenerator.block_density)
TOWN_EDGE = 0.3  # settlement field (std) below the town threshold where a town's street nodes can lie
FLOOR_HEIGHT = 3.2


TYPES = ("house", "row_house", "apartment", "industrial", "centre")  # Building.type, by code
ROOFS = ("flat", "gabled", "hipped")  # Building.roof_kind, by code


class Building(NamedTuple):
    """One building; footprint corners counter-clockwise in world ENU metres (float64).

    base: bottom of the walls (below the ground); roof: the eaves, where the walls end (the roof
    itself for flat roofs); ridge: the top of the roof (= roof when flat); roof_kind: flat, gabled
    (ridge along the long side, gable walls on the short sides) or hipped (four slopes of one
    pitch); type: house, row_house, apartment, industrial or centre. The roof surface over a
    footprint point is `roof_surface` (the DSM there, and the plane of the mesh's roof faces)."""

    id: int
    footprint: tuple[tuple[float, float], ...]
    base: float
    roof: float
    floors: int
    block: tuple[int, int]
    lot: tuple[int, int]
    ridge: float
    roof_kind: str
    type: str

    def to_dict(self) -> dict:
        return {"id": self.id, "footprint": [list(p) for p in self.footprint], "base_height": self.base,
                "roof_height": self.roof, "ridge_height": self.ridge, "height": self.roof - self.base,
                "floors": self.floors, "roof": self.roof_kind, "type": self.type,
                "block": list(self.block), "lot": list(self.lot)}


def settlement_octaves(seed: int) -> list:
    return octaves(seed, 20, 16000.0, 3)


def settlement_field(x: torch.Tensor, y: torch.Tensor, octs: list) -> torch.Tensor:
    """The settlement field in noise std units (float32): towns where it is high."""
    return field_from_fbm(fbm(x, y, octs))


def field_from_fbm(value: torch.Tensor) -> torch.Tensor:
    """`settlement_field` from the `fbm` of its octaves (float32), for callers that evaluate it
    with other fBm at the same points (noise.fbms)."""
    return value * (1.0 / 0.14)


def town_threshold(urbanization: float) -> float:
    return 1.15 - 0.4 * (urbanization - 1.0)


def raw_density(x: torch.Tensor, y: torch.Tensor, octs: list, urbanization: float = 1.0) -> torch.Tensor:
    """Settlement density before terrain gating, 0..1 (1 = dense centre); float32."""
    return density_from_field(settlement_field(x, y, octs), urbanization)


def density_from_field(field: torch.Tensor, urbanization: float = 1.0) -> torch.Tensor:
    """`raw_density` from the settlement field at the points (float32)."""
    return smoothstep(town_threshold(urbanization), 2.6, field)


def countryside(field: torch.Tensor, macro: dict[str, torch.Tensor], urbanization: float) -> torch.Tensor:
    """Which country roads run on a block's borders, from the settlement field and macro fields at
    block centres (float32): 3 near towns (roads on every NEAR_TOWN_EVERY-th line), 2 on the
    settled land around and between towns (every COUNTRY_EVERY-th line; two thirds of the land
    at urbanization 1, towns take an eighth), 1 on the wild land beyond (trunk roads on every
    TRUNK_EVERY-th line), 0 where no road runs: in the mountains, the sea and the coast's
    flats, lakes (a river, whose wetness stays below 1, is crossed)."""
    threshold = town_threshold(urbanization)
    land = (macro["mountain"] < 0.2) & (macro["height"] > 2.0) & (macro["wetness"] < 1.0)
    level = 1.0 + (field >= threshold - COUNTRY_MARGIN).to(torch.float32) \
        + (field >= threshold - NEAR_TOWN_MARGIN).to(torch.float32)
    return torch.where(land, level, torch.zeros_like(level))


def country_need(line: torch.Tensor) -> torch.Tensor:
    """The `countryside` level (float32) both blocks beside grid line index `line` (int64) must
    have for a country road to run on it: 1 on trunk lines, 2 on the other COUNTRY_EVERY-th,
    3 on the other NEAR_TOWN_EVERY-th, 4 (never) on the rest."""
    return torch.where(torch.remainder(line, TRUNK_EVERY) == 0, 1.0,
                       torch.where(torch.remainder(line, COUNTRY_EVERY) == 0, 2.0,
                                   torch.where(torch.remainder(line, NEAR_TOWN_EVERY) == 0, 3.0, 4.0)))


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


HOUSE, ROW_HOUSE, APARTMENT, INDUSTRIAL, CENTRE = range(5)
FLAT, GABLED, HIPPED = range(3)
DISTRICT = 4  # blocks per side of an industrial-zoning cell (main roads every 4th line bound it)
INDUSTRIAL_SHARE = 0.18  # fraction of cells zoned industrial (where density allows)


def lots_per_side(density: torch.Tensor) -> torch.Tensor:
    """Lots per block side: 4 (houses) below density 0.28, 3 (row houses) below 0.5, else 2."""
    return torch.where(density >= 0.5, 2, torch.where(density >= 0.28, 3, 4)).to(torch.int64)


def zone_type(seed: int, bx: torch.Tensor, by: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """Building type code (TYPES) of blocks (bx, by) with gated density, following the lot grid
    (`lots_per_side`): houses on 4 x 4 lots, row houses on 3 x 3, apartment blocks on 2 x 2, and
    where the density reaches 0.88 (jittered per block) in the cells of DISTRICT x DISTRICT
    blocks (bounded by main roads) hashed below 0.6, centre towers. Cells hashed (independently)
    below INDUSTRIAL_SHARE are industrial where 0.28 <= density < 0.75: large low halls filling
    most of the row-house or apartment lots."""
    n = lots_per_side(density)
    jitter = unit_float(hash2(bx, by, salt(seed, 22))) - 0.5
    cell = hash2(torch.div(bx, DISTRICT, rounding_mode="floor"), torch.div(by, DISTRICT, rounding_mode="floor"),
                 salt(seed, 23))
    centre = (density + jitter * 0.12 >= 0.88) & (unit_float(cell) < 0.6)
    t = torch.where(n == 4, HOUSE, torch.where(n == 3, ROW_HOUSE, torch.where(centre, CENTRE, APARTMENT)))
    industrial = (unit_float(mix32(cell)) < INDUSTRIAL_SHARE) & (density >= 0.28) & (density < 0.75)
    return torch.where(industrial, INDUSTRIAL, t).to(torch.int64)


def lot_building(seed: int, bx: torch.Tensor, by: torch.Tensor, li: torch.Tensor, lj: torch.Tensor,
                 density: torch.Tensor) -> dict[str, torch.Tensor]:
    """The building of lot (li, lj) in block (bx, by); all inputs broadcast, any shape.

    Returns float64 rectangles (x0, y0, x1, y1, street metres), `present` (bool), `floors` (int64),
    `height` (float32 m, eaves above the ground pad), `rise` (float32 m, ridge above the eaves on
    the street rectangle; `world_rise` on the world footprint), `pitch` (float32, rise per half short
    side), `roof` (int64 ROOFS code), `type` (int64 TYPES code), `n` (lots per side), `id` (int64
    holding a non-zero 32-bit id), `along_v` (bool, the street it faces runs along v) and `either`
    (bool, it could face either street: `world_rects` picks the nearer).
    """
    key = salt(seed, 21)
    h = hash2(bx * 16 + li, by * 16 + lj, key)
    u = [unit_float(h)]
    for k in range(1, 10):
        u.append(unit_float(mix32(torch.bitwise_xor(h, (0x9E3779B9 * k) & M32))))
    kind = zone_type(seed, bx, by, density)
    n_int = lots_per_side(density)
    n = n_int.to(torch.float64)
    west = bx.to(torch.float64) * BLOCK
    south = by.to(torch.float64) * BLOCK
    mw = half_width(bx).to(torch.float64) + SIDEWALK
    me = half_width(bx + 1).to(torch.float64) + SIDEWALK
    ms = half_width(by).to(torch.float64) + SIDEWALK
    mn = half_width(by + 1).to(torch.float64) + SIDEWALK
    lw = (BLOCK - mw - me) / n
    lh = (BLOCK - ms - mn) / n
    lx0 = west + mw + li.to(torch.float64) * lw
    ly0 = south + ms + lj.to(torch.float64) * lh

    # detached buildings: a rectangle somewhere in the lot, 1 m from its edges
    lo = torch.where(kind == HOUSE, 0.45, torch.where(kind == INDUSTRIAL, 0.72, torch.where(kind == CENTRE, 0.55, 0.5)))
    span = torch.where(kind == HOUSE, 0.25, torch.where(kind == INDUSTRIAL, 0.2, 0.35))
    fw = (lo + span * u[1]).to(torch.float64)
    fh = (lo + span * u[2]).to(torch.float64)
    setback = 1.0
    x0 = lx0 + setback + (lw - 2 * setback) * (1.0 - fw) * u[3].to(torch.float64)
    y0 = ly0 + setback + (lh - 2 * setback) * (1.0 - fh) * u[4].to(torch.float64)
    x1 = x0 + (lw - 2 * setback) * fw
    y1 = y0 + (lh - 2 * setback) * fh

    # row houses: the full lot width along the street the lot faces, one setback per block
    row = kind == ROW_HOUSE
    on_s, on_n = lj == 0, lj == n_int - 1
    on_w, on_e = li == 0, li == n_int - 1
    along_y_street = on_s | on_n
    along_x_street = on_w | on_e
    faces_y = along_y_street & ~(along_x_street & (u[3] < 0.5))  # corner lots pick a street
    depth = (9.0 + 3.0 * u[2]).to(torch.float64)
    sb = (2.0 + 2.0 * unit_float(hash2(bx, by, salt(seed, 24)))).to(torch.float64)
    ry0 = torch.where(on_s, ly0 + sb, ly0 + lh - sb - depth)
    rx0 = torch.where(on_w, lx0 + sb, lx0 + lw - sb - depth)
    x0 = torch.where(row, torch.where(faces_y, lx0, rx0), x0)
    x1 = torch.where(row, torch.where(faces_y, lx0 + lw, rx0 + depth), x1)
    y0 = torch.where(row, torch.where(faces_y, ry0, ly0), y0)
    y1 = torch.where(row, torch.where(faces_y, ry0 + depth, ly0 + lh), y1)

    # the street a building faces: the nearer of its block's edges (row houses: the one they line)
    to_x_edge = torch.minimum(li, n_int - 1 - li)
    to_y_edge = torch.minimum(lj, n_int - 1 - lj)
    faces_v = (to_x_edge < to_y_edge) | ((to_x_edge == to_y_edge) & (u[9] < 0.5))

    chance = torch.where(kind == HOUSE, 0.5 + 0.5 * density,
                         torch.where(row, torch.where(along_x_street | along_y_street, 0.95, 0.0),
                                     torch.where(kind == INDUSTRIAL, 0.85, 0.92)))
    present = u[0] < chance

    floors = torch.where(kind == HOUSE, 1 + (u[5] < 0.5).to(torch.int64),
             torch.where(row, 2 + (u[5] < 0.4).to(torch.int64),
             torch.where(kind == APARTMENT, 4 + torch.floor(u[5] * 4.0).to(torch.int64),
             torch.where(kind == CENTRE, 6 + torch.floor(u[5] * u[5] * 18.0).to(torch.int64)
                         + torch.floor(torch.clamp(density - 0.72, 0.0, None) * 20.0).to(torch.int64),
                         2 + (u[5] < 0.3).to(torch.int64)))))
    pitched_walls = floors.to(torch.float32) * FLOOR_HEIGHT + 0.5 + u[6] * 0.3
    flat_walls = floors.to(torch.float32) * FLOOR_HEIGHT + 0.6 + u[6] * 0.8
    hall = 6.0 + 4.0 * u[6]
    roof = torch.where(kind == HOUSE, torch.where(u[7] < 0.6, GABLED, HIPPED),
           torch.where(row, GABLED,
           torch.where(kind == INDUSTRIAL, torch.where(u[7] < 0.55, FLAT, GABLED), FLAT))).to(torch.int64)
    height = torch.where(kind == INDUSTRIAL, hall, torch.where(roof == FLAT, flat_walls, pitched_walls))
    floors = torch.where(kind == INDUSTRIAL, torch.clamp(torch.floor(hall * (1.0 / FLOOR_HEIGHT)), 1, None).to(torch.int64),
                         floors)
    pitch = torch.where(kind == HOUSE, 0.6 + 0.4 * u[8], torch.where(row, 0.7 + 0.3 * u[8], 0.12 + 0.1 * u[8]))
    short = torch.minimum(x1 - x0, y1 - y0).to(torch.float32)
    rise = torch.where(roof == FLAT, torch.zeros_like(pitch), pitch * short * 0.5)  # world_rise: on the footprint
    bid = torch.where(h == 0, torch.ones_like(h), h)
    return {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "present": present, "floors": floors,
            "height": height, "rise": rise, "pitch": pitch, "roof": roof, "type": kind, "n": n_int, "id": bid,
            "along_v": torch.where(row, ~faces_y, faces_v), "either": ~row & (to_x_edge == to_y_edge)}


RECT_MARGIN = 0.25  # metres a footprint keeps inside the image of its street-grid rectangle, for the
                    # map's curvature (under 0.15 m over 40 m): a point of a footprint is in its lot


def world_rects(frame: StreetFrame, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """World footprints of `lot_building` rectangles (street coordinates): rectangles aligned with
    the street the building faces (the v axis where `along_v`, else u; where it could face `either`,
    the street nearer in the world: where streets meet at other than right angles the two differ),
    as that street runs past the building (on a curved street the direction at the building's
    centre differs by degrees), centred where the street rectangle's centre lies, as large as fits
    in the street rectangle's local image there (a parallelogram where the streets do not meet at
    right angles) less RECT_MARGIN; where shear would leave less than 0.3 of the street side, the
    rectangle keeps 0.3 and is less deep.

    Returns float64 (N,) tensors: cx, cy (centre), ex, ey (unit vector of the rectangle's s side),
    w (length along s), h (along t, s turned +90 deg)."""
    uc, vc = (b["x0"] + b["x1"]) * 0.5, (b["y0"] + b["y1"]) * 0.5
    cx, cy = frame.to_world(uc, vc)
    ax, ay, bx, by = frame.inverse_jacobian(cx, cy)
    det = torch.abs(ax * by - ay * bx)
    # street metres from the centre to the nearer grid line across u and across v, and in the world
    du = torch.floor(uc * (1.0 / BLOCK) + 0.5) * BLOCK - uc
    dv = torch.floor(vc * (1.0 / BLOCK) + 0.5) * BLOCK - vc
    nearer_u = torch.abs(du) * det * torch.rsqrt(bx * bx + by * by) <= torch.abs(dv) * det * torch.rsqrt(ax * ax + ay * ay)
    along_v = torch.where(b["either"], nearer_u, b["along_v"])
    # the street's direction where it passes the building: at the centre moved onto the street's
    # centre line (to first order; the direction turns 0.3 deg per metre at most)
    fx = cx + torch.where(along_v, ax * du, bx * dv)
    fy = cy + torch.where(along_v, ay * du, by * dv)
    fax, fay, fbx, fby = frame.inverse_jacobian(fx, fy)
    su, sv = b["x1"] - b["x0"], b["y1"] - b["y0"]
    ax, ay, bx, by = ax * su, ay * su, bx * sv, by * sv  # the parallelogram's sides
    # the street side: (px, py); the other side: (qx, qy); a rectangle along p inside the parallelogram
    px, py = torch.where(along_v, bx, ax), torch.where(along_v, by, ay)
    qx, qy = torch.where(along_v, ax, bx), torch.where(along_v, ay, by)
    length = torch.sqrt(px * px + py * py)
    ex, ey = px / length, py / length
    depth = torch.abs(qx * -ey + qy * ex)  # the other side across the street side
    slant = torch.abs(qx * ex + qy * ey)  # ... and along it: what shear takes off the street side
    full = length - slant
    narrow = full < length * 0.3  # strong shear: keep 0.3 of the street side and give up depth instead,
    # so that the rectangle stays inside the parallelogram (depth * (length - w) / slant fits)
    w = torch.where(narrow, length * 0.3, full)
    h = torch.where(narrow, depth * (length * 0.7) / torch.where(narrow, slant, torch.ones_like(slant)), depth)
    # turned to the street's direction, the rectangle must keep its corners inside the parallelogram:
    # |r . e| w + |r . n| h <= 1 for both rows r of [p q]^-1; it gives up depth first (to half), then width
    sx, sy = torch.where(along_v, fbx, fax), torch.where(along_v, fby, fay)
    slen = torch.sqrt(sx * sx + sy * sy)
    ex, ey = sx / slen, sy / slen
    pq = torch.abs(px * qy - py * qx)
    rows = ((torch.abs(qy * ex - qx * ey) / pq, torch.abs(qy * ey + qx * ex) / pq),
            (torch.abs(py * ex - px * ey) / pq, torch.abs(py * ey + px * ex) / pq))

    def fit(size, along, across):  # the most of one side that fits beside `size` of the other
        return torch.where(across > 0, (1.0 - along * size) / torch.where(across > 0, across, 1.0), float("inf"))

    h = torch.clamp(torch.minimum(torch.minimum(fit(w, *rows[0]), fit(w, *rows[1])), h), min=0.5 * h)
    w = torch.minimum(torch.minimum(fit(h, rows[0][1], rows[0][0]), fit(h, rows[1][1], rows[1][0])), w)
    return {"cx": cx, "cy": cy, "ex": ex, "ey": ey, "w": w - 2.0 * RECT_MARGIN, "h": h - 2.0 * RECT_MARGIN}


MIN_SIDE = 4.0  # metres: a footprint narrower than this is not built (strong shear leaves slivers of lots)


def buildable(rect: dict[str, torch.Tensor]) -> torch.Tensor:
    """Whether `world_rects` footprints are wide enough to build (bool): both sides MIN_SIDE or more.
    Where the contour twist shears the grid most, a lot's parallelogram leaves 1.5-3 m of street side."""
    return torch.minimum(rect["w"], rect["h"]) >= MIN_SIDE


def world_rise(b: dict[str, torch.Tensor], rect: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ridge's rise above the eaves (float32 m) of `lot_building` roofs on their world footprints
    (`world_rects`): the roof's pitch times half the footprint's short side, which shear and the
    street frame's stretch make differ from the street rectangle's (a pitch of 1 on a lot sheared to
    a 2 m wide footprint would otherwise stand 5 times as steep)."""
    short = torch.minimum(rect["w"], rect["h"]).to(torch.float32)
    return torch.where(b["roof"] == FLAT, torch.zeros_like(b["pitch"]), b["pitch"] * short * 0.5)


def rect_local(r: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates (s, t) (float64 m) of world points in rectangles `r` (world_rects), from the
    corner (0, 0) to (w, h); all inputs broadcast."""
    dx, dy = x - r["cx"], y - r["cy"]
    return dx * r["ex"] + dy * r["ey"] + r["w"] * 0.5, dy * r["ex"] - dx * r["ey"] + r["h"] * 0.5


def rect_corners(r: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 4, 2) float64 world corners of rectangles `r`, counter-clockwise from (s, t) = (0, 0)."""
    out = []
    for s, t in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
        ds, dt = r["w"] * s, r["h"] * t
        out.append(torch.stack([r["cx"] + ds * r["ex"] - dt * r["ey"], r["cy"] + ds * r["ey"] + dt * r["ex"]], dim=-1))
    return torch.stack(out, dim=-2)


TERRACE_STEP = 3.5  # metres between terrace levels: the height of a retaining wall
TERRACE_RISER = 0.25  # fraction of a step (of ground departure from the pad plane) the wall takes
PAD_SLOPE = 0.08  # steepest pad plane (8 %): steeper blocks are terraced
GROUND_SLACK = 1.6  # metres: natural ground under a footprint departs this much from the macro relief
                    # interpolated between the footprint's corners (detail octaves, curvature)
EAVES_SLACK = 0.8  # the same for the eaves: less, because the eaves only need to clear the ground by
                   # most of a storey (at least 3 m; storeys are 3.2 m and buildings 3.7 m or more)


def pad_plane(block: torch.Tensor, lx: torch.Tensor, ly: torch.Tensor) -> torch.Tensor:
    """The block's pad plane (float32 m) at block-local coordinates lx, ly (float32 m from the
    block's south-west corner): through the ground at the block centre, its slope clamped to PAD_SLOPE."""
    sx, sy = block[..., 2], block[..., 3]
    slope = torch.sqrt(sx * sx + sy * sy)
    k = PAD_SLOPE / torch.clamp(slope, PAD_SLOPE, None)
    return block[..., 1] + (sx * k) * (lx - 0.5 * BLOCK) + (sy * k) * (ly - 0.5 * BLOCK)


def terrace(d: torch.Tensor) -> torch.Tensor:
    """Terraced offset (float32 m) for ground d metres above the pad plane: flat treads every
    TERRACE_STEP metres (the one through |d| < (1 - riser) * step / 2 is the plane itself) joined
    by linear risers (two creases each, so the terrain mesh needs few vertices); non-decreasing
    in d and within a step of it."""
    u = d * (1.0 / TERRACE_STEP) + 0.5 * (1.0 - TERRACE_RISER)
    k = torch.floor(u)
    return (k + torch.clamp((u - k - (1.0 - TERRACE_RISER)) * (1.0 / TERRACE_RISER), 0.0, 1.0)) * TERRACE_STEP



def roof_surface(x: torch.Tensor, y: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor,
                 y1: torch.Tensor, eave: torch.Tensor, ridge: torch.Tensor, roof: torch.Tensor) -> torch.Tensor:
    """Roof height (float32 m) at points (x, y) inside footprints [x0, x1] x [y0, y1] (float64):
    flat at `eave`; gabled: rising from the eaves of the long sides to the ridge on the centre
    line along the long side (along x when the footprint is square); hipped: rising from all four
    eaves at one pitch, min(distance to each edge) / (short side / 2). The mesh's roof faces are
    the planes of this function; all inputs broadcast."""
    w = x1 - x0
    h = y1 - y0
    dx = torch.minimum(x - x0, x1 - x)
    dy = torch.minimum(y - y0, y1 - y)
    along_x = w >= h
    half = torch.minimum(w, h) * 0.5
    dist = torch.where(roof == HIPPED, torch.minimum(dx, dy), torch.where(along_x, dy, dx))
    t = torch.clamp(dist / torch.clamp(half, 1e-9, None), 0.0, 1.0).to(torch.float32)
    rise = ridge - eave
    return torch.where(roof == FLAT, eave, eave + rise * t)


def footprint_local(b: "Building", x, y):
    """Coordinates (s, t) (numpy float64) of world points in a Building's footprint rectangle,
    from its first corner along its first side (s, up to the side's length w) and the next (t, up
    to h); returns s, t, w, h."""
    import numpy as np
    c = np.asarray(b.footprint, np.float64)
    e, f = c[1] - c[0], c[3] - c[0]
    w, h = float(np.hypot(*e)), float(np.hypot(*f))
    dx, dy = np.asarray(x, np.float64) - c[0, 0], np.asarray(y, np.float64) - c[0, 1]
    return (dx * e[0] + dy * e[1]) / w, (dx * f[0] + dy * f[1]) / h, w, h


def roof_surface_np(b: "Building", x, y):
    """`roof_surface` of one Building at numpy world points (float64 in, float32 out)."""
    s, t_, w, h = footprint_local(b, x, y)
    t = torch.as_tensor
    zero = t(0.0, dtype=torch.float64)
    z = roof_surface(t(s), t(t_), zero, zero, t(w, dtype=torch.float64), t(h, dtype=torch.float64),
                     t(b.roof, dtype=torch.float32), t(b.ridge, dtype=torch.float32), t(ROOFS.index(b.roof_kind)))
    return z.numpy()


def by_country_line(index: torch.Tensor, every: int = NEAR_TOWN_EVERY) -> torch.Tensor:
    """Whether blocks of this column (or row) index (int64) border a grid line whose index is a
    multiple of `every` (by default any country road's; TRUNK_EVERY: a trunk road's)."""
    k = torch.remainder(index, every)
    return (k == 0) | (k == every - 1)


def crossing(dry: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Whether a road may run on grid segments, given which nodes along each segment's line are on
    dry land: dry (2 * LONG_SPAN, N) bool, the nodes from LONG_SPAN - 1 before the segment's start
    to LONG_SPAN - 1 beyond its end (the segment joins nodes LONG_SPAN - 1 and LONG_SPAN), and the
    longest water crossing allowed on each segment's line, in segments (span (N,) int64, at most
    LONG_SPAN). A segment is allowed where the nearest dry nodes before and beyond it lie at most
    `span` segments apart: so a road crosses water as one bridge from bank to bank, never runs
    along water for a segment, and stops at the shore of wider water."""
    k = LONG_SPAN
    steps = torch.arange(k, device=dry.device).reshape(-1, 1)  # nodes from the segment's ends outwards
    far = torch.full_like(steps, 2 * k)
    back = torch.where(dry[:k].flip(0), steps, far).amin(0)  # segments from the start to the nearest dry node before
    ahead = torch.where(dry[k:], steps, far).amin(0)
    return back + ahead + 1 <= span


def crossing_span(line: torch.Tensor) -> torch.Tensor:
    """The longest water crossing (int64 segments) on grid line index `line` (int64): LONG_SPAN on
    the COUNTRY_EVERY-th lines (country and trunk roads, main roads in towns), SHORT_SPAN on the rest."""
    return torch.where(torch.remainder(line, COUNTRY_EVERY) == 0, LONG_SPAN, SHORT_SPAN)


def road_at(u: torch.Tensor, v: torch.Tensor, blocks, widen: float = 0.0) -> dict[str, torch.Tensor]:
    """Roads at street coordinates (u, v) (float64, any shape); `blocks.columns(bx, by, names)`
    gives columns of block rows.

    A street runs on a block's border where the block or the one across is urban (half width
    `half_width` of the grid line); a country road (HALF_COUNTRY) on the borders of grid lines
    where both blocks beside it have the `countryside` level the line needs (`country_need`:
    trunk lines on any open land, the other COUNTRY_EVERY-th lines on settled land, the other
    NEAR_TOWN_EVERY-th near towns); either only where the water
    it crosses ends on both sides within reach (`crossing`). Only the nearer east/west and
    north/south borders can be within a road's width. `widen` (m) widens every road.

    Returns: road (bool), own / across_x / across_y (float32 densities of the point's block and
    the blocks across its nearer borders), edge_x / edge_y (float32 m to those borders), hw_x /
    hw_y (float32 half widths of their streets), bx, by (int64 block), lx, ly (float64 m in it)."""
    bx = torch.floor(u * (1.0 / BLOCK)).to(torch.int64)
    by = torch.floor(v * (1.0 / BLOCK)).to(torch.int64)
    lx = u - bx.to(torch.float64) * BLOCK
    ly = v - by.to(torch.float64) * BLOCK
    west, south = lx < 0.5 * BLOCK, ly < 0.5 * BLOCK
    line_x = torch.where(west, bx, bx + 1)  # the nearer grid line across u, and across v
    line_y = torch.where(south, by, by + 1)
    # own block, the blocks across the nearer borders, and those whose south-west nodes are the
    # nearer borders' segments' ends and the nodes beyond them along the line
    rows = blocks.columns(torch.stack([bx, torch.where(west, bx - 1, bx + 1), bx]),
                          torch.stack([by, by, torch.where(south, by - 1, by + 1)]), (URBAN, COUNTRY))
    urban, country = rows[..., 0], rows[..., 1]
    own, across_x, across_y = urban[0], urban[1], urban[2]
    edge_x = torch.minimum(lx, BLOCK - lx).to(torch.float32)
    edge_y = torch.minimum(ly, BLOCK - ly).to(torch.float32)
    hw_x, hw_y = half_width(line_x), half_width(line_y)
    ends_x, ends_y = _line_ends(bx, by, line_x, line_y, blocks, (edge_x < torch.clamp(hw_x, min=HALF_COUNTRY) + widen)
                                | (edge_y < torch.clamp(hw_y, min=HALF_COUNTRY) + widen))
    street = (((edge_x < hw_x + widen) & ((own > 0) | (across_x > 0)) & ends_x)
              | ((edge_y < hw_y + widen) & ((own > 0) | (across_y > 0)) & ends_y))
    need_x, need_y = country_need(line_x), country_need(line_y)
    lane = (((edge_x < HALF_COUNTRY + widen) & (torch.minimum(country[0], country[1]) >= need_x) & ends_x)
            | ((edge_y < HALF_COUNTRY + widen) & (torch.minimum(country[0], country[2]) >= need_y) & ends_y))
    return {"road": street | lane, "own": own, "across_x": across_x, "across_y": across_y, "edge_x": edge_x,
            "edge_y": edge_y, "hw_x": hw_x, "hw_y": hw_y, "bx": bx, "by": by, "lx": lx, "ly": ly}


def _line_ends(bx: torch.Tensor, by: torch.Tensor, line_x: torch.Tensor, line_y: torch.Tensor, blocks,
               near: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`crossing` of the nearer border segments across u (line_x) and across v (line_y) of points in
    blocks (bx, by) (int64, one shape), asked of the blocks only where `near` (bool: within a
    road's width of a border; elsewhere no road can use the answer, which is False)."""
    ask = torch.nonzero(near.reshape(-1)).reshape(-1)
    none = torch.zeros(near.shape, dtype=torch.bool, device=near.device)
    if ask.numel() == 0:
        return none, none
    bx, by, line_x, line_y = (v.expand(near.shape).reshape(-1).index_select(0, ask) for v in (bx, by, line_x, line_y))
    none = none.reshape(-1)
    return (none.index_put((ask,), _per_segment(line_x, by, blocks, False)).reshape(near.shape),
            none.index_put((ask,), _per_segment(line_y, bx, blocks, True)).reshape(near.shape))


def _per_segment(line: torch.Tensor, along: torch.Tensor, blocks, across_v: bool) -> torch.Tensor:
    """`crossing` of the segments on grid lines `line` from node `along` (int64, 1-D; lines across
    u, or across v with `across_v`), each distinct segment asked of the blocks once: many points
    share a segment. The segments are numbered in their bounding box (a flag table, no sort)."""
    l0, a0 = int(line.min()), int(along.min())
    cols, rows = int(line.max()) - l0 + 1, int(along.max()) - a0 + 1
    if cols * rows > 4 * line.numel() + 4096:  # scattered points: each point's own segment
        return _crossing_of(line, along, blocks, across_v)
    key = (line - l0) * rows + (along - a0)
    used = torch.zeros(cols * rows, dtype=torch.bool, device=line.device)
    used[key] = True
    seg = torch.nonzero(used).reshape(-1)
    slot = torch.cumsum(used, 0) - 1  # key -> row of `seg`
    ok = _crossing_of(torch.div(seg, rows, rounding_mode="floor") + l0, torch.remainder(seg, rows) + a0, blocks, across_v)
    return ok.index_select(0, slot.index_select(0, key))


def _crossing_of(line: torch.Tensor, along: torch.Tensor, blocks, across_v: bool) -> torch.Tensor:
    """`crossing` of single segments on grid lines `line` from node `along` (int64, 1-D)."""
    offsets = list(range(1 - LONG_SPAN, LONG_SPAN + 1))  # the nodes `crossing` reads, from each segment's start
    lines, nodes = torch.stack([line] * len(offsets)), torch.stack([along + o for o in offsets])
    bx, by = (nodes, lines) if across_v else (lines, nodes)
    dry = blocks.columns(bx, by, (DRY,))[..., 0] > 0
    return crossing(dry, crossing_span(line))


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
