"""The embedded default generator: procedural, deterministic, seamless and cascade-consistent.

Per chunk: the macro relief (level-independent; on a 16 m world lattice at fine levels), the
detail octaves the level resolves, settlements (roads, lots, buildings raising the DSM), then
pixel layers: land cover from climate, slope and altitude, albedo, and building instances.
Every value is a pure function of (seed, level, world position), so chunks can be generated alone,
in any order or process, and agree bit for bit on shared samples (see core.noise for why).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable, NamedTuple

import numpy as np
import torch

from .. import biomes, lattice, settlements, terrain, vegetation
from .. import twist as contour_twist
from ..chunk import Chunk
from ..device import default_device
from ..errors import GeneratorError
from ..hashing import hash2, salt, unit_float
from ..keys import ChunkKey
from ..noise import Octave, fbms, octaves, smoothstep
from ..building_table import BuildingTable, gc_paused
from ..settlements import BLOCK
from ..shapes import broadcast_shape
from ..streets import StreetFrame
from ..vegetation import Tree, VegetationNodes
from ..spec import TREE_OBJECTS_MAX_RESOLUTION, WorldSpec
from . import register

MACRO_LATTICE = 16.0  # metres; the macro relief's finest lattice is 192 m
URBAN_MIN_DENSITY = 0.12
BLOCK_ROW = settlements.BLOCK_ROW
TABLE_MARGIN = settlements.LONG_SPAN + 1  # blocks a chunk's block table reaches beyond its image
PLANE_STEP = 24.0  # metres between the points a block's ground plane is fitted to
MACRO_NODES_WITH_BLOCKS = 6000  # a chunk's macro nodes up to this many are evaluated with its blocks
SAMPLE_FIELDS = ("height", "wetness", "roughness", "temperature", "moisture", "coast", "mountain")  # the
# macro fields a chunk reads at its samples (`_samples`, pixel classes): the others are not interpolated


OWN_PARAMETERS = frozenset({"urbanization", "vegetation", "contour_streets"})  # besides terrain.TerrainParams


@register("procedural")
class ProceduralGenerator:
    """Parameters (WorldSpec.generator_params): relief, sea_level_bias, rivers, lakes (see
    terrain.TerrainParams), urbanization (settlement density multiplier, default 1),
    vegetation (tree probability multiplier, default 1; 0: no trees) and contour_streets (default 1:
    the street grid turns to the contours, core/twist.py, docs/towns.md; 0: the grid without the twist)."""

    def __init__(self, spec: WorldSpec):
        self.spec = spec
        params = spec.params
        known = {f.name for f in fields(terrain.TerrainParams)} | OWN_PARAMETERS
        unknown = set(params) - known
        if unknown:
            raise GeneratorError(f"unknown procedural parameters {sorted(unknown)}; expected some of {sorted(known)}")
        for k, v in params.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise GeneratorError(f"procedural parameter {k!r} must be a number, got {v!r}")
        self.terrain_params = terrain.TerrainParams(**{k: float(v) for k, v in params.items() if k not in OWN_PARAMETERS})
        self.urbanization = float(params.get("urbanization", 1.0))
        self.vegetation = float(params.get("vegetation", 1.0))
        if not self.vegetation >= 0:
            raise GeneratorError(f"procedural parameter 'vegetation' must be >= 0 (0: no trees), got {self.vegetation!r}")
        self.device = default_device()
        seed = spec.seed
        self.macro_octaves = terrain.MacroOctaves.for_seed(seed)
        self.settlement_octaves = settlements.settlement_octaves(seed)
        contour = float(params.get("contour_streets", 1))
        if contour not in (0.0, 1.0):
            raise GeneratorError(f"procedural parameter 'contour_streets' must be 0 or 1, got {contour!r}")
        # by default (contour_streets 1) the street grid turns to the contours of the macro relief (core/twist.py)
        self.streets = StreetFrame.for_seed(seed, height=(lambda x, y: self.macro(x, y)["height"]) if contour else None)
        self.forest_octaves = octaves(seed, 30, 900.0, 3)
        self.farm_octaves = octaves(seed, 31, 2500.0, 2)
        self.snow_octaves = octaves(seed, 32, 400.0, 2)
        self.broad_octaves = octaves(seed, 33, 320.0, 3)
        self._level_cache = LevelCache()  # building levels by lot, across chunks
        self.crop_key = salt(seed, 34)
        self.texture_key = salt(seed, 35)
        self.clearing_key = salt(seed, 36)

    # ---------------------------------------------------------------- fields at world points
    def macro(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Macro fields evaluated directly (x, y float64 metres, broadcastable)."""
        return terrain.macro_fields(x, y, self.macro_octaves, self.terrain_params)

    def _macro_for_samples(self, x: torch.Tensor, y: torch.Tensor, level: int, grid: bool,
                           nodes: "MacroNodes | None" = None):
        """Macro fields at samples: directly where they sit on lattice nodes (identical to
        interpolation), else through the MACRO_LATTICE lattice, whose nodes come from `nodes`
        (the chunk's, evaluated once) where given."""
        if self.spec.resolution(level) >= MACRO_LATTICE:
            return self.macro(x, y)
        if grid:
            field = self.macro if nodes is None else lambda a, b: nodes(a, b, SAMPLE_FIELDS)
            return lattice.on_grid(field, x.reshape(-1), y.reshape(-1), MACRO_LATTICE)
        return lattice.at_points(self.macro, x, y, MACRO_LATTICE)

    def block_density(self, cx: torch.Tensor, cy: torch.Tensor, nu: torch.Tensor, nv: torch.Tensor,
                      by_country_line: torch.Tensor, by_trunk_line: torch.Tensor,
                      extra: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Block rows of blocks centred at world points (cx, cy) with their south-west grid node at
        street coordinates (nu, nv) (float64, 1-D; its world point is found only for the blocks
        whose relief is evaluated); by_country_line, by_trunk_line (bool): the block borders a country
        road's grid line, a trunk road's (only those blocks' country flag is ever read, and on
        wild land only trunk lines').

        Returns (N, settlements.BLOCK_ROW) float32: density (0 = not urban), ground height at the
        centre (m) and its slopes per street metre along the grid's u and v axes, from the macro
        relief at the centre and PLANE_STEP street metres along each axis (0 where not urban);
        COUNTRY: which country roads run on its borders (settlements.countryside; 0 off the
        country lines); DRY: 1.0 where its south-west node is dry land (roads end on dry land:
        settlements.road_at). The macro relief is evaluated only where a town, a town's edge or
        a country road can be (the settlement field changes by 0.2 std at most over a block).
        With `extra` points (x, y float64, 1-D), the macro fields there come back too, from the
        same call: (rows, fields).
        """
        field = settlements.settlement_field(cx, cy, self.settlement_octaves)
        out = torch.zeros(field.shape + (settlements.BLOCK_ROW,), dtype=torch.float32, device=field.device)
        threshold = settlements.town_threshold(self.urbanization)
        country_field = ((field >= threshold - settlements.COUNTRY_MARGIN) & by_country_line) | by_trunk_line
        near = torch.nonzero(country_field | (field >= threshold - settlements.TOWN_EDGE)).reshape(-1)
        ex, ey = extra if extra is not None else (cx[:0], cy[:0])
        if near.numel() == 0:
            return out if extra is None else (out, self.macro(ex, ey))
        pick = lambda v: v.index_select(0, near)  # noqa: E731
        px, py, field, country_field = pick(cx), pick(cy), pick(field), pick(country_field)
        raw = smoothstep(threshold, 2.6, field)
        cand = torch.nonzero(raw > 0).reshape(-1)  # of `near`
        ax, ay, bx, by = self.streets.inverse_jacobian(px.index_select(0, cand), py.index_select(0, cand))
        cx_, cy_ = px.index_select(0, cand), py.index_select(0, cand)
        nx, ny = self.streets.to_world(pick(nu), pick(nv))
        m = self.macro(torch.cat([px, nx, cx_ + ax * PLANE_STEP, cx_ + bx * PLANE_STEP, ex]),
                       torch.cat([py, ny, cy_ + ay * PLANE_STEP, cy_ + by * PLANE_STEP, ey]))
        e = ex.numel()
        fields = {name: v[v.numel() - e:] for name, v in m.items()}
        m = {name: v[:v.numel() - e] for name, v in m.items()}
        k, c = near.numel(), cand.numel()
        centre = {name: v[:k] for name, v in m.items()}
        country = torch.where(country_field, settlements.countryside(field, centre, self.urbanization), 0.0)
        out[near, settlements.COUNTRY] = country
        out[near, settlements.DRY] = (m["wetness"][k:2 * k] <= 0).to(torch.float32)
        h = centre["height"].index_select(0, cand)
        d = raw.index_select(0, cand) * settlements.gate({name: v.index_select(0, cand) for name, v in centre.items()})
        rows = near.index_select(0, cand)
        out[rows, settlements.URBAN] = torch.where(d > URBAN_MIN_DENSITY, d, torch.zeros_like(d))
        out[rows, 1] = h
        out[rows, 2] = (m["height"][2 * k:2 * k + c] - h) * (1.0 / PLANE_STEP)
        out[rows, 3] = (m["height"][2 * k + c:] - h) * (1.0 / PLANE_STEP)
        return out if extra is None else (out, fields)

    def vegetation_node_grid(self, west: float, south: float, east: float, north: float):
        """(i0, j0, xs (1, W), ys (H, 1)) of the VEG_LATTICE nodes `vegetation_nodes` evaluates."""
        i0, i1 = vegetation.node_range(west, east)
        j0, j1 = vegetation.node_range(south, north)
        i0, i1, j0, j1 = i0 - 1, i1 + 1, j0 - 1, j1 + 1  # a ring more, cropped below: slopes need neighbours
        dev = self.device
        xs = (torch.arange(i0, i1 + 1, dtype=torch.int64, device=dev).to(torch.float64) * vegetation.VEG_LATTICE).reshape(1, -1)
        ys = (torch.arange(j0, j1 + 1, dtype=torch.int64, device=dev).to(torch.float64) * vegetation.VEG_LATTICE).reshape(-1, 1)
        return i0, j0, xs, ys

    def vegetation_nodes(self, west: float, south: float, east: float, north: float,
                         macro: dict[str, torch.Tensor] | None = None) -> VegetationNodes:
        """The vegetation fields on the VEG_LATTICE nodes around [west, east] x [south, north]:
        forest stands from the same rule as the forest class (moisture, forest noise, climate),
        less farmland, water, sand, treeline and steep slopes, with clearings; hedged farmland;
        conifer share (cold) and vigour (wet and warm). `macro`: the macro fields on those nodes
        ((H, W) each; `vegetation_node_grid`), if already evaluated."""
        i0, j0, xs, ys = self.vegetation_node_grid(west, south, east, north)
        i1, j1 = i0 + xs.shape[1] - 1, j0 + ys.shape[0] - 1
        dev = self.device
        m = self.macro(xs, ys) if macro is None else macro
        h = m["height"]
        gx = torch.zeros_like(h)
        gy = torch.zeros_like(h)
        gx[:, 1:-1] = (h[:, 2:] - h[:, :-2]) * (0.5 / vegetation.VEG_LATTICE)
        gy[1:-1, :] = (h[2:, :] - h[:-2, :]) * (0.5 / vegetation.VEG_LATTICE)
        slope = torch.sqrt(gx * gx + gy * gy)
        forest_fbm, farm_fbm, settlement_fbm = fbms(xs, ys, (self.forest_octaves, self.farm_octaves,
                                                             self.settlement_octaves))
        forest_noise, farm_noise = forest_fbm * (1.0 / 0.14), farm_fbm * (1.0 / 0.14)
        density = settlements.density_from_field(settlements.field_from_fbm(settlement_fbm), self.urbanization)
        t, moist = m["temperature"], m["moisture"]
        dry = smoothstep(-0.4, -1.4, m["wetness"]) * smoothstep(0.5, 0.2, m["coast"])
        farm = (smoothstep(0.25, 0.45, farm_noise + density * 3.0) * smoothstep(0.25, 0.32, moist)
                * smoothstep(0.85, 0.78, moist) * smoothstep(3.0, 5.0, t) * smoothstep(0.16, 0.1, slope))
        treeline = 1.0 - smoothstep(0.4, 0.6, m["mountain"]) * smoothstep(5.0, 3.0, t)
        climate = smoothstep(-1.0, 1.5, t) * (1.0 - smoothstep(0.3, 0.22, moist) * smoothstep(11.0, 13.0, t))
        stand = smoothstep(0.6, 0.72, moist + forest_noise * 0.22)
        ii = torch.arange(i0, i1 + 1, dtype=torch.int64, device=dev).reshape(1, -1)
        jj = torch.arange(j0, j1 + 1, dtype=torch.int64, device=dev).reshape(-1, 1)
        clearing = torch.where(unit_float(hash2(ii, jj, self.clearing_key)) < 0.1, 0.15, 1.0)
        forest = (stand * (1.0 - farm) * dry * treeline * climate * smoothstep(0.85, 0.55, slope)
                  * clearing * 0.92)
        hedge = farm * dry * smoothstep(0.85, 0.45, moist + forest_noise * 0.22 - 0.1)
        conifer = torch.clamp(smoothstep(12.0, 4.0, t) + m["mountain"] * 0.4, 0.0, 1.0)
        vigour = torch.clamp(moist * 1.3 - 0.15, 0.0, 1.0) * smoothstep(-2.0, 9.0, t)
        # rivers narrower than a node spacing pass between nodes: any node near enough to water
        # that a channel could lie in its cells asks the exact water test for its trees
        water = vegetation.dilate((m["wetness"] > -4.0).to(torch.float32))
        fields = {"forest": forest, "hedge": hedge, "conifer": conifer, "vigour": vigour, "water": water}
        return VegetationNodes(i0 + 1, j0 + 1, {k: v.to(torch.float32)[1:-1, 1:-1] for k, v in fields.items()},
                               self.vegetation, self.water_at)

    def macro_node_grid(self, west: float, south: float, east: float, north: float):
        """(i0, j0, xs (1, W), ys (H, 1)) of the MACRO_LATTICE nodes that the samples of [west, east] x
        [south, north] and trunks within 24 m of it interpolate from."""
        s = MACRO_LATTICE
        i0, i1 = int(np.floor((west - 24.0) / s)) - 2, int(np.floor((east + 24.0) / s)) + 3
        j0, j1 = int(np.floor((south - 24.0) / s)) - 2, int(np.floor((north + 24.0) / s)) + 3
        dev = self.device
        xs = torch.arange(i0, i1 + 1, dtype=torch.int64, device=dev).to(torch.float64) * s
        ys = torch.arange(j0, j1 + 1, dtype=torch.int64, device=dev).to(torch.float64) * s
        return i0, j0, xs.reshape(1, -1), ys.reshape(-1, 1)

    def macro_nodes(self, west: float, south: float, east: float, north: float,
                    macro: dict[str, torch.Tensor] | None = None) -> "MacroNodes":
        """The macro fields on the `macro_node_grid` nodes, evaluated once; `macro`: those fields
        ((H, W) each), if already evaluated."""
        i0, j0, xs, ys = self.macro_node_grid(west, south, east, north)
        return MacroNodes(i0, j0, self.macro(xs, ys) if macro is None else macro)

    def water_at(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Water at world points (x, y float64, 1-D): the macro wetness through the 16 m lattice,
        a pure function of position (the samples of fine levels see the same values)."""
        return lattice.at_points(self.macro, x, y, MACRO_LATTICE)["wetness"] > 0

    def block_at(self, bx: torch.Tensor, by: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Block rows (..., BLOCK_ROW) computed directly from block indices (same bits as a
        table's); with `extra` points, (rows, macro fields there) (`block_density`)."""
        shape = broadcast_shape(bx.shape, by.shape)
        bx, by = bx.expand(shape).reshape(-1), by.expand(shape).reshape(-1)
        u, v = bx.to(torch.float64) * BLOCK, by.to(torch.float64) * BLOCK
        x, y = self.streets.to_world(u + 0.5 * BLOCK, v + 0.5 * BLOCK)
        line = settlements.by_country_line(bx) | settlements.by_country_line(by)
        trunk = settlements.by_country_line(bx, settlements.TRUNK_EVERY) | settlements.by_country_line(by, settlements.TRUNK_EVERY)
        out = self.block_density(x, y, u, v, line, trunk, extra)
        if extra is None:
            return out.reshape(shape + (BLOCK_ROW,))
        return out[0].reshape(shape + (BLOCK_ROW,)), out[1]

    def point_blocks(self) -> "PointBlocks":
        return PointBlocks(self.block_at, self.streets, self.spec.seed)

    def lots(self, bx: torch.Tensor, by: torch.Tensor, li: torch.Tensor, lj: torch.Tensor,
             block: torch.Tensor, within: tuple[float, float, float, float] | None = None) -> "Lots":
        """The buildings of lots (1-D int64 block and lot indices; block: (L, BLOCK_ROW) their
        block rows): footprints, rectangles in the world and levels, of the lots that hold one.
        With `within` (west, south, east, north), levels only of the buildings whose footprint's
        bounding box meets that box (NaN elsewhere: only points inside a footprint read them)."""
        b = settlements.lot_building(self.spec.seed, bx, by, li, lj, block[:, settlements.URBAN])
        real = torch.nonzero(b["present"] & (li < b["n"]) & (lj < b["n"]) & (block[:, settlements.URBAN] > 0)).reshape(-1)
        b = {k: v.index_select(0, real) for k, v in b.items()}
        bx, by, li, lj, block = (v.index_select(0, real) for v in (bx, by, li, lj, block))
        rect = settlements.world_rects(self.streets, b)
        built = torch.nonzero(settlements.buildable(rect)).reshape(-1)
        b, rect = ({k: v.index_select(0, built) for k, v in d.items()} for d in (b, rect))
        bx, by, li, lj, block = (v.index_select(0, built) for v in (bx, by, li, lj, block))
        b["rise"] = settlements.world_rise(b, rect)
        need = torch.arange(bx.numel(), device=bx.device) if within is None else \
            torch.nonzero(_boxes_meet(settlements.rect_corners(rect), within)).reshape(-1)
        levels = building_levels({k: v.index_select(0, need) for k, v in b.items()},
                                 {k: v.index_select(0, need) for k, v in rect.items()}, block.index_select(0, need),
                                 *(v.index_select(0, need) for v in (bx, by)), self.macro, self.streets,
                                 *(v.index_select(0, need) for v in (li, lj)),
                                 self._level_cache)
        base, eaves, ridge = (torch.full(bx.shape, float("nan"), dtype=torch.float32, device=bx.device)
                              .index_put((need,), v) for v in levels)
        keys = lot_key(bx, by, li, lj)
        order = torch.argsort(keys)
        pick = lambda v: v.index_select(0, order)  # noqa: E731
        return Lots(pick(keys), {k: pick(v) for k, v in b.items()}, {k: pick(v) for k, v in rect.items()},
                    pick(base), pick(eaves), pick(ridge), pick(bx), pick(by), pick(li), pick(lj))

    def _chunk_lots(self, table: torch.Tensor, bx0: int, by0: int,
                    within: tuple[float, float, float, float] | None = None) -> "Lots":
        """The lots of the urban blocks of a chunk's table, less its two outer rings of blocks
        (every point of the chunk and every tree that asks lies within the others); `within`: as `lots`."""
        inner = torch.zeros(table.shape[:2], dtype=torch.bool, device=table.device)
        inner[2:-2, 2:-2] = True
        rows, cols = torch.nonzero((table[..., settlements.URBAN] > 0) & inner, as_tuple=True)
        lots = torch.arange(4, dtype=torch.int64, device=table.device)
        k = rows.numel()
        li = lots.reshape(1, 4, 1).expand(k, 4, 4).reshape(-1)
        lj = lots.reshape(1, 1, 4).expand(k, 4, 4).reshape(-1)
        return self.lots((cols + bx0).repeat_interleave(16), (rows + by0).repeat_interleave(16), li, lj,
                         table[rows, cols].repeat_interleave(16, dim=0), within)

    def _point_lots(self, loc: dict[str, torch.Tensor], block: torch.Tensor) -> "Lots":
        """The lots of scattered points (`settlements.locate`; block rows (N, BLOCK_ROW)), each once."""
        keys, first = _first_of_each(lot_key(loc["bx"], loc["by"], loc["li"], loc["lj"]))
        return self.lots(*(loc[k].index_select(0, first) for k in ("bx", "by", "li", "lj")), block.index_select(0, first))

    def _buildings_at(self, x: torch.Tensor, y: torch.Tensor, uv: tuple[torch.Tensor, torch.Tensor],
                      block: torch.Tensor, lots: "Lots | None" = None) -> dict[str, torch.Tensor]:
        """Building hit (id, roof surface height) at world points.

        x, y: float64 world metres and uv their street coordinates, broadcast to block.shape[:-1];
        block: (..., BLOCK_ROW) from `block_density`; lots: the chunk's (`_chunk_lots`), else the
        points' own lots are looked up once each.
        """
        shape = block.shape[:-1]
        density = block[..., settlements.URBAN]
        bid = torch.zeros(shape, dtype=torch.int64, device=x.device)
        roof = torch.full(shape, -1e9, dtype=torch.float32, device=x.device)
        urban = torch.nonzero(density.reshape(-1) > 0).reshape(-1)
        if urban.numel() == 0:
            return {"id": bid, "roof": roof}
        flat = lambda a: a.expand(shape).reshape(-1).index_select(0, urban)  # noqa: E731
        blk = block.reshape(-1, BLOCK_ROW).index_select(0, urban)
        loc = settlements.locate(flat(uv[0]), flat(uv[1]), blk[:, settlements.URBAN])
        if lots is None:
            lots = self._point_lots(loc, blk)
        r = lots.find(loc["bx"], loc["by"], loc["li"], loc["lj"])
        has = torch.nonzero(r >= 0).reshape(-1)
        r = r.index_select(0, has)
        hr = {k: v.index_select(0, r) for k, v in lots.rect.items()}
        s, t = settlements.rect_local(hr, flat(x).index_select(0, has), flat(y).index_select(0, has))
        hit = torch.nonzero((s >= 0.0) & (s <= hr["w"]) & (t >= 0.0) & (t <= hr["h"])).reshape(-1)
        r = r.index_select(0, hit)
        zero = torch.zeros((), dtype=torch.float64, device=x.device)
        top = settlements.roof_surface(s.index_select(0, hit), t.index_select(0, hit), zero, zero,
                                       hr["w"].index_select(0, hit), hr["h"].index_select(0, hit),
                                       lots.eaves.index_select(0, r), lots.ridge.index_select(0, r),
                                       lots.b["roof"].index_select(0, r))
        where = urban.index_select(0, has.index_select(0, hit))
        bid.reshape(-1)[where] = lots.b["id"].index_select(0, r)
        roof.reshape(-1)[where] = top
        return {"id": bid, "roof": roof}

    def _samples(self, x: torch.Tensor, y: torch.Tensor, uv, level: int, grid: bool, block: torch.Tensor,
                 veg: VegetationNodes, blocks, cells: vegetation.CellTable | None = None, lots: "Lots | None" = None,
                 nodes: "MacroNodes | None" = None):
        """DEM, DSM, water, macro fields and tree canopy (height above the ground) at samples;
        x, y float64, separable grid ((1,W),(H,1)) or points; uv: their street coordinates (None
        where no block is urban); `blocks` looks up block rows; `nodes`: the chunk's macro nodes."""
        m = self._macro_for_samples(x, y, level, grid, nodes)
        water = m["wetness"] > 0
        raw = settlements.raw_density(x, y, self.settlement_octaves, self.urbanization)
        dry = torch.clamp(-m["wetness"], 0.0, 1.0)  # detail fades to exactly 0 on the water
        amplitude = m["roughness"] * (1.0 - raw * 0.8) * dry
        octs = terrain.detail_octaves(self.spec.seed, self.spec.base_resolution, level)
        natural = m["height"] + terrain.detail_height(x, y, octs, amplitude)
        m = dict(m, natural=natural)  # land cover follows the natural ground, not the graded one
        canopy = vegetation.canopy(self.spec.seed, x, y, veg, blocks, cells)["height"]
        canopy = torch.where(water, torch.zeros_like(canopy), canopy)  # crowns end at the shore
        if uv is None:
            return natural, natural + canopy, water, m, canopy
        dem = grade_blocks(natural, uv[0], uv[1], block)
        b = self._buildings_at(x, y, uv, block, lots)
        dsm = torch.maximum(dem + canopy, b["roof"])
        # bridges: where a road crosses water its deck stands BRIDGE_CLEARANCE above the water surface
        if bool(water.any()):
            bridge = water & settlements.road_at(uv[0].expand(water.shape), uv[1].expand(water.shape), blocks)["road"]
            dsm = torch.where(bridge, torch.maximum(dsm, natural + settlements.BRIDGE_CLEARANCE), dsm)
        return dem, dsm, water, m, canopy

    # ---------------------------------------------------------------- chunks
    def _block_table(self, west: float, south: float, east: float, north: float,
                     extra: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Rows (rows = by, cols = bx, BLOCK_ROW) of the blocks whose street-grid squares meet the chunk's
        image in street coordinates, with TABLE_MARGIN blocks of margin (trees near the border look
        at the block beyond their own, and roads at the grid nodes up to LONG_SPAN blocks beyond it). The map is
        one-to-one, so the chunk's border bounds its image. With `extra` points, also the macro
        fields there, from the same call (`block_density`)."""
        dev = self.device
        steps = max(2, int(np.ceil(max(east - west, north - south) / 64.0)))
        t = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=dev)
        along_x, along_y = west + (east - west) * t, south + (north - south) * t
        ex = torch.cat([along_x, along_x, torch.full_like(t, west), torch.full_like(t, east)])
        ey = torch.cat([torch.full_like(t, south), torch.full_like(t, north), along_y, along_y])
        u, v = self.streets.to_grid(ex, ey)
        m = TABLE_MARGIN
        bx0, bx1 = int(np.floor(float(u.min()) / BLOCK)) - m, int(np.floor(float(u.max()) / BLOCK)) + m
        by0, by1 = int(np.floor(float(v.min()) / BLOCK)) - m, int(np.floor(float(v.max()) / BLOCK)) + m
        bxs = torch.arange(bx0, bx1 + 1, dtype=torch.int64, device=dev).reshape(1, -1)
        bys = torch.arange(by0, by1 + 1, dtype=torch.int64, device=dev).reshape(-1, 1)
        rows = self.block_at(bxs.expand(len(bys), -1), bys.expand(-1, bxs.shape[1]), extra)
        return (bx0, by0, rows) if extra is None else (bx0, by0, *rows)

    def _learn_turns(self, box: tuple[int, int, int, int], extra: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The street frame learns the turns of the vortices in `box` (StreetFrame.turn_box) from one
        macro call, which also gives the macro fields at the `extra` points (x, y float64, 1-D)."""
        xs, ys = contour_twist.stencil_axes(*box, device=self.device)
        gx, gy = xs.reshape(1, -1).expand(len(ys), -1).reshape(-1), ys.reshape(-1, 1).expand(-1, len(xs)).reshape(-1)
        m = self.macro(torch.cat([gx, extra[0]]), torch.cat([gy, extra[1]]))
        k = gx.numel()
        self.streets.learn_turns(box, m["height"][:k].reshape(len(ys), len(xs)))
        return {name: v[k:] for name, v in m.items()}

    def _street_grid(self, table, bx0, by0, x, y, cells: "StreetCells | None" = None):
        """Street coordinates and block rows at points (x, y float64, broadcast to (H, W)):
        (None, zeros) where no block of the table is urban or has country roads (nothing there
        needs them: no grading, building, road or bridge). With the contour twist, whose exact map
        costs several times the warp's, `cells` (`street_cells`, over the chunk) tell where they are
        needed; points elsewhere take inexact ones and zero rows: the same rasters, bit for bit."""
        shape = broadcast_shape(x.shape, y.shape)
        if not bool(((table[..., settlements.URBAN] > 0) | (table[..., settlements.COUNTRY] > 0)).any()):
            return None, torch.zeros(shape + (BLOCK_ROW,), dtype=torch.float32, device=x.device)
        if cells is None:
            (u, v), needed = self.streets.to_grid(x, y), None
        else:
            u, v, needed = street_coordinates(self.streets, cells, x, y)
        cols = torch.floor(u * (1.0 / BLOCK)).to(torch.int64) - bx0
        rows = torch.floor(v * (1.0 / BLOCK)).to(torch.int64) - by0
        flat = table.reshape(-1, BLOCK_ROW)
        block = flat.index_select(0, (rows * table.shape[1] + cols).reshape(-1)).reshape(shape + (BLOCK_ROW,))
        if needed is not None:
            block = torch.where(needed.unsqueeze(-1), block, torch.zeros_like(block))
        return (u, v), block

    def chunk(self, key: ChunkKey) -> Chunk:
        spec = self.spec
        if key.level >= spec.levels:
            raise GeneratorError(f"level {key.level} is outside this world's levels 0..{spec.levels - 1}")
        with torch.no_grad():
            return self._chunk(key)

    def _chunk(self, key: ChunkKey) -> Chunk:
        spec, dev = self.spec, self.device
        n = spec.chunk_size
        res = spec.resolution(key.level)
        west, south, east, north = key.bounds(spec)
        sx0, sy0 = key.sample_origin(spec)
        cols = torch.arange(n + 1, dtype=torch.int64, device=dev)
        xs = (cols + sx0).to(torch.float64) * res  # exact: integer times a power of two
        ys = (sy0 + n - cols).to(torch.float64) * res  # row 0 = north
        # the macro fields of the blocks, the vegetation nodes and (fine levels: the samples and the
        # trunk water test read them) the macro nodes, in one call; many macro nodes have theirs
        # from a call of their own, on their grid (interpolating a grid costs less than points)
        grids = [self.vegetation_node_grid(west, south, east, north)]
        macro_grid = self.macro_node_grid(west, south, east, north) if res < MACRO_LATTICE else None
        if macro_grid is not None and macro_grid[2].numel() * macro_grid[3].numel() <= MACRO_NODES_WITH_BLOCKS:
            grids.append(macro_grid)
        shapes = [(gy.shape[0], gx.shape[1]) for _, _, gx, gy in grids]
        points = [torch.cat([g[axis].expand(shape).reshape(-1) for g, shape in zip(grids, shapes)]) for axis in (2, 3)]
        box = self.streets.turn_box(west, south, east, north, (TABLE_MARGIN + 1) * BLOCK)
        unknown = None if box is None else self.streets.unknown_box(box)
        if unknown is not None:  # the relief the contour twist's new vortices read, in the same macro call
            fields = self._learn_turns(unknown, points)  # as those points
        if box is not None:
            self.streets.recall_turns(box)  # the box's turns in one table (all known, unless the cache overflowed)
        if unknown is None:
            bx0, by0, table, fields = self._block_table(west, south, east, north, points)
        else:
            bx0, by0, table = self._block_table(west, south, east, north)
        split = {k: torch.split(v, [rows * cols for rows, cols in shapes]) for k, v in fields.items()}
        on_grids = [{k: v[i].reshape(shape) for k, v in split.items()} for i, shape in enumerate(shapes)]
        roads = (table[..., settlements.URBAN] > 0) | (table[..., settlements.COUNTRY] > 0)
        # the cells pay where they are coarser than the samples (their nodes are exact too)
        lattice_cells = street_cells(self.streets, west, south, east, north, table, bx0, by0) \
            if self.streets.height is not None and res * 2.0 <= STREET_CELL and bool(roads.any()) else None
        uv_s, block_s = self._street_grid(table, bx0, by0, xs.reshape(1, -1), ys.reshape(-1, 1), lattice_cells)
        veg = self.vegetation_nodes(west, south, east, north, on_grids[0])
        nodes = None
        if macro_grid is not None:
            nodes = self.macro_nodes(west, south, east, north, on_grids[1] if len(on_grids) > 1 else None)
            veg = veg._replace(wet=nodes.water)
        # building levels are read at the chunk's points and by its building list only (a metre of slack
        # for rounding between a footprint's corners and the point-in-footprint test)
        lots = self._chunk_lots(table, bx0, by0, (west - 1.0, south - 1.0, east + 1.0, north + 1.0))
        blocks = BlockTable(table, bx0, by0, self.streets, lots, lattice_cells)
        # the tree candidates of the chunk's cells, evaluated once for samples, pixels and the tree list
        # (coarser levels read only the crown heights at the samples from them)
        cells = vegetation.grid_table(spec.seed, xs.reshape(1, -1), ys.reshape(-1, 1), veg, blocks,
                                      heights_only=res > TREE_OBJECTS_MAX_RESOLUTION)
        dem, dsm, water, m, canopy = self._samples(xs.reshape(1, -1), ys.reshape(-1, 1), uv_s, key.level, True,
                                                   block_s, veg, blocks, cells, lots, nodes)

        # pixel centres
        pxs = (xs[:-1] + xs[1:]) * 0.5
        pys = (ys[:-1] + ys[1:]) * 0.5
        px, py = pxs.reshape(1, -1), pys.reshape(-1, 1)

        def corners_mean(a):
            return (a[:-1, :-1] + a[:-1, 1:] + a[1:, :-1] + a[1:, 1:]) * 0.25

        # every pixel-centre noise in one call; an fBm of one octave is that octave, bit for bit
        *pixel_fbm, settlement_fbm, fine_texture, coarse_texture = fbms(px, py, (
            self.forest_octaves, self.farm_octaves, self.snow_octaves, self.broad_octaves, self.settlement_octaves,
            [Octave(2.0 * res, self.texture_key)], [Octave(8.0 * res, self.texture_key ^ 1)]))
        forest_noise, farm_noise, snow_noise, broad = (n * (1.0 / 0.14) for n in pixel_fbm)
        ground = m["natural"]
        gx = ((ground[:-1, 1:] + ground[1:, 1:]) - (ground[:-1, :-1] + ground[1:, :-1])) * (0.5 / res)
        gy = ((ground[:-1, :-1] + ground[:-1, 1:]) - (ground[1:, :-1] + ground[1:, 1:])) * (0.5 / res)
        pix = {
            "water": corners_mean(water.to(torch.float32)),
            "slope": torch.sqrt(gx * gx + gy * gy),
            "temperature": corners_mean(m["temperature"]),
            "moisture": corners_mean(m["moisture"]),
            "coast": corners_mean(m["coast"]),
            "mountain": corners_mean(m["mountain"]),
            "forest_noise": forest_noise,
            "farm_noise": farm_noise,
            "snow_noise": snow_noise,
            "density": settlements.density_from_field(settlements.field_from_fbm(settlement_fbm), self.urbanization),
        }
        semantic = biomes.classify(pix)

        uv_p, block_p = self._street_grid(table, bx0, by0, px, py, lattice_cells)
        if uv_p is None:
            b = {"id": torch.zeros((n, n), dtype=torch.int64, device=dev)}
            road = torch.zeros((n, n), dtype=torch.bool, device=dev)
        else:
            b = self._buildings_at(px, py, uv_p, block_p, lots)
            road = settlements.road_at(uv_p[0], uv_p[1], blocks)["road"]
        dry = pix["water"] <= 0.5
        urban_ground = (block_p[..., 0] > 0.35) & dry
        semantic[urban_ground] = biomes.CLASS_IDS["urban_ground"]
        village_yard = (block_p[..., 0] > 0) & dry & (semantic == biomes.CLASS_IDS["forest"])
        semantic[village_yard] = biomes.CLASS_IDS["grass"]  # gardens, not woods, between village houses
        semantic[road] = biomes.CLASS_IDS["road"]
        building = b["id"] > 0
        semantic[building] = biomes.CLASS_IDS["building"]
        veg_pixels = veg.at(px, py)
        stand = veg_pixels["forest"] * min(veg.density, 1.0)
        clearing = (semantic == biomes.CLASS_IDS["forest"]) & (stand < 0.15)
        semantic[clearing] = biomes.CLASS_IDS["grass"]  # the forest class is the floor of a stand
        if res <= TREE_OBJECTS_MAX_RESOLUTION:  # crowns resolved: a pixel is the tree over its centre
            cover = vegetation.canopy(spec.seed, px, py, veg, blocks, cells)
            tree = (cover["height"] > 0) & dry & ~building
            tree_ids = cover["id"]
        else:  # crowns below the pixel size: tree cover where stands are dense, without per-tree ids,
            # shaded from the crowns at the pixel's corners (the samples), not evaluated again
            crowns = corners_mean((canopy > 0).to(torch.float32))
            conifer = veg_pixels["conifer"] > 0.5
            tint = hash2(torch.floor(px * (1.0 / 6.0)).to(torch.int64), torch.floor(py * (1.0 / 6.0)).to(torch.int64),
                         self.crop_key ^ 7)
            cover = {"id": tint, "edge": 1.0 - crowns, "kind": torch.where(conifer, 0, 1).to(torch.int64)}
            tree = (stand >= 0.5) & dry & ~building & ~road
            tree_ids = torch.zeros_like(b["id"])
        semantic[tree] = biomes.CLASS_IDS["tree"]
        instances = torch.where(building, b["id"], torch.where(tree, tree_ids, torch.zeros_like(b["id"])))

        texture = fine_texture * 1.6 + coarse_texture * 1.2
        crop = hash2(torch.floor(px * (1.0 / 90.0)).to(torch.int64), torch.floor(py * (1.0 / 160.0)).to(torch.int64),
                     self.crop_key)
        ortho = biomes.albedo(semantic, texture, broad, crop, b["id"], pix["moisture"],
                              crown=(cover["id"], cover["edge"], cover["kind"]))

        buildings = self._building_list(key, lots)
        trees = self._tree_list(key, veg, blocks, dem, cells) if res <= TREE_OBJECTS_MAX_RESOLUTION else ()
        return Chunk(
            key=key, resolution=res, bounds=(west, south, east, north),
            ortho=ortho.cpu().numpy(), dem=dem.cpu().numpy(), dsm=dsm.cpu().numpy(),
            semantic=semantic.cpu().numpy(), instances=instances.to(torch.int64).cpu().numpy().astype(np.uint32),
            water=water.cpu().numpy(), buildings=buildings, canopy=canopy.cpu().numpy(), trees=trees,
        )

    def _tree_list(self, key: ChunkKey, veg: VegetationNodes, blocks, dem: torch.Tensor,
                   cells: vegetation.CellTable | None) -> tuple[Tree, ...]:
        """The trees whose trunk lies in the chunk, standing on the chunk's DEM (bilinear)."""
        west, south, east, north = key.bounds(self.spec)
        t = vegetation.trees_in(self.spec.seed, west, south, east, north, veg, blocks, self.device, cells)
        if t["x"].numel() == 0:
            return ()
        res = self.spec.resolution(key.level)
        u = ((t["x"] - west) / res).cpu().numpy()
        v = ((north - t["y"]) / res).cpu().numpy()
        d = dem.cpu().numpy().astype(np.float64)
        j0 = np.clip(np.floor(u).astype(np.int64), 0, d.shape[1] - 2)
        i0 = np.clip(np.floor(v).astype(np.int64), 0, d.shape[0] - 2)
        fu, fv = u - j0, v - i0
        ground = ((d[i0, j0] * (1 - fu) + d[i0, j0 + 1] * fu) * (1 - fv)
                  + (d[i0 + 1, j0] * (1 - fu) + d[i0 + 1, j0 + 1] * fu) * fv)
        ids, xs, ys, heights, radii, kinds, settings = (
            t[k].cpu().tolist() for k in ("id", "x", "y", "height", "radius", "kind", "setting"))
        kinds = [vegetation.KINDS[k] for k in kinds]
        settings = [vegetation.SETTINGS[s] for s in settings]
        # positional fields (Tree's order): keyword construction cost ~5 us a tree
        with gc_paused():
            return tuple(map(Tree._make, zip(ids, xs, ys, ground.tolist(), heights, radii, kinds, settings)))

    def _building_list(self, key: ChunkKey, lots: "Lots") -> BuildingTable | tuple[()]:
        """The buildings whose footprint meets the chunk (their tuples made when read)."""
        west, south, east, north = key.bounds(self.spec)
        corners = settlements.rect_corners(lots.rect)
        idx = torch.nonzero(_boxes_meet(corners, (west, south, east, north))).reshape(-1)
        if idx.numel() == 0:
            return ()
        col = lambda v: v.index_select(0, idx).cpu().numpy()  # noqa: E731
        pair = lambda a, b: torch.stack([a, b], dim=1).index_select(0, idx).cpu().numpy()  # noqa: E731
        return BuildingTable(ids=col(lots.b["id"]), footprints=col(corners), base=col(lots.base), roof=col(lots.eaves),
                             floors=col(lots.b["floors"]), block=pair(lots.bx, lots.by), lot=pair(lots.li, lots.lj),
                             ridge=col(lots.ridge), roof_kind=col(lots.b["roof"]), type=col(lots.b["type"]))

    # ---------------------------------------------------------------- point queries
    def sample_heights(self, level: int, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DEM and DSM at global integer sample indices (column = east, row = north) of `level`.

        Bit-identical to the chunk grids: sample (c, r) is chunk (c // n, r // n)'s sample there.
        """
        dev = self.device
        res = self.spec.resolution(level)
        c = torch.as_tensor(np.asarray(col, dtype=np.int64).reshape(-1), device=dev)
        r = torch.as_tensor(np.asarray(row, dtype=np.int64).reshape(-1), device=dev)
        x = c.to(torch.float64) * res
        y = r.to(torch.float64) * res
        with torch.no_grad():
            u, v = self.streets.to_grid(x, y)
            block = self.point_blocks()(torch.floor(u * (1.0 / BLOCK)).to(torch.int64),
                                        torch.floor(v * (1.0 / BLOCK)).to(torch.int64))
            dem, dsm = torch.empty_like(x, dtype=torch.float32), torch.empty_like(x, dtype=torch.float32)
            for sel in _tiles(x, y):
                xs, ys = x.index_select(0, sel), y.index_select(0, sel)
                veg = self.vegetation_nodes(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
                uv = (u.index_select(0, sel), v.index_select(0, sel))
                d, s, _, _, _ = self._samples(xs, ys, uv, level, False, block.index_select(0, sel), veg,
                                              self.point_blocks())
                dem[sel], dsm[sel] = d, s
        return dem.cpu().numpy(), dsm.cpu().numpy()

    def trees_at(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Tree crown height above the ground (float32 m, 0 = none) and tree id (uint32, 0 = none)
        at world points (array-like metres, same shape): the crowns the DSM carries (no crowns
        over water samples there; here, no water test)."""
        x = torch.as_tensor(np.asarray(x, np.float64).reshape(-1), device=self.device)
        y = torch.as_tensor(np.asarray(y, np.float64).reshape(-1), device=self.device)
        if x.numel() == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.uint32)
        height = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        ids = torch.zeros(x.shape, dtype=torch.int64, device=x.device)
        with torch.no_grad():
            for sel in _tiles(x, y):
                xs, ys = x.index_select(0, sel), y.index_select(0, sel)
                veg = self.vegetation_nodes(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
                c = vegetation.canopy(self.spec.seed, xs, ys, veg, self.point_blocks())
                height[sel], ids[sel] = c["height"], c["id"]
        return height.cpu().numpy(), ids.cpu().numpy().astype(np.uint32)

    def heights_at(self, x, y, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground (DEM) and surface (DSM) heights at world points, bilinear between the level's
        samples exactly as the chunk mesh interpolates them. x, y: array-like metres, same shape."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        res = self.spec.resolution(level)
        u, v = x.reshape(-1) / res, y.reshape(-1) / res
        c0, r0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        fu, fv = (u - c0).astype(np.float64), (v - r0).astype(np.float64)
        cc = np.concatenate([c0, c0 + 1, c0, c0 + 1])
        rr = np.concatenate([r0, r0, r0 + 1, r0 + 1])
        dem, dsm = self.sample_heights(level, cc, rr)
        k = u.size

        def bilinear(a):
            a = a.astype(np.float64).reshape(4, k)
            return ((a[0] * (1 - fu) + a[1] * fu) * (1 - fv) + (a[2] * (1 - fu) + a[3] * fu) * fv).reshape(x.shape)

        return bilinear(dem), bilinear(dsm)


class BlockTable:
    """Block rows (..., BLOCK_ROW) of a chunk's `_block_table` by block index, as `vegetation` asks them;
    `urban_near`: is a block of the 3 x 3 around this one urban? (one gather of the dilated
    table; the table has TABLE_MARGIN blocks of margin and trees look at most 1 block beyond their chunk's,
    so the clamped border rows never answer); `any_urban`: is any block of the table urban?; `houses`:
    the buildings of lots, from the chunk's `lots` (`_chunk_lots`)."""

    def __init__(self, table: torch.Tensor, bx0: int, by0: int, frame: StreetFrame, lots: "Lots | None" = None,
                 cells: "StreetCells | None" = None):
        self.frame = frame
        self.lots = lots
        self.cells = cells
        self.rows, self.cols = table.shape[0], table.shape[1]
        self.flat = table.reshape(-1, BLOCK_ROW)
        self.bx0, self.by0 = bx0, by0
        self.urban = vegetation.dilate((table[..., 0] > 0).to(torch.float32)).reshape(-1) > 0
        self.any_urban = bool(self.urban.any())

    def __call__(self, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        return self.columns(bx, by, tuple(range(BLOCK_ROW)))

    def columns(self, bx: torch.Tensor, by: torch.Tensor, names: tuple[int, ...]) -> torch.Tensor:
        """Columns `names` of the block rows at block indices (bx, by): (..., len(names))."""
        c, r = bx - self.bx0, by - self.by0
        (c_lo, c_hi), (r_lo, r_hi) = torch.stack([torch.stack(c.aminmax()), torch.stack(r.aminmax())]).tolist() \
            if c.numel() else ((0, 0), (0, 0))
        if c_lo < 0 or c_hi >= self.cols or r_lo < 0 or r_hi >= self.rows:
            raise GeneratorError("internal: a block asked for lies outside the chunk's block table")
        rows = self.flat[:, list(names)].index_select(0, (r * self.cols + c).reshape(-1))
        return rows.reshape(bx.shape + (len(names),))

    def houses(self, loc: dict[str, torch.Tensor], density: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The building of each located point's lot (`settlements.locate`, 1-D): (present (bool),
        its world rectangle (settlements.world_rects fields; any values where absent))."""
        if self.lots is None:
            raise GeneratorError("internal: this block table was made without its lots")
        r = self.lots.find(loc["bx"], loc["by"], loc["li"], loc["lj"])
        return r >= 0, {k: v.index_select(0, r.clamp(0, None)) if v.numel() else torch.zeros_like(r, dtype=v.dtype)
                        for k, v in self.lots.rect.items()}

    def street_coordinates(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`StreetFrame.to_grid`, or where the chunk has `street_cells`, exact only where it needs them."""
        if self.cells is None:
            return self.frame.to_grid(x, y)
        return street_coordinates(self.frame, self.cells, x, y)[:2]

    def urban_near(self, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        c = (bx - self.bx0).clamp(0, self.cols - 1)
        r = (by - self.by0).clamp(0, self.rows - 1)
        return self.urban.index_select(0, (r * self.cols + c).reshape(-1)).reshape(bx.shape)


LOT_KEY_OFFSET = 1 << 24  # keys hold block indices within +-2^24 blocks (1.6 million km)


def block_key(bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
    """One int64 per block, ordered by (bx, by)."""
    return ((bx + LOT_KEY_OFFSET) << 25) + (by + LOT_KEY_OFFSET)


def lot_key(bx: torch.Tensor, by: torch.Tensor, li: torch.Tensor, lj: torch.Tensor) -> torch.Tensor:
    """One int64 per lot, ordered by (bx, by, li, lj)."""
    return block_key(bx, by) * 256 + li * 16 + lj


def _boxes_meet(corners: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """Whether the bounding box of each of (N, 4, 2) corners meets `box` (west, south, east, north)."""
    lo, hi = corners.min(dim=1).values, corners.max(dim=1).values
    return (hi[:, 0] >= box[0]) & (lo[:, 0] <= box[2]) & (hi[:, 1] >= box[1]) & (lo[:, 1] <= box[3])


def _first_of_each(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct keys (sorted) and the index of one element holding each."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    first = torch.zeros(len(unique), dtype=torch.int64, device=keys.device).scatter_(
        0, inverse, torch.arange(len(inverse), device=keys.device))
    return unique, first


class Lots(NamedTuple):
    """The buildings of a set of lots, sorted by `lot_key`: b (settlements.lot_building fields),
    rect (settlements.world_rects), base / eaves / ridge (float32 m, building_levels) and the
    lots' bx, by, li, lj (int64); all (L,)."""

    keys: torch.Tensor
    b: dict[str, torch.Tensor]
    rect: dict[str, torch.Tensor]
    base: torch.Tensor
    eaves: torch.Tensor
    ridge: torch.Tensor
    bx: torch.Tensor
    by: torch.Tensor
    li: torch.Tensor
    lj: torch.Tensor

    def find(self, bx: torch.Tensor, by: torch.Tensor, li: torch.Tensor, lj: torch.Tensor) -> torch.Tensor:
        """Row of each lot (1-D int64 indices) in this table, -1 where it holds no building."""
        key = lot_key(bx, by, li, lj)
        if self.keys.numel() == 0:
            return torch.full_like(key, -1)
        at = torch.searchsorted(self.keys, key).clamp(max=self.keys.numel() - 1)
        return torch.where(self.keys.index_select(0, at) == key, at, torch.full_like(at, -1))


class MacroNodes(NamedTuple):
    """Macro fields (name -> (rows, cols) float32) on the MACRO_LATTICE nodes (i0 + col, j0 + row)
    of a chunk; called as a field at node positions, it looks them up (same values, same bits)."""

    i0: int
    j0: int
    fields: dict[str, torch.Tensor]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, names: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        s = MACRO_LATTICE
        ci = torch.round(x * (1.0 / s)).to(torch.int64) - self.i0
        cj = torch.round(y * (1.0 / s)).to(torch.int64) - self.j0
        ci, cj = torch.broadcast_tensors(ci, cj)
        rows, cols = next(iter(self.fields.values())).shape
        if bool(((ci < 0) | (ci >= cols) | (cj < 0) | (cj >= rows)).any()):
            raise GeneratorError("internal: a macro lattice node lies outside the chunk's nodes")
        flat = (cj * cols + ci).reshape(-1)
        return {k: v.reshape(-1).index_select(0, flat).reshape(ci.shape) for k, v in self.fields.items()
                if names is None or k in names}

    def water(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """`ProceduralGenerator.water_at` from these nodes (x, y float64, 1-D)."""
        return lattice.at_points(lambda a, b: self(a, b, ("wetness",)), x, y, MACRO_LATTICE)["wetness"] > 0


class PointBlocks(NamedTuple):
    """Block rows computed from block indices (`ProceduralGenerator.block_at`) and the street frame:
    the blocks as scattered point queries ask them (vegetation.BlockLookup)."""

    rows: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    frame: StreetFrame
    seed: int

    def __call__(self, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        """Rows (..., BLOCK_ROW), each distinct block computed once."""
        bx, by = torch.broadcast_tensors(bx, by)
        if bx.numel() == 0:
            return self.rows(bx, by)
        keys, first = _first_of_each(block_key(bx.reshape(-1), by.reshape(-1)))
        rows = self.rows(bx.reshape(-1).index_select(0, first), by.reshape(-1).index_select(0, first))
        return rows.index_select(0, torch.searchsorted(keys, block_key(bx.reshape(-1), by.reshape(-1)))
                                 ).reshape(bx.shape + (BLOCK_ROW,))

    def columns(self, bx: torch.Tensor, by: torch.Tensor, names: tuple[int, ...]) -> torch.Tensor:
        return self(bx, by)[..., list(names)]

    def street_coordinates(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frame.to_grid(x, y)

    def houses(self, loc: dict[str, torch.Tensor], density: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """As `BlockTable.houses`, computed for the points' lots."""
        b = settlements.lot_building(self.seed, loc["bx"], loc["by"], loc["li"], loc["lj"], density)
        rect = settlements.world_rects(self.frame, b)
        return b["present"] & (loc["li"] < loc["n"]) & (loc["lj"] < loc["n"]) & settlements.buildable(rect), rect


STREET_CELL = 32.0  # metres: the world lattice whose cells `street_coordinates` tests
STREET_WIDEN = 0.5  # metres the roads may be widened by a reader of street coordinates (trees keep that off them)
STREET_SLACK = 9.0  # street metres a point's street coordinates may lie outside the box of its cell's
# corners': three times the largest difference between `to_grid` and its bilinear interpolation from
# that lattice measured under the contour twist (2.9 m over 640 000 points in 40 km, four seeds)


class StreetCells(NamedTuple):
    """The STREET_CELL world lattice over a chunk (`street_cells`): its first node (i0, j0), node
    columns, the nodes' exact street coordinates nu, nv (float64, (rows, cols)) and whether each
    cell may hold a street or a country road (needed, bool (rows - 1, cols - 1))."""

    i0: int
    j0: int
    cols: int
    nu: torch.Tensor
    nv: torch.Tensor
    needed: torch.Tensor


def street_cells(frame: StreetFrame, west: float, south: float, east: float, north: float, table: torch.Tensor,
                 bx0: int, by0: int) -> StreetCells:
    """The cells of the STREET_CELL lattice over a region that need exact street coordinates: those
    where a street or a country road may be near. `road_at` reads a point's block and those across
    its borders, so a cell needs them where an urban block lies in the 3 x 3 blocks around one that
    its points may fall in (the box of its corners' street coordinates and STREET_SLACK), or a block
    with country roads does and that box comes within HALF_COUNTRY + STREET_WIDEN of a country line (every
    NEAR_TOWN_EVERY-th). `table`: the chunk's block rows from bx0, by0 (its flags are functions of
    block indices, and the cells are world-anchored: each cell's answer is a pure function of it)."""
    s = STREET_CELL
    i0, j0 = int(np.floor(west / s)), int(np.floor(south / s))
    cols, rows = int(np.floor(east / s)) - i0 + 2, int(np.floor(north / s)) - j0 + 2  # nodes: the cells' corners
    dev = table.device
    nu, nv = frame.to_grid(((torch.arange(cols, dtype=torch.float64, device=dev) + i0) * s).reshape(1, -1),
                           ((torch.arange(rows, dtype=torch.float64, device=dev) + j0) * s).reshape(-1, 1))
    corners = lambda a: torch.stack([a[:-1, :-1], a[:-1, 1:], a[1:, :-1], a[1:, 1:]])  # noqa: E731
    cu, cv = corners(nu), corners(nv)
    lo_u, hi_u = cu.amin(0) - STREET_SLACK, cu.amax(0) + STREET_SLACK
    lo_v, hi_v = cv.amin(0) - STREET_SLACK, cv.amax(0) + STREET_SLACK
    t_rows, t_cols = table.shape[:2]
    block = lambda a, o, n: (torch.floor(a * (1.0 / BLOCK)).to(torch.int64) - o).clamp(0, n - 1)  # noqa: E731
    c0, c1 = block(lo_u, bx0, t_cols), block(hi_u, bx0, t_cols) + 1
    r0, r1 = block(lo_v, by0, t_rows), block(hi_v, by0, t_rows) + 1

    def any_in_box(flag: torch.Tensor) -> torch.Tensor:  # a flag of the dilated table in blocks c0..c1, r0..r1
        sums = torch.nn.functional.pad(vegetation.dilate(flag.to(torch.float64)).cumsum(0).cumsum(1), (1, 0, 1, 0))
        at = lambda r, c: sums.reshape(-1).index_select(0, (r * (t_cols + 1) + c).reshape(-1)).reshape(r.shape)  # noqa: E731
        return at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0) > 0

    span, reach = BLOCK * settlements.NEAR_TOWN_EVERY, settlements.HALF_COUNTRY + STREET_WIDEN
    by_line = lambda lo, hi: torch.floor((hi + reach) * (1.0 / span)) * span >= lo - reach  # noqa: E731
    needed = any_in_box(table[..., settlements.URBAN] > 0) | (
        any_in_box(table[..., settlements.COUNTRY] > 0) & (by_line(lo_u, hi_u) | by_line(lo_v, hi_v)))
    return StreetCells(i0, j0, cols, nu, nv, needed)


def street_coordinates(frame: StreetFrame, cells: StreetCells, x: torch.Tensor, y: torch.Tensor):
    """Street coordinates (u, v) (float64, broadcast shape of x, y: a separable grid (1, W), (H, 1)
    or points) and `needed` (bool, that shape): exact (`frame.to_grid`) in the cells that need them
    and outside the region of `cells`; elsewhere the cell's south-west node's (exact too), where no
    road (widened by up to STREET_WIDEN), building or grading can be either. A pure function of
    position, like the cells."""
    shape = broadcast_shape(x.shape, y.shape)
    s = STREET_CELL
    rows, cols = cells.needed.shape
    i = torch.floor(x * (1.0 / s)).to(torch.int64) - cells.i0
    j = torch.floor(y * (1.0 / s)).to(torch.int64) - cells.j0
    outside = ((i < 0) | (i >= cols) | (j < 0) | (j >= rows)).expand(shape).reshape(-1)
    i, j = i.clamp(0, cols - 1), j.clamp(0, rows - 1)
    cell = (i + j * cols).expand(shape).reshape(-1)
    needed = cells.needed.reshape(-1).index_select(0, cell) | outside
    node = (i + j * cells.cols).expand(shape).reshape(-1)  # the cell's south-west node
    u, v = cells.nu.reshape(-1).index_select(0, node), cells.nv.reshape(-1).index_select(0, node)
    idx = torch.nonzero(needed).reshape(-1)
    if idx.numel():
        eu, ev = frame.to_grid(x.expand(shape).reshape(-1).index_select(0, idx),
                               y.expand(shape).reshape(-1).index_select(0, idx))
        u, v = u.index_put((idx,), eu), v.index_put((idx,), ev)
    return u.reshape(shape), v.reshape(shape), needed.reshape(shape)


def _tiles(x: torch.Tensor, y: torch.Tensor, tile: float = 4096.0):
    """Index tensors of the points in each `tile`-metre square: vegetation nodes cover a bounding
    box, so scattered points are queried tile by tile."""
    if x.numel() == 0:
        return
    tx = torch.floor(x * (1.0 / tile)).to(torch.int64)
    ty = torch.floor(y * (1.0 / tile)).to(torch.int64)
    for a, b in torch.unique(torch.stack([tx, ty], 1), dim=0).tolist():
        yield torch.nonzero((tx == a) & (ty == b)).reshape(-1)


GRADE_MARGIN = settlements.HALF_ROAD  # metres from a block's edge (a street's centre line) to its graded ground


def grade_blocks(dem: torch.Tensor, x: torch.Tensor, y: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """Urban blocks are terraced: inside a block the ground takes flat treads parallel to the
    block's pad plane (`settlements.pad_plane`, at most 8 % steep), one every
    settlements.TERRACE_STEP metres of natural relief, so retaining walls are a few metres high and the town follows the hill; across the
    streets on the block's edge the ground blends back to natural. A pointwise function of the
    natural ground and of level-independent block fields, so the cascade stays exact.

    dem: float32 broadcast shape; x, y: float64 metres; block: (..., BLOCK_ROW) from `block_density`."""
    urban = block[..., 0] > 0
    if not bool(urban.any()):
        return dem
    bx = torch.floor(x * (1.0 / BLOCK))
    by = torch.floor(y * (1.0 / BLOCK))
    lx = (x - bx * BLOCK).to(torch.float32)
    ly = (y - by * BLOCK).to(torch.float32)
    edge = torch.minimum(torch.minimum(lx, BLOCK - lx), torch.minimum(ly, BLOCK - ly))
    w = smoothstep(0.0, GRADE_MARGIN, edge) * urban.to(torch.float32)
    plane = settlements.pad_plane(block, lx, ly)
    d = dem - plane
    return dem + (settlements.terrace(d) - d) * w


class LevelCache:
    """Building levels (base, eaves, ridge) already computed (`building_levels`), by `lot_key`: pure
    functions of the lot. Sorted keys (int64) and rows ((n, 3) float32), looked up and merged by
    whole tensors; one attribute holds both, so threads sharing it read consistent pairs."""

    LIMIT = 60_000  # rows kept (about 2 MB); beyond, the cache starts over

    def __init__(self) -> None:
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def find(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(whether each key is known (bool), the rows of those that are (float32, (known, 3)))."""
        state = self.state
        if state is None or state[0].device != keys.device:
            return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device), torch.zeros((0, 3))
        known, rows = state
        at = torch.searchsorted(known, keys).clamp(max=known.numel() - 1)
        hit = known.index_select(0, at) == keys
        return hit, rows.index_select(0, at[hit])

    def add(self, keys: torch.Tensor, rows: torch.Tensor) -> None:
        """Keep `rows` of keys not known yet."""
        state = self.state
        if state is not None and state[0].device == keys.device and state[0].numel() + keys.numel() <= self.LIMIT:
            keys, rows = torch.cat([state[0], keys]), torch.cat([state[1], rows])
        order = torch.argsort(keys)
        self.state = (keys.index_select(0, order), rows.index_select(0, order))


def building_levels(b: dict[str, torch.Tensor], rect: dict[str, torch.Tensor], block: torch.Tensor, bx: torch.Tensor,
                    by: torch.Tensor, macro, frame: StreetFrame, li: torch.Tensor, lj: torch.Tensor,
                    cache: LevelCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(base, eaves, ridge) heights (float32 m) of buildings on their block's terraces: the walls
    start 0.5 m below the lowest ground under the footprint and the eaves stand `height` above the
    highest, so on a slope no corner floats and no roof is buried. The ground is bounded from the
    macro relief at the footprint's corners (`rect`, settlements.world_rects; `macro`: the
    generator's level-independent fields) against the pad plane there (in street coordinates,
    `frame`), settlements.GROUND_SLACK (EAVES_SLACK for the eaves) and the terrace function, which is
    monotonic. `cache` (optional) holds levels already computed."""
    k = b["x0"].shape[0]
    dev = b["x0"].device
    out = torch.zeros((k, 3), dtype=torch.float32, device=dev)
    keys = lot_key(bx, by, li, lj)
    known = torch.zeros((k,), dtype=torch.bool, device=dev)
    if cache is not None:
        known, rows = cache.find(keys)
        out[known] = rows
    t = torch.nonzero(~known).reshape(-1)
    m = t.numel()
    if m:
        world = settlements.rect_corners({k: v.index_select(0, t) for k, v in rect.items()})  # (m, 4, 2)
        xs, ys = world[..., 0].T.reshape(-1), world[..., 1].T.reshape(-1)  # corner-major
        natural = macro(xs, ys)["height"].reshape(4, m)
        us, vs = frame.to_grid(xs, ys)
        ox = (bx.index_select(0, t).to(torch.float64) * BLOCK).repeat(4)
        oy = (by.index_select(0, t).to(torch.float64) * BLOCK).repeat(4)
        plane = settlements.pad_plane(block.index_select(0, t).repeat(4, 1), (us - ox).to(torch.float32),
                                      (vs - oy).to(torch.float32)).reshape(4, m)
        d = natural - plane
        low = plane.min(dim=0).values + settlements.terrace(d.min(dim=0).values - settlements.GROUND_SLACK)
        high = plane.max(dim=0).values + settlements.terrace(d.max(dim=0).values + settlements.EAVES_SLACK)
        eaves = high + b["height"].index_select(0, t)
        new = torch.stack([low - 0.5, eaves, eaves + b["rise"].index_select(0, t)], dim=1)
        out[t] = new
        if cache is not None:
            cache.add(keys.index_select(0, t), new)
    return out[:, 0], out[:, 1], out[:, 2]
