"""The street frame: a smooth, seed-fixed map between world metres and street-grid coordinates.

Settlements are laid out on a square grid of blocks (core/settlements.py) in *street
coordinates* (u, v). The map from the world is a rotation by a per-seed angle of a domain warp,

    (u, v) = R (x + n_x(x, y), y + n_y(x, y)),

with n_x, n_y two octaves of gradient noise each (WARP_BROAD: towns turn as a whole; WARP_BENDS:
streets bend within a town). So in the world, streets curve, their directions differ from town
to town and across a town, blocks are quadrilaterals of varying angle (junctions are not right
angles where the warp shears), and nothing is aligned with north. The warp's gradient stays
below 0.5 (measured over 200 000 points and four seeds; p99 0.37-0.39), so the map is one-to-one
and lengths change by 0.78-1.41 times (1st-99th percentile).

`to_grid` (world -> street) is a pure, pointwise function of position: rasters stay seamless and
level-independent. `to_world` inverts it by a fixed number of Newton steps on the warp's
analytic Jacobian: used for block centres, grid nodes and lot centres, which are few.
`to_grid_near` interpolates `to_grid` from a lattice, for conservative tests over many points.
`inverse_jacobian` gives the local world vectors of the grid's axes: buildings are rectangles
aligned with the street they face (settlements.world_rects). Only +, -, *, / and sqrt on top of
the noise, so the bits follow the noise's determinism guarantee.

With a `height` (the macro relief; generator parameter contour_streets = 1) the map is
(u, v) = R W(T(x)): the contour twist T (core/twist.py) first turns the world, vortex by vortex,
so that the grid's axes follow the contours around each vortex's node; `to_world` undoes it
exactly after the Newton steps, `inverse_jacobian` multiplies in its analytic Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import twist as contour_twist
from .hashing import hash2, salt, unit_float
from .noise import Octave, octave_noise, octaves

WARP_BROAD = (7000.0, 230.0)  # wavelength, metres of displacement per noise std: towns turn as a whole
WARP_BENDS = (1400.0, 26.0)  # the same for the bends of streets within a town
NOISE_STD = 0.2  # measured standard deviation of one octave of gradient noise
APPROX_SPACING = 64.0  # metres between the exact values to_grid_near interpolates
NEWTON_STEPS = 4  # steps of to_world: 3 mm from the exact inverse (the warp is float32), none gained by more
TURN_CACHE = 200_000  # vortices whose turn a frame keeps (a float each); more are dropped and computed again
TURN_RING = 2  # nodes computed around a box of missing ones: a chunk's later calls reach a little further
TURN_SLACK = 1024.0  # metres beyond a region's turned image whose vortices can still be read (the warp's
# and the twist's displacements; measured over seven levels and two seeds: 0.3-0.9 km, node rounding included)


@dataclass(frozen=True)
class StreetFrame:
    """The street frame of one seed. cos, sin: the grid's rotation (exact rationals of a hashed
    tangent); warp_x, warp_y: the warp's octaves; height: the macro relief (float32 m at float64
    world points), whose contours the grid turns to (core/twist.py; None: no twist); the frame
    keeps the vortices' turns it has computed (pure functions of the node: the cache changes no bit)."""

    cos: float
    sin: float
    warp_x: tuple[Octave, ...]
    warp_y: tuple[Octave, ...]
    height: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = field(default=None, compare=False, repr=False)
    turns: dict = field(default_factory=dict, compare=False, repr=False)
    learned: list = field(default_factory=list, compare=False, repr=False)  # the last box learned or recalled, dense

    @classmethod
    def for_seed(cls, seed: int, height: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                 ) -> "StreetFrame":
        one = torch.zeros(1, dtype=torch.int64)
        t = float(unit_float(hash2(one, one, salt(seed, 60)))[0]) * 2.0 - 1.0  # tan(angle / 2), angle in +-90 deg
        return cls(cos=(1.0 - t * t) / (1.0 + t * t), sin=2.0 * t / (1.0 + t * t),
                   warp_x=tuple(octaves(seed, 61, WARP_BROAD[0], 1) + octaves(seed, 63, WARP_BENDS[0], 1)),
                   warp_y=tuple(octaves(seed, 62, WARP_BROAD[0], 1) + octaves(seed, 64, WARP_BENDS[0], 1)),
                   height=height)

    def _remember(self, items, count: int) -> None:
        """Keep `count` computed node turns; the cache starts over when they would overflow it."""
        if len(self.turns) + count > TURN_CACHE:
            self.turns.clear()
        self.turns.update(items)

    def turn_box(self, west: float, south: float, east: float, north: float, margin: float
                 ) -> tuple[int, int, int, int] | None:
        """The nodes (i0, i1, j0, j1) whose turns a chunk over this region reads (for `recall_turns`
        and `learn_turns`): its block table covers the bounding box of its image in street
        coordinates and `margin` street metres around, whose world points reach beyond the region by
        the growth of a square's bounding box turned by the frame's angle, twice, and TURN_SLACK.
        None without a twist (a node outside the box is still computed when asked)."""
        if self.height is None:
            return None
        k = abs(self.cos) + abs(self.sin)  # a square turned by the frame's angle: its bounding box's side grows k times
        reach = max(east - west, north - south) * 0.5 * (k * k - 1.0) + margin * k + TURN_SLACK
        s = 1.0 / contour_twist.TWIST_SPACING
        return (int(np.floor((west - reach) * s)), int(np.ceil((east + reach) * s)),
                int(np.floor((south - reach) * s)), int(np.ceil((north + reach) * s)))

    def recall_turns(self, box: tuple[int, int, int, int]) -> bool:
        """Whether the frame knows the turns of every node in `box`; if so `turn` reads them from
        one dense table while its nodes stay inside."""
        i0, i1, j0, j1 = box
        known = [self.turns.get((i, j)) for j in range(j0, j1 + 1) for i in range(i0, i1 + 1)]
        if any(v is None for v in known):
            return False
        self.learned[:] = [(i0, i1, j0, j1, torch.tensor(known, dtype=torch.float64))]
        return True

    def unknown_box(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """The bounding box (i0, i1, j0, j1) of the nodes in `box` whose turns the frame does not
        know, None where it knows them all (a chunk next to one done before learns only the rest)."""
        i0, i1, j0, j1 = box
        todo = [(i, j) for j in range(j0, j1 + 1) for i in range(i0, i1 + 1) if (i, j) not in self.turns]
        if not todo:
            return None
        ii, jj = zip(*todo)
        return min(ii), max(ii), min(jj), max(jj)

    def learn_turns(self, box: tuple[int, int, int, int], z: torch.Tensor) -> None:
        """Keep the turns of the nodes in `box` (turn_box) from the relief z (float32 m, (H, W)) on
        their twist.stencil_axes (the values `turn` would compute)."""
        i0, i1, j0, j1 = box
        tau = contour_twist.box_turns(z, i0, i1, j0, j1, self._base_axes)
        nodes = [(i, j) for j in range(j0, j1 + 1) for i in range(i0, i1 + 1)]
        self._remember(zip(nodes, tau.tolist()), len(nodes))
        self.learned[:] = [(i0, i1, j0, j1, tau)]

    def turn(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """The vortices' tau (float64, twist.node_turn) at node indices (i, j) (int64, one shape):
        each distinct node looked up once (the nodes' bounding box where it is small, else the
        distinct nodes) and computed once per frame."""
        if self.height is None or i.numel() == 0:
            return torch.zeros(i.shape, dtype=torch.float64, device=i.device)
        (i0, i1), (j0, j1) = torch.stack([torch.stack(i.aminmax()), torch.stack(j.aminmax())]).tolist()
        for b0, b1, c0, c1, tau in self.learned:  # inside the learned box: one gather
            if b0 <= i0 and i1 <= b1 and c0 <= j0 and j1 <= c1:
                return tau.to(i.device).index_select(0, ((j - c0) * (b1 - b0 + 1) + (i - b0)).reshape(-1)).reshape(i.shape)
        cols, rows = i1 - i0 + 1, j1 - j0 + 1
        box = cols * rows <= 4 * i.numel() + 4096
        if box:  # the box, row by row
            ii = torch.arange(i0, i1 + 1, dtype=torch.int64).repeat(rows)
            jj = torch.arange(j0, j1 + 1, dtype=torch.int64).repeat_interleave(cols)
            where = ((j - j0) * cols + (i - i0)).reshape(-1)
        else:
            keys, where = torch.unique(torch.stack([i.reshape(-1), j.reshape(-1)]), dim=1, return_inverse=True)
            ii, jj = keys[0].cpu(), keys[1].cpu()
        nodes = list(zip(ii.tolist(), jj.tolist()))
        known = [self.turns.get(n) for n in nodes]
        todo = [k for k, v in enumerate(known) if v is None]
        if todo and box:  # the box and TURN_RING nodes around it at once, on one grid of relief samples
            # (same values as node by node): the other calls for a chunk find theirs computed
            r = TURN_RING
            bi = torch.arange(i0 - r, i1 + r + 1, dtype=torch.int64).repeat(rows + 2 * r)
            bj = torch.arange(j0 - r, j1 + r + 1, dtype=torch.int64).repeat_interleave(cols + 2 * r)
            new = contour_twist.node_turn(bi.to(i.device), bj.to(i.device), self.height, self._base_axes, box=True)
            self._remember(zip(zip(bi.tolist(), bj.tolist()), new.tolist()), len(bi))
            known = [self.turns[n] for n in nodes]
        elif todo:
            pick = torch.tensor(todo, dtype=torch.int64)
            new = contour_twist.node_turn(ii.index_select(0, pick).to(i.device), jj.index_select(0, pick).to(i.device),
                                          self.height, self._base_axes).tolist()
            for k, v in zip(todo, new):
                known[k] = v
            self._remember(((nodes[k], v) for k, v in zip(todo, new)), len(todo))
        values = torch.tensor(known, dtype=torch.float64, device=i.device)
        return values.index_select(0, where.to(i.device)).reshape(i.shape)

    def _warp(self, x: torch.Tensor, y: torch.Tensor, derivatives: bool = False):
        """Warped world position (wx, wy) (float64) before the rotation, and with `derivatives`
        also its Jacobian (dwx/dx, dwx/dy, dwy/dx, dwy/dy) (float64)."""
        (bx, sx), (by, sy) = self.warp_x, self.warp_y
        if x.numel() == 0 or y.numel() == 0:  # the noise reduces over its inputs' lattice cells
            x, y = torch.broadcast_tensors(x, y)
            return (x, y, torch.ones_like(x), torch.zeros_like(x), torch.zeros_like(x), torch.ones_like(x)) \
                if derivatives else (x, y)
        out = [x, y]
        jac = []
        noise = octave_noise(x, y, (bx, sx, by, sy), derivatives)
        for i, (broad, bends) in enumerate(((bx, sx), (by, sy))):
            a, b = noise[2 * i], noise[2 * i + 1]
            if not derivatives:
                a, b = (a,), (b,)
            ka, kb = WARP_BROAD[1] / NOISE_STD, WARP_BENDS[1] / NOISE_STD
            out[i] = out[i] + (a[0] * ka + b[0] * kb).to(torch.float64)
            if derivatives:
                ga, gb = ka / broad.spacing, kb / bends.spacing  # derivatives come per lattice unit
                jac += [(a[1] * ga + b[1] * gb).to(torch.float64) + (1.0 if i == 0 else 0.0),
                        (a[2] * ga + b[2] * gb).to(torch.float64) + (1.0 if i == 1 else 0.0)]
        return (out[0], out[1], *jac) if derivatives else (out[0], out[1])

    def to_grid(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Street coordinates (u, v) of world points; float64 in, float64 out, broadcast shape."""
        if self.height is not None and x.numel() and y.numel():
            x, y = contour_twist.twist(x, y, self.turn)
        wx, wy = self._warp(x, y)
        return wx * self.cos + wy * self.sin, wy * self.cos - wx * self.sin

    def to_grid_near(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`to_grid` to within about a metre without the contour twist, 11 m with it (float64,
        broadcastable in, broadcast shape out): bilinear between exact values on a world-anchored
        lattice of APPROX_SPACING metres (the warp's curvature is under 5e-4 per metre; the largest
        differences measured with the twist, over 640 000 points and four seeds, are 8-10.7 m).
        For conservative tests over many points that allow some slack, such as which tree
        candidates might be near a town (a block) or which samples need exact street coordinates."""
        if x.numel() == 0 or y.numel() == 0:
            return torch.broadcast_tensors(x, y)
        s = APPROX_SPACING
        i, j = torch.floor(x * (1.0 / s)), torch.floor(y * (1.0 / s))
        fx, fy = x * (1.0 / s) - i, y * (1.0 / s) - j
        i0, j0 = int(i.min()), int(j.min())
        ni, nj = int(i.max()) - i0 + 2, int(j.max()) - j0 + 2
        nu, nv = self.to_grid(((torch.arange(ni, dtype=torch.float64, device=x.device) + i0) * s).reshape(1, -1),
                              ((torch.arange(nj, dtype=torch.float64, device=x.device) + j0) * s).reshape(-1, 1))
        c = (i.to(torch.int64) - i0) + (j.to(torch.int64) - j0) * ni
        shape, c = c.shape, c.reshape(-1)
        out = []
        for node in (nu.reshape(-1), nv.reshape(-1)):
            a, b = node.index_select(0, c).reshape(shape), node.index_select(0, c + 1).reshape(shape)
            d, e = node.index_select(0, c + ni).reshape(shape), node.index_select(0, c + ni + 1).reshape(shape)
            out.append((a + (b - a) * fx) + ((d + (e - d) * fx) - (a + (b - a) * fx)) * fy)
        return out[0], out[1]

    def to_world(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (x, y) whose street coordinates are (u, v) (float64, same shape): NEWTON_STEPS
        Newton steps on the warp from R^T (u, v), with its analytic Jacobian; within 4 mm of the
        exact inverse (200 000 random points in 40 km, four seeds: the warp's float32 noise)."""
        qx = u * self.cos - v * self.sin
        qy = u * self.sin + v * self.cos
        x, y = qx, qy
        for _ in range(NEWTON_STEPS):
            wx, wy, a, b, c, d = self._warp(x, y, derivatives=True)
            rx, ry = wx - qx, wy - qy
            det = a * d - b * c
            x, y = x - (d * rx - b * ry) / det, y - (a * ry - c * rx) / det
        if self.height is not None and x.numel():
            x, y = contour_twist.untwist(x, y, self.turn)
        return x, y

    def inverse_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The world vectors (float64) of one street metre along u, (ax, ay), and along v, (bx, by),
        at world points: the columns of the inverse of the map's (analytic) Jacobian. Their
        lengths are the local stretch (0.8 to 1.35 world metres per street metre at the 1st and
        99th percentiles) and their angle the junction angle of the streets there."""
        if self.height is None or x.numel() == 0 or y.numel() == 0:
            return self._base_axes(x, y)
        tx, ty, (ta, tb, tc, td) = contour_twist.twist(x, y, self.turn, jacobian=True)
        ax, ay, bx, by = self._base_axes(tx, ty)
        det = ta * td - tb * tc  # 1 up to rounding: the twist keeps areas
        # the twist's inverse Jacobian takes the base grid's axes at T(x) back to x
        return ((td * ax - tb * ay) / det, (ta * ay - tc * ax) / det,
                (td * bx - tb * by) / det, (ta * by - tc * bx) / det)

    def _base_axes(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`inverse_jacobian` of the warp and rotation alone (no twist)."""
        _, _, a, b, c, d = self._warp(x, y, derivatives=True)
        det = a * d - b * c
        # (I + grad D)^-1 R^T: the rotation turns street axes back into warped-world axes
        ru, rv = (self.cos, self.sin), (-self.sin, self.cos)
        return ((d * ru[0] - b * ru[1]) / det, (a * ru[1] - c * ru[0]) / det,
                (d * rv[0] - b * rv[1]) / det, (a * rv[1] - c * rv[0]) / det)
