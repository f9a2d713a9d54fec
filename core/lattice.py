"""Fields sampled on a fixed world-anchored lattice and interpolated (Catmull-Rom) between nodes.

A band-limited field need not be evaluated at every 1 m sample: nodes every `spacing` metres are
enough. Because the lattice is anchored to the world (node k sits at k * spacing metres), the
interpolated value at a world point does not depend on which chunk or level asked for it, and at a
node the weights are exactly (0, 1, 0, 0), so levels coarser than the lattice see node values bit
for bit.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import kernels
from .shapes import broadcast_shape

Field = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def catmull_rom_weights(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Weights of nodes -1, 0, +1, +2 for fractions t in [0, 1) (float32)."""
    t2 = t * t
    t3 = t2 * t
    w0 = (t2 * 2.0 - t3 - t) * 0.5
    w1 = (t3 * 3.0 - t2 * 5.0 + 2.0) * 0.5
    w2 = (t2 * 4.0 - t3 * 3.0 + t) * 0.5
    w3 = (t3 - t2) * 0.5
    return w0, w1, w2, w3


def _axis(pos: torch.Tensor, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    u = pos * (1.0 / spacing)  # spacing is a power of two: exact
    k = torch.floor(u)
    return k.to(torch.int64), (u - k).to(torch.float32)


def on_grid(field: Field, xs: torch.Tensor, ys: torch.Tensor, spacing: float) -> dict[str, torch.Tensor]:
    """Evaluate `field` on a separable grid through the lattice.

    xs: (W,) float64 world metres (columns), ys: (H,) float64 (rows); `field` returns float32
    tensors (all fields are interpolated in one stacked pass). Returns (H, W) float32 tensors.
    """
    kx, tx = _axis(xs, spacing)
    ky, ty = _axis(ys, spacing)
    x0, y0 = int(kx.min()) - 1, int(ky.min()) - 1
    nx, ny = int(kx.max()) + 3 - x0, int(ky.max()) + 3 - y0
    node_x = (torch.arange(nx, dtype=torch.float64, device=xs.device) + x0) * spacing
    node_y = (torch.arange(ny, dtype=torch.float64, device=ys.device) + y0) * spacing
    nodes = field(node_x.reshape(1, -1), node_y.reshape(-1, 1))
    f = torch.stack(list(nodes.values()))  # (fields, rows, cols): every field in one pass
    along_x = None  # the sums in place: the same additions in the same order
    for w, d in zip(catmull_rom_weights(tx), (-1, 0, 1, 2)):
        term = f.index_select(2, kx - x0 + d).mul_(w)
        along_x = term if along_x is None else along_x.add_(term)
    value = None
    for w, d in zip(catmull_rom_weights(ty), (-1, 0, 1, 2)):
        term = along_x.index_select(1, ky - y0 + d).mul_(w.reshape(-1, 1))
        value = term if value is None else value.add_(term)
    return dict(zip(nodes, value.unbind(0)))


def at_points(field: Field, x: torch.Tensor, y: torch.Tensor, spacing: float) -> dict[str, torch.Tensor]:
    """Evaluate `field` at arbitrary points (x, y: (N,) float64) through the lattice; (N,) float32.

    Same nodes, weights and order of operations as `on_grid`, so a point on a chunk's grid gets
    the chunk's bits.
    """
    kx, tx = _axis(x, spacing)
    ky, ty = _axis(y, spacing)
    n = x.shape[0]
    d = torch.tensor([-1, 0, 1, 2], dtype=torch.int64, device=x.device)
    cols = kx.reshape(1, 1, -1) + d.reshape(4, 1, 1)  # (4, 1, N)
    rows = ky.reshape(1, 1, -1) + d.reshape(1, 4, 1)  # (1, 4, N)
    x0, y0 = int(kx.min()) - 1, int(ky.min()) - 1
    nx, ny = int(kx.max()) + 3 - x0, int(ky.max()) + 3 - y0
    flat = ((rows - y0) * nx + (cols - x0)).reshape(-1)  # (4, 4, N): [col, row, point]
    if nx * ny <= 4 * n + 4096:
        # evaluate each node once on the points' bounding grid, then gather (same node values)
        grid = field(((torch.arange(nx, device=x.device, dtype=torch.float64) + x0) * spacing).reshape(1, -1),
                     ((torch.arange(ny, device=x.device, dtype=torch.float64) + y0) * spacing).reshape(-1, 1))
        names = list(grid)
        table, node = torch.stack([grid[k].reshape(-1) for k in names]), flat
    elif nx * ny < 2**62:
        # clustered points far apart (e.g. along a river across a large chunk): each distinct node once
        unique, node = torch.unique(flat, return_inverse=True)
        ux = (torch.remainder(unique, nx) + x0).to(torch.float64) * spacing
        uy = (torch.div(unique, nx, rounding_mode="floor") + y0).to(torch.float64) * spacing
        values = field(ux, uy)
        names = list(values)
        table = torch.stack([values[k] for k in names])
    else:
        values = field(cols.to(torch.float64) * spacing, rows.to(torch.float64) * spacing)
        names = list(values)
        table, node = torch.stack([values[k].expand(4, 4, n).reshape(-1) for k in names]), None
    wx, wy = catmull_rom_weights(tx), catmull_rom_weights(ty)
    if node is not None and table.dtype == torch.float32 and kernels.available(table):
        return dict(zip(names, kernels.catmull_rom_points(table, node.reshape(4, 4, n), wx, wy).unbind(0)))
    f = table if node is None else table.index_select(1, node)
    f = f.reshape(len(names), 4, 4, n)  # [field, col, row, point]: every field in one pass
    along_x = None
    for j, w in enumerate(wx):
        term = f[:, j] * w
        along_x = term if along_x is None else along_x + term
    value = None
    for i, w in enumerate(wy):
        term = along_x[:, i] * w
        value = term if value is None else value + term
    return dict(zip(names, value.unbind(0)))


def interpolate(field: Field, x: torch.Tensor, y: torch.Tensor, spacing: float) -> dict[str, torch.Tensor]:
    """`on_grid` for a separable grid (x (1, W), y (H, 1)), else `at_points` on the broadcast
    points; both give the same bits for the same point. Returns tensors of the broadcast shape."""
    if x.dim() == 2 and y.dim() == 2 and x.shape[0] == 1 and y.shape[1] == 1:
        return on_grid(field, x.reshape(-1), y.reshape(-1), spacing)
    shape = broadcast_shape(x.shape, y.shape)
    out = at_points(field, x.expand(shape).reshape(-1), y.expand(shape).reshape(-1), spacing)
    return {k: v.reshape(shape) for k, v in out.items()}
