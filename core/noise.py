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

from dataclasses import dataclass

import numpy as np
import torch

from .device import as_tensor
from .hashing import hash2, salt

# 16 gradient directions at 22.5 degree steps, unit length (float32 table, gathered by hash).
_ANGLES = np.arange(16) * (2 * np.pi / 16)
_GRAD = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1).astype(np.float32)
_GRAD_CACHE: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _grad_table(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device not in _GRAD_CACHE:
        t = torch.from_numpy(_GRAD).to(device)
        _GRAD_CACHE[device] = (t[:, 0].contiguous(), t[:, 1].contiguous())
    return _GRAD_CACHE[device]


@dataclass(frozen=True)
class Octave:
    """One gradient-noise octave: lattice spacing in metres and a 32-bit key."""

    spacing: float
    key: int


def lattice_coords(pos: torch.Tensor, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """World metres (float64) -> (cell index int64, fraction float32 in [0, 1))."""
    u = pos / spacing
    cell = torch.floor(u)
    frac = (u - cell).to(torch.float32)
    return cell.to(torch.int64), frac


def gradient_noise(x: torch.Tensor, y: torch.Tensor, octave: Octave,
                   with_derivatives: bool = False):
    """Perlin-style gradient noise with a quintic fade, roughly in [-0.7, 0.7].

    x, y: float64 world metres, broadcastable (e.g. (H, 1) and (1, W)).
    Returns value (float32, broadcast shape) or (value, d/dx, d/dy) with derivatives per lattice unit.
    """
    gx_t, gy_t = _grad_table(x.device)
    ix, fx = lattice_coords(x, octave.spacing)
    iy, fy = lattice_coords(y, octave.spacing)
    ix1, iy1 = ix + 1, iy + 1
    fx1, fy1 = fx - 1.0, fy - 1.0

    corner_gradients = _node_gradients(ix, iy, octave.key, gx_t, gy_t)
    if corner_gradients is None:
        def gradients(cx, cy):
            idx = torch.bitwise_and(hash2(cx, cy, octave.key), 15)
            return gx_t[idx], gy_t[idx]
    else:
        gradients = corner_gradients

    def corner(cx, cy, dx, dy):
        gx, gy = gradients(cx, cy)
        return gx, gy, gx * dx + gy * dy

    ga_x, ga_y, a = corner(ix, iy, fx, fy)
    gb_x, gb_y, b = corner(ix1, iy, fx1, fy)
    gc_x, gc_y, c = corner(ix, iy1, fx, fy1)
    gd_x, gd_y, d = corner(ix1, iy1, fx1, fy1)

    u = _fade(fx)
    v = _fade(fy)
    k1 = b - a
    k2 = c - a
    k3 = a - b - c + d
    value = a + u * k1 + v * k2 + (u * v) * k3
    if not with_derivatives:
        return value
    du = _dfade(fx)
    dv = _dfade(fy)
    dx = (ga_x + u * (gb_x - ga_x) + v * (gc_x - ga_x) + (u * v) * (ga_x - gb_x - gc_x + gd_x)
          + du * (k1 + v * k3))
    dy = (ga_y + u * (gb_y - ga_y) + v * (gc_y - ga_y) + (u * v) * (ga_y - gb_y - gc_y + gd_y)
          + dv * (k2 + u * k3))
    return value, dx, dy


def _node_gradients(ix: torch.Tensor, iy: torch.Tensor, key: int, gx_t, gy_t):
    """Hash only the lattice nodes the cells span, then gather per corner.

    Returns a function (cx, cy) -> (gx, gy), or None when the cells spread over so many nodes that
    hashing every corner directly is cheaper. The hash words are the same integers as `hash2` on
    each corner, so the values are bit-identical whichever path runs.
    """
    x0, y0 = int(ix.min()), int(iy.min())
    nx, ny = int(ix.max()) - x0 + 2, int(iy.max()) - y0 + 2
    if nx * ny > 4 * max(ix.numel(), iy.numel(), 64):
        return None
    node_x = torch.arange(nx, device=ix.device, dtype=torch.int64).reshape(1, -1) + x0
    node_y = torch.arange(ny, device=ix.device, dtype=torch.int64).reshape(-1, 1) + y0
    idx = torch.bitwise_and(hash2(node_x, node_y, key), 15)
    node_gx, node_gy = gx_t[idx], gy_t[idx]
    separable = ix.dim() == 2 and iy.dim() == 2 and ix.shape[0] == 1 and iy.shape[1] == 1
    if separable:
        rows0, cols0 = (iy - y0).reshape(-1), (ix - x0).reshape(-1)
        rows = {False: rows0, True: rows0 + 1}
        cols = {False: cols0, True: cols0 + 1}

        def gradients(cx, cy):
            r, c = rows[cy is not iy], cols[cx is not ix]
            return (node_gx.index_select(0, r).index_select(1, c),
                    node_gy.index_select(0, r).index_select(1, c))
        return gradients

    shape = torch.broadcast_shapes(ix.shape, iy.shape)
    flat = ((iy - y0) * nx + (ix - x0)).expand(shape).reshape(-1)
    flat_gx, flat_gy = node_gx.reshape(-1), node_gy.reshape(-1)
    offsets = {(False, False): 0, (True, False): 1, (False, True): nx, (True, True): nx + 1}

    def gradients(cx, cy):
        i = flat + offsets[(cx is not ix, cy is not iy)]
        return flat_gx.index_select(0, i).reshape(shape), flat_gy.index_select(0, i).reshape(shape)
    return gradients


def _fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _dfade(t: torch.Tensor) -> torch.Tensor:
    s = t * (t - 1.0)
    return s * s * 30.0


def octaves(seed: int, tag: int, largest: float, count: int, lacunarity: float = 2.0) -> list[Octave]:
    """`count` octaves from `largest` metres down by `lacunarity`, each with its own key."""
    return [Octave(largest / lacunarity**i, salt(seed, tag, i)) for i in range(count)]


def fbm(x: torch.Tensor, y: torch.Tensor, octs: list[Octave], gain: float = 0.5) -> torch.Tensor:
    """Fractal sum of octaves, normalised so its amplitude is comparable to one octave (float32)."""
    total = None
    amp, norm = 1.0, 0.0
    for o in octs:
        n = gradient_noise(x, y, o) * amp
        total = n if total is None else total + n
        norm += amp
        amp *= gain
    return total * (1.0 / norm)


def ridged(x: torch.Tensor, y: torch.Tensor, octs: list[Octave], gain: float = 0.5,
           sharpness: float = 2.0) -> torch.Tensor:
    """Ridged multifractal in [0, 1]: sharp crests where the noise crosses zero; each octave is
    weighted by the ridge above it, so detail gathers on crests as it does on real ranges."""
    total = None
    weight = None
    amp, norm = 1.0, 0.0
    for o in octs:
        r = 1.0 - torch.abs(gradient_noise(x, y, o)) * 1.45
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
    for o in octs:
        n, dx, dy = gradient_noise(x, y, o, with_derivatives=True)
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
    for o in octs:
        t = torch.clamp(torch.abs(gradient_noise(x, y, o)) * sharpness, 0.0, 1.0)
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
