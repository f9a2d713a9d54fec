"""Trees as individual objects: position-hashed, so every chunk and level finds the same trees.

Candidates: one per `CELL` x `CELL` metre cell of a world-anchored lattice, at a hashed position
inside the cell. A candidate becomes a tree when its hash falls under the probability the land
gives it there: forest stands (climate, moisture, forest noise, clearings and edges), hedgerows on
crop-parcel borders, garden and park trees in villages, street trees on sidewalks. The smooth land
inputs come from `VegetationNodes`, fields on a `VEG_LATTICE` world lattice that the generator
fills and that are interpolated bilinearly here; the urban inputs from the settlement blocks. Both
are pure functions of position, so a tree is the same tree for every chunk, level and process.

Crown shapes (`crown_height`) are shared with the tree meshes (exporters.tree_mesh), so the DSM,
depth renders and meshes describe one surface. Only +, -, *, /, sqrt and comparisons are used on
floats: these round the same in every vectorised or scalar kernel.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Protocol

import torch

from .hashing import hash2, mix32, salt, unit_float
from .settlements import BLOCK, SIDEWALK, locate, rect_local, road_at
from .shapes import broadcast_shape
from .streets import StreetFrame

CELL = 6.0  # metres between tree candidates; a crown never reaches past the neighbouring cell
VEG_LATTICE = 128.0  # metres between the nodes of the smooth vegetation fields
MAX_CROWN = 5.5  # metres, < CELL: the 3 x 3 cells around a point hold every crown over it
POINT_BATCH = 8192  # points whose canopy (or cells whose candidates) are evaluated at once
KINDS = ("conifer", "broadleaf")
SETTINGS = ("forest", "hedgerow", "street", "garden")
CONIFER_CROWN_BASE = 0.25  # crown base of a conifer, fraction of its height
BROADLEAF_CROWN_DEPTH = 0.3  # vertical semi-axis of a broadleaf crown's top half, fraction of its height
TREE_ID_BIT = 0x80000000  # tree ids have the top bit set; the class tells them from buildings

class BlockLookup(Protocol):
    """The settlement blocks as trees ask them: rows (..., settlements.BLOCK_ROW) (the generator's block rows) at
    integer block indices, the street frame the blocks' grid lies in, and the lots' houses. A chunk's table also
    answers `urban_near(bx, by)` (any urban block in the 3 x 3 around) in one gather, and `any_urban` (whether
    any of its blocks is urban)."""

    frame: StreetFrame

    def __call__(self, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor: ...

    def columns(self, bx: torch.Tensor, by: torch.Tensor, names: tuple[int, ...]) -> torch.Tensor:
        """Only the columns `names` of the rows: (..., len(names))."""

    def houses(self, loc: dict[str, torch.Tensor], density: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Whether each located lot (settlements.locate) holds a building, and its world rectangle."""

    def street_coordinates(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Street coordinates of world points (float64, one shape) wherever a road, widened by up to
        0.5 m, or an urban block may be near; elsewhere any whose roads and blocks say so too."""


class VegetationNodes(NamedTuple):
    """Vegetation fields on lattice nodes (i, j) -> world (i * VEG_LATTICE, j * VEG_LATTICE).

    i0, j0: index of column 0 / row 0; fields: name -> (rows, cols) float32 in 0..1:
    forest (stand density incl. clearings), hedge (share of hedged farmland), conifer (share of
    conifers), vigour (how tall trees grow), water (1 where water may be within a node spacing);
    wet: the generator's water test at any world point, asked only where `water` says so, so
    no tree is rooted in water at any level."""

    i0: int
    j0: int
    fields: dict[str, torch.Tensor]
    density: float = 1.0  # multiplies every tree probability (the generator's `vegetation` parameter)
    wet: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # water at world points (bool)

    def at(self, x: torch.Tensor, y: torch.Tensor, names: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Bilinear values at world points (float64, broadcastable, inside the node grid); every
        field (or those named) in one pass over the fields stacked (F, nodes). A field's values
        do not depend on which others are asked with it."""
        fields = self.fields if names is None else {k: self.fields[k] for k in names}
        u = x * (1.0 / VEG_LATTICE)
        v = y * (1.0 / VEG_LATTICE)
        fi, fj = torch.floor(u), torch.floor(v)
        tu = (u - fi).to(torch.float32)
        tv = (v - fj).to(torch.float32)
        rows, cols = next(iter(self.fields.values())).shape
        c = (fi.to(torch.int64) - self.i0).clamp(0, cols - 2)
        r = (fj.to(torch.int64) - self.j0).clamp(0, rows - 2)
        if x.dim() == 2 and y.dim() == 2 and x.shape[0] == 1 and y.shape[1] == 1:
            return self._at_grid(fields, c.reshape(-1), r.reshape(-1), tu, tv)
        flat = r * cols + c
        f = torch.stack([v.reshape(-1) for v in fields.values()])

        def corner(offset: int) -> torch.Tensor:
            return f.index_select(1, (flat + offset).reshape(-1)).reshape((len(f),) + flat.shape)
        a, b, cc, d = corner(0), corner(1), corner(cols), corner(cols + 1)
        value = (a + (b - a) * tu) + ((cc + (d - cc) * tu) - (a + (b - a) * tu)) * tv
        return dict(zip(fields, value.unbind(0)))

    @staticmethod
    def _at_grid(fields: dict[str, torch.Tensor], c: torch.Tensor, r: torch.Tensor, tu: torch.Tensor,
                 tv: torch.Tensor) -> dict[str, torch.Tensor]:
        """`at` on a separable grid: node column c (W,) and row r (H,) (int64) of each sample's
        cell, fractions tu (1, W) and tv (H, 1) (float32). The same operations on the same
        operands: the interpolation along x is taken on (fields, node rows, W), then spread over
        the grid's rows."""
        f = torch.stack(list(fields.values()))  # (F, rows, cols)
        a, b = f.index_select(2, c), f.index_select(2, c + 1)
        along_x = a + (b - a) * tu
        top, bottom = along_x.index_select(1, r), along_x.index_select(1, r + 1)
        value = top + (bottom - top) * tv
        return dict(zip(fields, value.unbind(0)))


def node_range(lo: float, hi: float) -> tuple[int, int]:
    """Lattice node indices [first, last] whose bilinear cells cover [lo - CELL*2, hi + CELL*2]."""
    return math.floor((lo - 2 * CELL) / VEG_LATTICE) - 1, math.floor((hi + 2 * CELL) / VEG_LATTICE) + 2


def candidates(seed: int, ci: torch.Tensor, cj: torch.Tensor, nodes: VegetationNodes, blocks: BlockLookup,
               maybe_urban: torch.Tensor | None = None, reader_d2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The tree candidate of cells (ci, cj) (int64, same shape) and whether it is a tree.

    Returns tensors of that shape: present (bool), x, y (float64 world metres), height, radius
    (float32 m; crown radius), kind (int64 index into KINDS), setting (int64 index into SETTINGS),
    id (int64, TREE_ID_BIT set). `maybe_urban` (bool, 1-D like ci and cj): False where the cell's
    candidate certainly lies in no urban block; then a candidate whose draw is above its forest
    and hedgerow chances is no tree whatever the roads, and the settlement tests (street
    coordinates, roads, houses) are left out for it: its height, radius, kind and setting are
    those of `_absent` (what no reader of a candidate that is no tree looks at). `reader_d2`
    (float64, like ci): where only the crown heights at some points read the candidates, the
    squared distance from each cell's candidate to the nearest of them; a candidate whose crown
    reaches none of them is `present` without its water test (no reader can tell)."""
    h, x, y = _position(seed, ci, cj)
    h2 = mix32(torch.bitwise_xor(h, 0x9E3779B9))
    u = _fields(h, (12, 10, 10)) + _fields(h2, (10, 11, 11))  # six uniform numbers from 64 hashed bits
    f = nodes.at(x, y, ("forest", "hedge"))
    zero = torch.zeros_like(u[0])

    # hedgerows: within 2.5 m of a crop-parcel border (parcels of 90 m x 160 m, as the ortho's crops)
    px = x * (1.0 / 90.0)
    py = y * (1.0 / 160.0)
    ex = (torch.minimum(px - torch.floor(px), torch.ceil(px) - px) * 90.0).to(torch.float32)
    ey = (torch.minimum(py - torch.floor(py), torch.ceil(py) - py) * 160.0).to(torch.float32)
    seg = unit_float(hash2(torch.floor(px + 0.5).to(torch.int64), torch.floor(py + 0.5).to(torch.int64), salt(seed, 41)))
    hedge = torch.where((torch.minimum(ex, ey) < 2.5) & (seg < 0.55), f["hedge"] * 0.9, zero)
    tid = torch.bitwise_or(torch.bitwise_and(h, 0x7FFFFFFF), TREE_ID_BIT)
    if maybe_urban is not None and x.dim() == 1:
        # off urban blocks p <= max(forest, hedge, 0) (street and garden chances are 0 there), and
        # p * density is monotonic in p: such a draw above it is no tree
        live = maybe_urban | (u[0] < torch.clamp(torch.maximum(f["forest"], hedge), min=0.0) * nodes.density)
        idx = torch.nonzero(live).reshape(-1)
        if idx.numel() < x.numel():
            out = dict(_absent(x.numel(), x.device), x=x, y=y, id=tid)
            if idx.numel():
                pick = lambda v: v.index_select(0, idx)  # noqa: E731
                xs, ys = pick(x), pick(y)
                some = _settled(xs, ys, [pick(v) for v in u], {**{k: pick(v) for k, v in f.items()},
                                                               **nodes.at(xs, ys, _LIVE_FIELDS)}, pick(hedge), nodes, blocks,
                                None if reader_d2 is None else pick(reader_d2))
                out.update({k: out[k].index_put((idx,), v) for k, v in some.items()})
            return out
    return dict(_settled(x, y, u, {**f, **nodes.at(x, y, _LIVE_FIELDS)}, hedge, nodes, blocks, reader_d2),
                x=x, y=y, id=tid)


_LIVE_FIELDS = ("conifer", "vigour", "water")  # the node fields `_settled` reads beyond forest and hedge


def _settled(x: torch.Tensor, y: torch.Tensor, u: list[torch.Tensor], f: dict[str, torch.Tensor],
             hedge: torch.Tensor, nodes: VegetationNodes, blocks: BlockLookup,
             reader_d2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The rest of `candidates` once the land's chances are known: present, height, radius, kind,
    setting of candidates at (x, y) with draws u, node fields f and hedgerow chance `hedge`
    (`reader_d2`: as `candidates`)."""
    zero = torch.zeros_like(u[0])

    # settlements: no trees on roads or in houses; street trees on sidewalks, garden trees in lots
    gu, gv = blocks.street_coordinates(x, y)  # street coordinates: the blocks' grid
    r = road_at(gu, gv, blocks, widen=0.5)
    road, own, edge_x, edge_y, hw_x, hw_y = (r[k] for k in ("road", "own", "edge_x", "edge_y", "hw_x", "hw_y"))
    urban = own > 0
    sidewalk = urban & ~road & ((edge_x < hw_x + SIDEWALK) | (edge_y < hw_y + SIDEWALK))
    street = torch.where(sidewalk & (own > 0.15), torch.full_like(u[0], 0.5), zero)
    garden = torch.where(urban & ~road & ~sidewalk, 0.35 * (1.0 - own) * (1.0 - own), zero)
    lots = torch.nonzero((urban & ~road & ~sidewalk).reshape(-1)).reshape(-1)
    if lots.numel():  # few candidates are in towns: look up their lot's house only for those
        tx, ty, tu, tv, own_ = (v.reshape(-1).index_select(0, lots) for v in (x, y, gu, gv, own))
        present, rect = blocks.houses(locate(tu, tv, own_), own_)
        s, t = rect_local(rect, tx, ty)
        margin = 2.5
        in_house = (present & (s >= -margin) & (s <= rect["w"] + margin) & (t >= -margin) & (t <= rect["h"] + margin))
        garden = garden.reshape(-1).index_put((lots,), torch.where(in_house, zero.reshape(-1)[:1],
                                                                     garden.reshape(-1).index_select(0, lots)))
        garden = garden.reshape(x.shape)
    forest = torch.where(urban | road, zero, f["forest"])
    hedge = torch.where(urban | road, zero, hedge)

    p = torch.maximum(torch.maximum(forest, hedge), torch.maximum(street, garden))
    present = u[0] < p * nodes.density
    setting = torch.where(forest >= torch.maximum(hedge, torch.maximum(street, garden)), 0,
                          torch.where(hedge >= torch.maximum(street, garden), 1, torch.where(street >= garden, 2, 3)))
    kind = torch.where((setting == 0) & (u[3] < f["conifer"]), 0, 1).to(torch.int64)

    # size: forests grow tall where vigorous, smaller at stand edges; hedge, street, garden trees small
    in_stand = torch.clamp(forest * 1.6, 0.0, 1.0)
    tall = (9.0 + 17.0 * f["vigour"]) * (0.7 + 0.3 * in_stand) * (0.8 + 0.4 * u[4])
    small = 5.0 + 6.0 * u[4] + 2.0 * f["vigour"]
    height = torch.where(setting == 0, tall, small)
    radius = torch.where(kind == 0, 0.8 + 0.16 * height, 1.0 + 0.2 * height) * (0.85 + 0.3 * u[5])
    radius = torch.minimum(radius, torch.where(setting == 0, torch.full_like(radius, MAX_CROWN),
                                               torch.full_like(radius, 3.5)))
    if nodes.wet is not None:  # no tree is rooted in water
        ask = present & (f["water"] > 0)
        if reader_d2 is not None:
            ask = ask & (reader_d2 < _crown_reach2(radius))
        ask = torch.nonzero(ask.reshape(-1)).reshape(-1)
        if ask.numel():
            wet = nodes.wet(x.reshape(-1).index_select(0, ask), y.reshape(-1).index_select(0, ask))
            present = present.reshape(-1).index_put((ask,), ~wet).reshape(present.shape)
    return {"present": present, "height": height, "radius": radius, "kind": kind, "setting": setting.to(torch.int64)}


def _crown_reach2(radius: torch.Tensor) -> torch.Tensor:
    """Squared distance (float64) within which a crown of `radius` (float32 m) may cover a point:
    `_top_crown` tests the distance in float32, a centimetre of slack covers its rounding."""
    r = radius.to(torch.float64) + 0.01
    return r * r


def _position(seed: int, ci: torch.Tensor, cj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A cell's hash word and its candidate's position (float64 world metres), inside the cell."""
    h = hash2(ci, cj, salt(seed, 40))
    u1, u2 = _fields(h >> 12, (10, 10))
    x = (ci.to(torch.float64) + (0.1 + 0.8 * u1).to(torch.float64)) * CELL
    y = (cj.to(torch.float64) + (0.1 + 0.8 * u2).to(torch.float64)) * CELL
    return h, x, y


def _no_cover(shape, device) -> dict[str, torch.Tensor]:
    """`canopy`'s answer where no crown is over the points."""
    return {"height": torch.zeros(shape, dtype=torch.float32, device=device),
            "id": torch.zeros(shape, dtype=torch.int64, device=device),
            "edge": torch.ones(shape, dtype=torch.float32, device=device),
            "kind": torch.zeros(shape, dtype=torch.int64, device=device)}


def _absent(n: int, device) -> dict[str, torch.Tensor]:
    """n candidates that are no tree (the keys and dtypes of `candidates`)."""
    return {"present": torch.zeros((n,), dtype=torch.bool, device=device),
            "x": torch.zeros((n,), dtype=torch.float64, device=device),
            "y": torch.zeros((n,), dtype=torch.float64, device=device),
            "height": torch.zeros((n,), dtype=torch.float32, device=device),
            "radius": torch.ones((n,), dtype=torch.float32, device=device),  # keeps the crown maths finite
            "kind": torch.zeros((n,), dtype=torch.int64, device=device),
            "setting": torch.zeros((n,), dtype=torch.int64, device=device),
            "id": torch.zeros((n,), dtype=torch.int64, device=device)}


def _fields(h: torch.Tensor, widths: tuple[int, ...]) -> list[torch.Tensor]:
    """Split 32-bit words into uniform float32 numbers in [0, 1) of the given bit widths."""
    out, shift = [], 0
    for w in widths:
        out.append(torch.bitwise_and(h >> shift, (1 << w) - 1).to(torch.float32) * (1.0 / (1 << w)))
        shift += w
    return out


def crown_height(d2: torch.Tensor, height: torch.Tensor, radius: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """Height (float32 m above the ground) of a crown's top surface at squared horizontal distance
    d2 (m^2) from the trunk; 0 outside the crown. Conifers are cones from the apex down to the
    crown base; broadleaves are half ellipsoids."""
    r2 = radius * radius
    inside = d2 < r2
    t2 = torch.clamp(d2 / r2, 0.0, 1.0)
    t = torch.sqrt(t2)
    base = height * CONIFER_CROWN_BASE
    cone = height - (height - base) * t
    depth = height * BROADLEAF_CROWN_DEPTH
    dome = (height - depth) + depth * torch.sqrt(1.0 - t2)
    z = torch.where(kind == 0, cone, dome)
    return torch.where(inside, z, torch.zeros_like(z))


class CellTable(NamedTuple):
    """The candidates of every cell in columns c0 .. c0 + ncol - 1 and rows r0 .. r0 + nrow - 1
    (cells: the keys of `candidates`, flat, row-major from the south-west), so a chunk evaluates
    each cell once for its samples, its pixels and its tree list."""

    c0: int
    r0: int
    ncol: int
    nrow: int
    cells: dict[str, torch.Tensor]

    def covers(self, c0: int, c1: int, r0: int, r1: int) -> bool:
        return self.c0 <= c0 and c1 < self.c0 + self.ncol and self.r0 <= r0 and r1 < self.r0 + self.nrow


def cell_range(x: torch.Tensor, y: torch.Tensor) -> tuple[int, int, int, int]:
    """Columns c0..c1 and rows r0..r1 of the cells whose candidates can reach a separable grid of
    points (x (1, W), y (H, 1) float64)."""
    ci = torch.floor(x * (1.0 / CELL)).to(torch.int64)
    cj = torch.floor(y * (1.0 / CELL)).to(torch.int64)
    return int(ci.min()) - 1, int(ci.max()) + 1, int(cj.min()) - 1, int(cj.max()) + 1


def grid_table(seed: int, x: torch.Tensor, y: torch.Tensor, nodes: VegetationNodes, blocks: BlockLookup,
               heights_only: bool = False) -> CellTable | None:
    """The cell table for a separable grid of points, or None where evaluating 9 cells per point
    costs less (coarse levels: cells much smaller than the point spacing). `heights_only`: the
    table serves only the crown heights at this grid's points (`canopy(...)["height"]`), so the
    candidates of cells further than MAX_CROWN from every point are left absent (they cover none;
    where the points are sparser than the cells, most are), and the others are `candidates` with
    their `reader_d2`."""
    c0, c1, r0, r1 = cell_range(x, y)
    ncol, nrow = c1 - c0 + 1, r1 - r0 + 1
    if nodes.density <= 0 or ncol * nrow > 9 * x.shape[1] * y.shape[0]:
        return None
    cols = torch.arange(c0, c1 + 1, dtype=torch.int64, device=x.device).reshape(1, -1)
    rows = torch.arange(r0, r1 + 1, dtype=torch.int64, device=x.device).reshape(-1, 1)
    ci, cj = cols.expand(nrow, -1).reshape(-1), rows.expand(-1, ncol).reshape(-1)
    reader_d2 = None
    if heights_only:  # the nearest point of a separable grid: the nearest column's and row's
        _, cx, cy = _position(seed, ci, cj)
        gap_x, gap_y = _gap(cx, x.reshape(-1)), _gap(cy, y.reshape(-1))
        reader_d2 = gap_x * gap_x + gap_y * gap_y
    reach = _reach(nodes)
    cx, cy = (cols.to(torch.float64) + 0.5) * CELL, (rows.to(torch.float64) + 0.5) * CELL
    # in bands of rows, each cell's candidate being its own: all cells at once held 110 MB at 2 m/px
    band = max(1, POINT_BATCH // ncol)
    parts = [_candidates_where_possible(seed, ci[r * ncol:(r + band) * ncol], cj[r * ncol:(r + band) * ncol], cx,
                                        cy[r:r + band], nodes, reach, blocks,
                                        None if reader_d2 is None else reader_d2[r * ncol:(r + band) * ncol])
             for r in range(0, nrow, band)]
    cells = {k: torch.cat([part[k] for part in parts]) for k in parts[0]}
    return CellTable(c0, r0, ncol, nrow, cells)


def _gap(pos: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Distance (float64) from each of `pos` to the nearest of the coordinates `axis` (1-D, any order)."""
    axis = torch.sort(axis).values
    at = torch.searchsorted(axis, pos)
    below = axis.index_select(0, (at - 1).clamp(0, axis.numel() - 1))
    above = axis.index_select(0, at.clamp(0, axis.numel() - 1))
    return torch.minimum(torch.abs(pos - below), torch.abs(above - pos))


def canopy(seed: int, x: torch.Tensor, y: torch.Tensor, nodes: VegetationNodes, blocks: BlockLookup,
           table: CellTable | None = None) -> dict[str, torch.Tensor]:
    """Tree cover at world points: height (float32 m) of the top crown surface above the ground
    (0 = no tree), id (int64) of that tree (0 = none), edge (float32, squared distance to its
    trunk / radius^2, for shading), kind (int64 index into KINDS).

    x, y: float64, a separable grid ((1, W), (H, 1)) or points of one shape. A grid reads its
    cells from `table` (built here when not given or not covering it, see `grid_table`); points
    evaluate the cells around each. Both paths give the same bits for the same point."""
    if nodes.density <= 0:
        return _no_cover(broadcast_shape(x.shape, y.shape), x.device)
    grid = x.dim() == 2 and y.dim() == 2 and x.shape[0] == 1 and y.shape[1] == 1
    if grid and (table is None or not table.covers(*cell_range(x, y))):
        table = grid_table(seed, x, y, nodes, blocks)
    if grid and table is not None:
        return _canopy_from_table(x, y, table)
    shape = broadcast_shape(x.shape, y.shape)
    if math.prod(shape) <= POINT_BATCH:
        return _canopy_at_points(seed, x, y, nodes, blocks)
    # in batches: each point's cover is its own (the 9 x N candidate pairs of all points at once
    # held 80 MB for a level-0 chunk), and only correctly rounded operations are used, so a point
    # gets the same bits in any batch
    xb, yb = x.expand(shape).reshape(-1), y.expand(shape).reshape(-1)
    parts = [_canopy_at_points(seed, xb[i:i + POINT_BATCH], yb[i:i + POINT_BATCH], nodes, blocks)
             for i in range(0, xb.numel(), POINT_BATCH)]
    return {k: torch.cat([part[k] for part in parts]).reshape(shape) for k in parts[0]}


def _canopy_from_table(x: torch.Tensor, y: torch.Tensor, table: CellTable) -> dict[str, torch.Tensor]:
    shape = (y.shape[0], x.shape[1])
    ncol = table.ncol
    # only points with a tree in their 3 x 3 cells need the crowns (often few outside forests)
    some = dilate(table.cells["present"].reshape(table.nrow, ncol).to(torch.float32)).reshape(-1) > 0
    ci = (torch.floor(x * (1.0 / CELL)).to(torch.int64) - table.c0).expand(shape).reshape(-1)
    cj = (torch.floor(y * (1.0 / CELL)).to(torch.int64) - table.r0).expand(shape).reshape(-1)
    need = torch.nonzero(some.index_select(0, cj * ncol + ci)).reshape(-1)
    out = _no_cover(shape, x.device)
    if need.numel() == 0:
        return out
    ci_n, cj_n = ci.index_select(0, need), cj.index_select(0, need)
    px = x.expand(shape).reshape(-1).index_select(0, need)
    py = y.expand(shape).reshape(-1).index_select(0, need)
    da, db = _around(x.device)
    idx = ((cj_n + db) * ncol + (ci_n + da)).reshape(-1)
    found = _top_crown(px, py, table.cells, idx.reshape(9, -1))
    return {k: v.reshape(-1).index_put((need,), found[k]).reshape(shape) for k, v in out.items()}


def _canopy_at_points(seed: int, x: torch.Tensor, y: torch.Tensor, nodes: VegetationNodes, blocks: BlockLookup
                      ) -> dict[str, torch.Tensor]:
    ci = torch.floor(x * (1.0 / CELL)).to(torch.int64)
    cj = torch.floor(y * (1.0 / CELL)).to(torch.int64)
    reach = _reach(nodes)
    shape = broadcast_shape(x.shape, y.shape)
    xb, yb = x.expand(shape).reshape(-1), y.expand(shape).reshape(-1)
    da, db = (d.reshape((9,) + (1,) * len(shape)) for d in _around(x.device))
    cell_i, cell_j = ci + da, cj + db  # (9, ...): hashed broadcast, so a grid's columns and rows once each
    _, cx, cy = _position(seed, cell_i, cell_j)
    cell_i, cell_j, cx, cy = (v.expand((9,) + shape).reshape(-1) for v in (cell_i, cell_j, cx, cy))
    x9, y9 = xb.repeat(9), yb.repeat(9)
    # a candidate further than the largest crown from the point cannot cover it: of the 9 cells,
    # about 2.6 on average are within reach, and only those are evaluated
    d2 = (x9 - cx) ** 2 + (y9 - cy) ** 2
    within = torch.nonzero(d2 < MAX_CROWN * MAX_CROWN).reshape(-1)
    # each (cell, point) pair within reach is a candidate of its own, read by its point alone; the
    # others all read one absent candidate, the last row
    some = _candidates_where_possible(seed, cell_i.index_select(0, within), cell_j.index_select(0, within),
                                      x9.index_select(0, within), y9.index_select(0, within), nodes, reach, blocks,
                                      d2.index_select(0, within))
    cells = {k: torch.cat([v, _absent(1, x.device)[k]]) for k, v in some.items()}
    idx = torch.full((x9.numel(),), within.numel(), dtype=torch.int64, device=x.device).index_put(
        (within,), torch.arange(within.numel(), device=x.device))
    found = _top_crown(xb, yb, cells, idx.reshape(9, -1))
    return {k: v.reshape(shape) for k, v in found.items()}


def _around(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets (a, b) of the 9 cells around a point's cell, (9, 1) int64 each, in the order
    `_top_crown` takes them: rows (b) outer, columns (a) inner."""
    offsets = torch.tensor([-1, 0, 1], dtype=torch.int64, device=device)
    return offsets.repeat(3).reshape(9, 1), offsets.repeat_interleave(3).reshape(9, 1)


def dilate(f: torch.Tensor) -> torch.Tensor:
    """Each node of a (rows, cols) field takes the max of its 3 x 3 neighbourhood (edges repeated)."""
    p = torch.nn.functional.pad(f[None, None], (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.max_pool2d(p, 3, stride=1)[0, 0]


def _reach(nodes: VegetationNodes) -> torch.Tensor:
    """Forest + hedge, dilated: where its bilinear value is 0 no forest or hedge candidate lies
    within a node spacing."""
    return dilate(nodes.fields["forest"] + nodes.fields["hedge"])


def _candidates_where_possible(seed: int, ci: torch.Tensor, cj: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                               nodes: VegetationNodes, reach: torch.Tensor, blocks: BlockLookup,
                               reader_d2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """`candidates` of 1-D cells (ci, cj), evaluated only where a tree can be near (x, y) (within
    a node spacing or a block of the cell): far from forests, hedges and towns a candidate is
    never a tree, and most of the land at coarse levels is such. The others are returned absent.
    x, y: float64, 1-D like ci, or a separable grid ((1, W), (H, 1)) whose flattened points
    match the cells. `reader_d2`: as `candidates`; candidates further than MAX_CROWN from every
    point that reads them are left absent too."""
    if nodes.density <= 0:
        near = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    else:
        near = VegetationNodes(nodes.i0, nodes.j0, {"reach": reach}).at(x, y)["reach"] > 0
    if x.numel() == 0:
        return _absent(0, x.device)
    if hasattr(blocks, "urban_near") and not blocks.any_urban:  # a chunk's block table without towns
        urban = torch.zeros(broadcast_shape(x.shape, y.shape), dtype=torch.bool, device=x.device)
    elif hasattr(blocks, "urban_near"):  # a chunk's block table: one gather
        gu, gv = blocks.frame.to_grid_near(x, y)  # 11 m off at most: urban_near has a block of slack
        urban = blocks.urban_near(torch.floor(gu * (1.0 / BLOCK)).to(torch.int64), torch.floor(gv * (1.0 / BLOCK)).to(torch.int64))
    else:
        gu, gv = blocks.frame.to_grid_near(x, y)
        bx = torch.floor(gu * (1.0 / BLOCK)).to(torch.int64)
        by = torch.floor(gv * (1.0 / BLOCK)).to(torch.int64)
        d = torch.tensor([-1, 0, 1], dtype=torch.int64, device=x.device)
        around = blocks(bx.reshape(-1, 1) + d.repeat(3).reshape(1, 9), by.reshape(-1, 1) + d.repeat_interleave(3).reshape(1, 9))
        urban = (around[..., 0] > 0).any(dim=1).reshape(bx.shape)
    near = (near | (urban & (nodes.density > 0))).reshape(-1)
    if reader_d2 is not None:
        near = near & (reader_d2 < _crown_reach2(torch.tensor(MAX_CROWN, dtype=torch.float32)))
    idx = torch.nonzero(near).reshape(-1)
    n = ci.numel()
    # a cell whose centre has no urban block in the 3 x 3 around holds no candidate in an urban block
    maybe_urban = (urban & (nodes.density > 0)).reshape(-1)
    if idx.numel() == n:
        return candidates(seed, ci, cj, nodes, blocks, maybe_urban, reader_d2)
    out = _absent(n, x.device)
    if idx.numel():
        some = candidates(seed, ci.index_select(0, idx), cj.index_select(0, idx), nodes, blocks,
                          maybe_urban.index_select(0, idx), None if reader_d2 is None else reader_d2.index_select(0, idx))
        out = {k: v.index_put((idx,), some[k]) for k, v in out.items()}
    return out


def _top_crown(x: torch.Tensor, y: torch.Tensor, cells: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """The highest crown over points (x, y float64, (N,)) among the candidates of the 9 cells
    around each: `cells` (`candidates` fields, 1-D) at idx (9, N) (int64, cells in `_around`
    order); of equal heights the first: `canopy`'s fields.

    Most of the 9 candidates are no tree: only those that are have their distance taken (the
    same operations on the same operands as for all of them), and the crown surface only where
    one covers the point."""
    flat = idx.reshape(-1)
    pairs = torch.nonzero(cells["present"].index_select(0, flat)).reshape(-1)  # (cell, point) pairs with a tree
    cell = flat.index_select(0, pairs)
    at = lambda v: v.index_select(0, cell)  # noqa: E731
    point = torch.remainder(pairs, x.numel())
    dx = (x.index_select(0, point) - at(cells["x"])).to(torch.float32)
    dy = (y.index_select(0, point) - at(cells["y"])).to(torch.float32)
    d2 = dx * dx + dy * dy
    radius = at(cells["radius"])
    hit = torch.nonzero(d2 < radius * radius).reshape(-1)
    pick = lambda v: v.index_select(0, hit)  # noqa: E731
    crown = crown_height(pick(d2), pick(at(cells["height"])), pick(radius), pick(at(cells["kind"])))
    z = torch.zeros(idx.shape, dtype=torch.float32, device=x.device).reshape(-1).index_put(
        (pick(pairs),), crown).reshape(idx.shape)
    height, top = z[0], torch.zeros(z.shape[1:], dtype=torch.int64, device=z.device)
    for k in range(1, len(z)):  # the first of the highest (argmax over dim 0 is slow on CPU)
        higher = z[k] > height
        height, top = torch.where(higher, z[k], height), torch.where(higher, k, top)
    best = idx.gather(0, top.unsqueeze(0))[0]  # the top cell of each point
    tid, kind, r = (cells[k].index_select(0, best) for k in ("id", "kind", "radius"))
    ex = (x - cells["x"].index_select(0, best)).to(torch.float32)
    ey = (y - cells["y"].index_select(0, best)).to(torch.float32)
    edge = (ex * ex + ey * ey) / (r * r)
    return {"height": height, "id": torch.where(height > 0, tid, torch.zeros_like(tid)),
            "edge": torch.where(height > 0, edge, torch.ones_like(edge)), "kind": kind}


class Tree(NamedTuple):
    """One tree: trunk at (x, y) world metres on ground height `ground`; sizes in metres."""

    id: int
    x: float
    y: float
    ground: float
    height: float
    crown_radius: float
    kind: str
    setting: str

    def to_dict(self) -> dict:
        return {"id": self.id, "position": [self.x, self.y, self.ground], "height": self.height,
                "crown_radius": self.crown_radius, "kind": self.kind, "setting": self.setting}


def trees_in(seed: int, west: float, south: float, east: float, north: float, nodes: VegetationNodes,
             blocks: BlockLookup, device=None, table: CellTable | None = None) -> dict[str, torch.Tensor]:
    """Every tree whose trunk lies in [west, east) x [south, north), as 1-D tensors (the keys of
    `candidates`), sorted by cell (south to north, west to east); read from `table` when it
    covers the cells."""
    c0, c1 = math.floor(west / CELL), math.floor(east / CELL)
    r0, r1 = math.floor(south / CELL), math.floor(north / CELL)
    if table is not None and table.covers(c0, c1, r0, r1):
        rows = torch.arange(r0 - table.r0, r1 - table.r0 + 1, dtype=torch.int64, device=device)
        cols = torch.arange(c0 - table.c0, c1 - table.c0 + 1, dtype=torch.int64, device=device)
        flat = (rows.reshape(-1, 1) * table.ncol + cols.reshape(1, -1)).reshape(-1)
        c = {k: v.index_select(0, flat) for k, v in table.cells.items()}
    else:
        cols = torch.arange(c0, c1 + 1, dtype=torch.int64, device=device)
        rows = torch.arange(r0, r1 + 1, dtype=torch.int64, device=device)
        ci = cols.reshape(1, -1).expand(rows.numel(), -1).reshape(-1)
        cj = rows.reshape(-1, 1).expand(-1, cols.numel()).reshape(-1)
        c = candidates(seed, ci, cj, nodes, blocks)
    keep = c["present"] & (c["x"] >= west) & (c["x"] < east) & (c["y"] >= south) & (c["y"] < north)
    idx = torch.nonzero(keep).reshape(-1)
    return {k: v.index_select(0, idx) for k, v in c.items()}
