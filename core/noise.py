"""Position-hashed gradient noise and fractal sums, in torch (CPU, or CUDA when present).

Coordinates are world metres in float64 (precise to ~1e-4 m at 1e11 m from the origin); lattice
cells come from `floor` and their gradients from `hash2`, so every value is a pure function of
(key, position). Only correctly-rounded IEEE operations are used (+ - * / sqrt floor), never
transcendental functions, whose vectorised and scalar implementations can differ in the last bit:
this is what makes chunks bit-identical whatever the tensor shape, thread count or order.

A gradient-noise octave is exactly 0.0 on its own lattice. The scale cascade relies on this: the
detail octave added at level L+1 has its lattice on the level-L sample grid, so it adds exactly
nothing at the samples that level L+1 shares with level L.

The public functions accept torch tensors or numpy arrays and return the same kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from . import kernels
from .device import as_tensor
from .hashing import axis_keys, combine_axes, hash2, hash_axis, salt
from .shapes import broadcast_shape

# 16 gradient directions at 22.5 degree steps, unit length (float32 table, gathered by hash).
_ANGLES = np.arange(16) * (2 * np.pi / 16)
_GRAD = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1).astype(np.float32)
# the four corners of a lattice cell, in the order a, b, c, d: node offsets along x and y
_CORNER_X = (0, 1, 0, 1)
_CORNER_Y = (0, 0, 1, 1)
# octaves x points a stacked pass holds at most (four octaves of a 257 x 257 grid): larger
# temporaries spill the caches
STACK_MAX = 300_000
GRID_MIN = 4096  # samples from which a separable grid takes `_grid_octave`, one octave at a time


@lru_cache(maxsize=None)
def _grad_table(device: torch.device) -> torch.Tensor:
    """(2, 16) float32: x and y components of the 16 gradients."""
    return torch.from_numpy(_GRAD.T.copy()).to(device)


@dataclass(frozen=True)
class Octave:
    """One gradient-noise octave: lattice spacing in metres and a 32-bit key."""

    spacing: float
    key: int


def lattice_coords(pos: torch.Tensor, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """World metres (float64) -> (cell index int64, fraction float32 in [0, 1))."""
    return _cell_and_fraction(pos / spacing)


def _cell_and_fraction(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cell = torch.floor(u)
    return cell.to(torch.int64), (u - cell).to(torch.float32)


def gradient_noise(x: torch.Tensor, y: torch.Tensor, octave: Octave,
                   with_derivatives: bool = False):
    """Perlin-style gradient noise with a quintic fade, roughly in [-0.7, 0.7].

    x, y: float64 world metres, broadcastable (e.g. (H, 1) and (1, W)).
    Returns value (float32, broadcast shape) or (value, d/dx, d/dy) with derivatives per lattice unit.
    """
    return octave_noise(x, y, (octave,), with_derivatives)[0]


def octave_noise(x: torch.Tensor, y: torch.Tensor, octs, with_derivatives: bool = False) -> list:
    """`gradient_noise` of every octave of `octs` at the same points: a list with one entry per
    octave, each bit-identical to a `gradient_noise` call of its own.

    A large separable grid (x (1, W), y (H, 1)) takes `_grid_octave`, one octave at a time.
    Other points cost torch calls, not arithmetic, when they are few, so their octaves go through
    passes over tensors stacked along a leading octave dimension, as many octaves a pass as keep
    octaves x points within STACK_MAX (large temporaries cost memory traffic).
    """
    octs = tuple(octs)
    if not with_derivatives and _is_grid(x, y) and x.shape[1] * y.shape[0] >= GRID_MIN:
        xs, ys = x.reshape(-1), y.reshape(-1)
        values = [_grid_octave(xs, ys, o) for o in octs]
        if all(v is not None for v in values):
            return values
    if x.dtype == y.dtype == torch.float64 and kernels.available(x, y):
        return _compiled_noise(x, y, octs, with_derivatives)
    order, group = _by_spacing(octs)
    grouped = tuple(octs[i] for i in order)
    per_pass = max(1, STACK_MAX // max(math.prod(broadcast_shape(x.shape, y.shape)), 1))
    per_pass = max(group, per_pass // group * group)  # whole groups of octaves of one spacing a pass
    passes = (_noise_stack(x, y, grouped[i:i + per_pass], group, with_derivatives)
              for i in range(0, len(grouped), per_pass))
    out = [None] * len(octs)
    for i, v in zip(order, (v for values in passes for v in values)):
        out[i] = v
    return out


def _compiled_noise(x: torch.Tensor, y: torch.Tensor, octs: tuple[Octave, ...], with_derivatives: bool) -> list:
    """`octave_noise` by the compiled kernel (the same bits as `_noise_stack`), at every point of
    the broadcast shape."""
    shape = broadcast_shape(x.shape, y.shape)
    xs, ys = x.expand(shape).reshape(-1), y.expand(shape).reshape(-1)
    out = kernels.noise_points(xs, ys, [o.spacing for o in octs], [o.key for o in octs],
                               _grad_table(x.device), with_derivatives)
    per_octave = [[t.reshape(shape) for t in o.unbind(0)] for o in out]
    return list(zip(*per_octave)) if with_derivatives else per_octave[0]


def _by_spacing(octs: tuple[Octave, ...]) -> tuple[list[int], int]:
    """An order of `octs` in groups of equal spacing (first appearance first) and the group size,
    where every spacing has as many octaves (the street warp: x and y octaves of each wavelength);
    else their own order and groups of one. Octaves of a group share their lattice coordinates."""
    groups: dict[float, list[int]] = {}
    for i, o in enumerate(octs):
        groups.setdefault(o.spacing, []).append(i)
    sizes = {len(g) for g in groups.values()}
    if len(sizes) != 1 or len(groups) == len(octs):
        return list(range(len(octs))), 1
    return [i for g in groups.values() for i in g], sizes.pop()


def _is_grid(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether (x, y) is a separable grid: x (1, W) columns, y (H, 1) rows."""
    return x.dim() == 2 and y.dim() == 2 and x.shape[0] == 1 and y.shape[1] == 1


def _grid_octave(xs: torch.Tensor, ys: torch.Tensor, octave: Octave) -> torch.Tensor | None:
    """One octave on the separable grid of columns xs (W,) and rows ys (H,) (float64 metres):
    (H, W) float32, bit-identical to `_noise_stack` (the same products and sums of the same
    operands), or None where the grid spans many more lattice nodes than it has samples.

    A corner's term g . (fx, fy) = gx fx + gy fy: gx fx varies only with the node row and the
    sample column, gy fy only with the sample row and the node column, so both products are
    taken on those small (node rows, W) and (H, node columns) arrays, and only then spread over
    the grid by row and column copies (index_select), with no per-sample index arithmetic.
    """
    if xs.dtype == ys.dtype == torch.float64 and kernels.available(xs, ys):
        return kernels.noise_grid(xs, ys, octave.spacing, octave.key, _grad_table(xs.device))
    cx, fx = lattice_coords(xs, octave.spacing)
    cy, fy = lattice_coords(ys, octave.spacing)
    (x0, x1), (y0, y1) = torch.stack([torch.stack(cx.aminmax()), torch.stack(cy.aminmax())]).tolist()
    cols, rows = x1 - x0 + 2, y1 - y0 + 2
    if rows * cols > 4 * (xs.numel() + 1) * (ys.numel() + 1):
        return None
    idx = torch.from_numpy(_grid_gradient_index(x0, y0, cols, rows, octave.key)).to(xs.device)
    gx, gy = _grad_table(xs.device).index_select(1, idx.reshape(-1)).reshape(2, rows, cols).unbind(0)
    rx, ry = cx - x0, cy - y0
    rx1, ry1 = rx + 1, ry + 1
    fx1, fy1 = fx - 1.0, fy - 1.0
    px = gx.index_select(1, rx).mul_(fx)  # (rows, W): x term of the corners west of each sample
    px1 = gx.index_select(1, rx1).mul_(fx1)  # ... east
    qy = gy.index_select(0, ry).mul_(fy.reshape(-1, 1))  # (H, cols): y term of the corners south
    qy1 = gy.index_select(0, ry1).mul_(fy1.reshape(-1, 1))  # ... north
    a = px.index_select(0, ry).add_(qy.index_select(1, rx))
    b = px1.index_select(0, ry).add_(qy.index_select(1, rx1))
    c = px.index_select(0, ry1).add_(qy1.index_select(1, rx))
    d = px1.index_select(0, ry1).add_(qy1.index_select(1, rx1))
    u = _fade(fx)
    v = _fade(fy).reshape(-1, 1)
    # in place, the same operations as `_noise_stack`: a + u * k1 + v * k2 + (u * v) * k3
    k3 = (a - b).sub_(c).add_(d)
    k1 = b.sub_(a).mul_(u)
    k2 = c.sub_(a).mul_(v)
    return a.add_(k1).add_(k2).add_(k3.mul_(u * v))


def _grid_gradient_index(x0: int, y0: int, cols: int, rows: int, key: int) -> np.ndarray:
    """Gradient (0..15) of the nodes of a box of rows x cols lattice nodes from (x0, y0): (rows, cols)
    int64, the words of `_node_gradient_index`. The box's columns and rows are hashed once each,
    its nodes combine the two in 32-bit words (uint32: the same bits as the int64 arithmetic
    masked to 32 bits, at half the memory)."""
    key_x, key_y = axis_keys(key)
    hx = hash_axis(np.arange(x0, x0 + cols, dtype=np.int64), key_x).astype(np.uint32)
    hy = hash_axis(np.arange(y0, y0 + rows, dtype=np.int64), key_y).astype(np.uint32)
    return (combine_axes(hx.reshape(1, -1), hy.reshape(-1, 1)) & 15).astype(np.int64)


def _noise_stack(x: torch.Tensor, y: torch.Tensor, octs: tuple[Octave, ...], group: int,
                 with_derivatives: bool) -> list:
    """`octave_noise` in one pass: every tensor carries two leading octave dimensions (S, R, ...):
    `octs` are S groups of R = `group` octaves of one spacing each, whose lattice coordinates
    and fades are computed once a group, (S, 1, ...), and broadcast."""
    spacings = octs[::group]
    cx, fx = (t.unsqueeze(1) for t in _stacked_cells(x, spacings))
    cy, fy = (t.unsqueeze(1) for t in _stacked_cells(y, spacings))
    fx1, fy1 = fx - 1.0, fy - 1.0
    g = _corner_gradients(cx, cy, octs)  # (4, 2, S, R, ...): corners a, b, c, d; x and y components
    a = (g[0, 0] * fx).add_(g[0, 1] * fy)
    b = (g[1, 0] * fx1).add_(g[1, 1] * fy)
    c = (g[2, 0] * fx).add_(g[2, 1] * fy1)
    d = (g[3, 0] * fx1).add_(g[3, 1] * fy1)

    u = _fade(fx)
    v = _fade(fy)
    k1 = b - a
    k2 = c - a
    k3 = (a - b).sub_(c).add_(d)
    uv = u * v
    value = (u * k1).add_(a).add_(v * k2).add_(uv * k3)  # a + u k1 + v k2 + (u v) k3
    flat = lambda t: t.reshape((len(octs),) + t.shape[2:]).unbind(0)  # noqa: E731
    if not with_derivatives:
        return list(flat(value))
    ga, gb, gc, gd = g.unbind(0)  # (2, S, R, ...) each: both components at once
    # in place: grad = ga + u (gb - ga) + v (gc - ga) + u v (ga - gb - gc + gd), dx = grad_x + dfade(fx)
    # (k1 + v k3), dy = grad_y + dfade(fy) (k2 + u k3): the same operations on the same operands
    grad = (gb - ga).mul_(u).add_(ga).add_((gc - ga).mul_(v)).add_((ga - gb).sub_(gc).add_(gd).mul_(uv))
    dx = (v * k3).add_(k1).mul_(_dfade(fx)).add_(grad[0])
    dy = (u * k3).add_(k2).mul_(_dfade(fy)).add_(grad[1])
    return list(zip(flat(value), flat(dx), flat(dy)))


def _stacked_cells(pos: torch.Tensor, octs: tuple[Octave, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """`lattice_coords` of each octave, stacked: (K, *pos.shape) cell indices, as float64 (exact
    integers), and fractions, float32."""
    u = torch.stack([pos / o.spacing for o in octs])
    cell = torch.floor(u)
    return cell, (u - cell).to(torch.float32)


def _corner_gradients(cx: torch.Tensor, cy: torch.Tensor, octs: tuple[Octave, ...]) -> torch.Tensor:
    """Gradients at the four corners of each sample's cell: (4, 2, S, R, *broadcast shape)
    float32, corners a, b, c, d, then x and y components.

    cx, cy: (S, 1, ...) cell indices (float64, exact integers) of S groups of R octaves of one
    spacing (`octs`, group by group). The corners are gathered with one index a sample from a
    table of the lattice nodes the cells span, each node hashed once, unless they spread over
    more nodes than that saves; then every corner is hashed. The hash words are the same
    integers either way.
    """
    k, n_groups, dev = len(octs), cx.shape[0], cx.device
    group = k // n_groups
    table = _grad_table(dev)
    x_lo, x_hi = cx.reshape(n_groups, -1).aminmax(dim=1)
    y_lo, y_hi = cy.reshape(n_groups, -1).aminmax(dim=1)
    bounds = torch.stack([x_lo, x_hi, y_lo, y_hi]).repeat_interleave(group, dim=1).tolist()
    x0, x1, y0, y1 = ([int(v) for v in r] for r in bounds)  # per octave
    width = max(b - a for a, b in zip(x0, x1)) + 2  # every box as wide as the widest
    rows = [b - a + 2 for a, b in zip(y0, y1)]
    nodes = sum(rows) * width
    shape = (n_groups, group) + (1,) * (cx.dim() - 2)  # per octave values, broadcast over samples
    if nodes > 4 * k * max(math.prod(broadcast_shape(cx.shape[2:], cy.shape[2:])), 64):
        ix, iy = cx.to(torch.int64), cy.to(torch.int64)
        keys = torch.tensor([o.key for o in octs], dtype=torch.int64, device=dev).reshape(shape)
        dx, dy = torch.tensor([_CORNER_X, _CORNER_Y], dtype=torch.int64, device=dev).reshape((2, 4) + (1,) * cx.dim())
        idx = torch.bitwise_and(hash2(ix + dx, iy + dy, keys), 15)
        return table.index_select(1, idx.reshape(-1)).reshape((2,) + idx.shape).transpose(0, 1)
    idx = torch.from_numpy(_node_gradient_index(x0, y0, [width] * k, rows, [o.key for o in octs])).to(dev)
    grads = torch.cat([table.index_select(1, idx), torch.zeros((2, width + 1), device=dev)], dim=1)
    corners = torch.cat([grads[:, s:s + nodes] for s in (0, 1, width, width + 1)])  # (8, nodes): a, b, c, d
    # a sample's corner a: node (cx - x0, cy - y0) of its octave's box, the boxes one after the other
    offset = [start * width - y * width - x for start, y, x in zip(_starts(rows), y0, x0)]
    if max(abs(v) for v in (*x0, *x1, *y0, *y1)) * (width + 1) + nodes < 2**52:  # exact in float64
        offset = torch.tensor(offset, dtype=torch.float64, device=dev).reshape(shape)
        flat = (cy * float(width) + offset + cx).to(torch.int64)
    else:
        offset = torch.tensor(offset, dtype=torch.int64, device=dev).reshape(shape)
        flat = cy.to(torch.int64) * width + offset + cx.to(torch.int64)
    return corners.index_select(1, flat.reshape(-1)).reshape((4, 2) + flat.shape)


def _node_gradient_index(x0: list[int], y0: list[int], cols: list[int], rows: list[int], keys: list[int]) -> np.ndarray:
    """Gradient (0..15) of every node of boxes of rows x cols lattice nodes from (x0, y0), row-major,
    the boxes one after the other (int64). Host integer arithmetic (numpy): these tables are small,
    and the same words as `hash2` on the nodes. Each box's columns and rows are hashed once
    (`hash_axis`), its nodes combine the two (`combine_axes`)."""
    key_x, key_y = zip(*(axis_keys(key) for key in keys))
    hx = hash_axis(*_ranges(x0, cols, key_x))
    hy = hash_axis(*_ranges(y0, rows, key_y))
    sizes = [r * c for r, c in zip(rows, cols)]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    local = np.arange(sum(sizes), dtype=np.int64) - np.array(_starts(sizes), dtype=np.int64)[owner]
    ncol = np.array(cols, dtype=np.int64)[owner]
    first_col = np.array(_starts(cols), dtype=np.int64)[owner]
    first_row = np.array(_starts(rows), dtype=np.int64)[owner]
    hx, hy = hx.astype(np.uint32), hy.astype(np.uint32)  # 32-bit words: the same bits, half the memory
    return (combine_axes(hx[first_col + local % ncol], hy[first_row + local // ncol]) & 15).astype(np.int64)


def _starts(counts: list[int]) -> list[int]:
    """Where each of ranges of `counts` elements, one after the other, starts."""
    return [sum(counts[:i]) for i in range(len(counts))]


def _ranges(first: list[int], counts: list[int], keys: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Integers first[k] .. first[k] + counts[k] - 1 for each k, one range after the other, and
    each one's key (int64, 1-D both)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offset = np.array(first, dtype=np.int64) - np.array(_starts(counts), dtype=np.int64)
    return np.arange(sum(counts), dtype=np.int64) + offset[owner], np.array(keys, dtype=np.int64)[owner]


def _fade(t: torch.Tensor) -> torch.Tensor:
    """t * t * t * (t * (t * 6.0 - 15.0) + 10.0), the same operations in place (float32)."""
    inner = (t * 6.0).sub_(15.0).mul_(t).add_(10.0)
    return (t * t).mul_(t).mul_(inner)


def _dfade(t: torch.Tensor) -> torch.Tensor:
    """s * s * 30.0 with s = t * (t - 1.0), in place."""
    s = (t - 1.0).mul_(t)
    return (s * s).mul_(30.0)


def octaves(seed: int, tag: int, largest: float, count: int, lacunarity: float = 2.0) -> list[Octave]:
    """`count` octaves from `largest` metres down by `lacunarity`, each with its own key."""
    return [Octave(largest / lacunarity**i, salt(seed, tag, i)) for i in range(count)]


def fbm(x: torch.Tensor, y: torch.Tensor, octs: list[Octave], gain: float = 0.5) -> torch.Tensor:
    """Fractal sum of octaves, normalised so its amplitude is comparable to one octave (float32)."""
    return fbms(x, y, (octs,), gain)[0]


def fbms(x: torch.Tensor, y: torch.Tensor, octave_sets, gain: float = 0.5) -> list[torch.Tensor]:
    """`fbm` of each list of octaves in `octave_sets` at the same points, every octave evaluated
    in one `octave_noise` call (fewer, larger tensor operations; the same bits)."""
    noise = iter(octave_noise(x, y, [o for octs in octave_sets for o in octs]))
    out = []
    for octs in octave_sets:
        total = None
        amp, norm = 1.0, 0.0
        for _ in octs:
            n = next(noise) * amp
            total = n if total is None else total + n
            norm += amp
            amp *= gain
        out.append(total * (1.0 / norm))
    return out


def ridged(x: torch.Tensor, y: torch.Tensor, octs: list[Octave], gain: float = 0.5,
           sharpness: float = 2.0) -> torch.Tensor:
    """Ridged multifractal in [0, 1]: sharp crests where the noise crosses zero; each octave is
    weighted by the ridge above it, so detail gathers on crests as it does on real ranges."""
    total = None
    weight = None
    amp, norm = 1.0, 0.0
    for n in octave_noise(x, y, octs):
        r = 1.0 - torch.abs(n) * 1.45
        r = torch.clamp(r, 0.0, 1.0)
        r = r * r
        if weight is not None:
            r = r * weight
        weight = torch.clamp(r * sharpness, 0.0, 1.0)
        total = r * amp if total is None else total + r * amp
        norm += amp
        amp *= gain
    return total * (1.0 / norm)


def eroded_fbm(x: torch.Tensor, y: torch.Tensor, octs: list[Octave], gain: float = 0.5,
               erosion: float = 1.0) -> torch.Tensor:
    """fBm whose octaves are damped where the accumulated slope is steep (derivative-weighted fBm,
    after Quilez): smooth valley floors, gullied flanks; an erosion-like look without simulation."""
    total = None
    sx = sy = None
    amp, norm = 1.0, 0.0
    for o, (n, dx, dy) in zip(octs, octave_noise(x, y, octs, with_derivatives=True)):
        # derivatives in metres^-1 scaled to the largest octave, so `erosion` is scale-free
        scale = amp * (octs[0].spacing / o.spacing)
        dx, dy = dx * scale, dy * scale
        sx = dx if sx is None else sx + dx
        sy = dy if sy is None else sy + dy
        damp = 1.0 / (1.0 + (sx * sx + sy * sy) * erosion)
        term = n * damp * amp
        total = term if total is None else total + term
        norm += amp
        amp *= gain
    return total * (1.0 / norm)


def valleys(x: torch.Tensor, y: torch.Tensor, octs: list[Octave], depth: float = 0.45,
            sharpness: float = 2.5) -> torch.Tensor:
    """Dissection factor in (0, 1]: lowest along the zero lines of each octave, which form
    branching valley networks (V-shaped floors, rounded shoulders), highest on the interfluves
    (1 only where every octave is far from a zero line).

    Multiplying the height above a drainage base by it cuts valleys whose floors stay above that
    base and deepen with the relief they cut into, as fluvial incision does. The first octave
    removes up to `depth` of that height, each finer one 0.8 times as much of what is left, so
    finer valleys are tributaries hanging on the flanks of coarser ones. Pure function of position.
    """
    total = None
    d = depth
    for n in octave_noise(x, y, octs):
        t = torch.clamp(torch.abs(n) * sharpness, 0.0, 1.0)
        profile = t * (2.0 - t)  # 0 on the valley line, slope max there, flat at the shoulder
        f = 1.0 - (1.0 - profile) * d
        total = f if total is None else total * f
        d *= 0.8
    return total


def smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    """Hermite step from 0 at e0 to 1 at e1 (float32)."""
    t = torch.clamp((x - e0) * (1.0 / (e1 - e0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def noise2(x, y, seed: int, spacing: float, tag: int = 0):
    """One octave at arbitrary points; numpy in -> numpy out, tensor in -> tensor out.

    x, y: world metres (broadcastable). Returns float32 values roughly in [-0.7, 0.7].
    """
    is_numpy = isinstance(x, np.ndarray) or isinstance(y, np.ndarray)
    device = x.device if isinstance(x, torch.Tensor) else None
    xt = as_tensor(x, torch.float64, device)
    yt = as_tensor(y, torch.float64, device)
    out = gradient_noise(xt, yt, Octave(float(spacing), salt(seed, tag)))
    return out.cpu().numpy() if is_numpy else out
