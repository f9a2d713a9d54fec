"""The contour twist: a smooth bijection of the plane that turns the street grid toward the contours.

Vortices sit on the nodes n = (i, j) of a square lattice of L = TWIST_SPACING metres. Vortex n
turns the points around its node c_n by an angle that falls from phi_n at the node to 0 at L:

    T_n(x) = c_n + R(theta) (x - c_n),   tan(theta / 2) = tau_n p(r),   p(r) = (1 - r^2 / L^2)^2 (r < L),

with R(theta) built from its half-angle tangent t (cos = (1 - t^2) / (1 + t^2), sin = 2t / (1 + t^2)),
so only + - * / are used (the noise's rule: no transcendental functions per point). A vortex keeps
every point's distance to its node, so it is one-to-one with Jacobian determinant 1, and its inverse
turns back by -theta. Its shear, r dtheta/dr, stays below 4 tau / (1 + tau^2) <= 0.83 for
|phi_n| <= 45 deg, so street spacing changes by 0.66-1.5 times at most within one vortex.

The nodes fall into four classes by the parity of (i, j): the discs of one class (2L apart, radius
L) do not overlap, so a class's vortices together are one bijection, and the twist applies the
classes in turn: T = T_3 o T_2 o T_1 o T_0. Every point lies within L / sqrt(2) of a node. At a
node only its own vortex acts (every other node is L or more away, where p and p' are 0), so the
street grid there is the base grid turned by -phi_n: `node_turn` picks phi_n so that one street
family runs along the contours around the node. Each point's twist reads at most four vortices, so
it is a pure function of position (seamless, order-free); where every tau is 0 (flat land) the
point is returned unchanged, bit for bit.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import kernels

TWIST_SPACING = 512.0  # metres between vortices (a power of two: node positions are exact)
CLASSES = ((0, 0), (1, 0), (0, 1), (1, 1))  # node index parities, in the order they are applied
STENCIL = 5  # relief samples per side around a node (L / 4 apart: +-L / 2)
SLOPE_FLAT, SLOPE_FULL = 0.03, 0.08  # coherent slope (rise per metre) from which streets start to turn, and fully
TAU_FULL = 0.2679491924311227  # tan(15 deg): turns up to 30 deg are made in full; beyond, they fade to
TAU_EDGE = 0.41421356237309503  # 0 at tan(22.5 deg) (45 deg), where the other street family is as near
TauOf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def class_nodes(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (int64) of the class-k node nearest to world points (x, y float64): the only
    class-k vortex that can move them."""
    ox, oy = CLASSES[k]
    if x.dtype == y.dtype == torch.float64 and x.shape == y.shape and kernels.available(x, y):
        return kernels.twist_class_nodes(x, y, TWIST_SPACING, ox, oy)
    i = torch.floor((x * (1.0 / TWIST_SPACING) - ox) * 0.5 + 0.5).to(torch.int64) * 2 + ox
    j = torch.floor((y * (1.0 / TWIST_SPACING) - oy) * 0.5 + 0.5).to(torch.int64) * 2 + oy
    return i, j


def _step(x, y, i, j, tau, jacobian: bool):
    """One class's vortex at points (x, y) around nodes (i, j) with half-angle tangents tau (float64,
    broadcast); the points, and with `jacobian` the step's Jacobian (a, b, c, d) (row-major)."""
    L = TWIST_SPACING
    if _compiled(x, y, i, j, tau):
        return kernels.twist_step(x, y, i, j, tau, L, jacobian)
    cx, cy = i.to(torch.float64) * L, j.to(torch.float64) * L
    dx, dy = x - cx, y - cy
    inside = torch.clamp(1.0 - (dx * dx + dy * dy) * (1.0 / (L * L)), 0.0, None)
    t = tau * (inside * inside)
    t2 = t * t
    den = 1.0 + t2
    cs, sn = (1.0 - t2) / den, (t + t) / den
    still = t == 0
    nx = torch.where(still, x, cx + (cs * dx - sn * dy))
    ny = torch.where(still, y, cy + (sn * dx + cs * dy))
    if not jacobian:
        return nx, ny
    q = tau * inside * (-8.0 / (L * L)) / den  # grad theta = q (dx, dy)
    m11, m12, m21, m22 = 1.0 - q * dx * dy, -q * dy * dy, q * dx * dx, 1.0 + q * dx * dy
    return nx, ny, (cs * m11 - sn * m21, cs * m12 - sn * m22, sn * m11 + cs * m21, sn * m12 + cs * m22)


def _compiled(x, y, i, j, tau) -> bool:
    """Whether `_step` can take the compiled kernel: CPU tensors of one shape and the expected dtypes."""
    return (x.dtype == y.dtype == tau.dtype == torch.float64 and i.dtype == j.dtype == torch.int64
            and x.shape == y.shape == i.shape == j.shape == tau.shape and kernels.available(x, y, i, j, tau))


def twist(x: torch.Tensor, y: torch.Tensor, tau_of: TauOf, jacobian: bool = False):
    """T(x, y) (float64, broadcast shape), and with `jacobian` also its Jacobian (a, b, c, d)
    (dTx/dx, dTx/dy, dTy/dx, dTy/dy; float64). tau_of(i, j) gives the vortices' tau (float64)."""
    x, y = torch.broadcast_tensors(x, y)
    jac = None
    for k in range(len(CLASSES)):
        i, j = class_nodes(x, y, k)
        tau = tau_of(i, j)
        if not bool((tau != 0).any()):
            continue
        if not jacobian:
            x, y = _step(x, y, i, j, tau, False)
            continue
        x, y, (a, b, c, d) = _step(x, y, i, j, tau, True)
        jac = (a, b, c, d) if jac is None else (a * jac[0] + b * jac[2], a * jac[1] + b * jac[3],
                                                c * jac[0] + d * jac[2], c * jac[1] + d * jac[3])
    if not jacobian:
        return x, y
    if jac is None:
        one, zero = torch.ones_like(x), torch.zeros_like(x)
        jac = (one, zero, zero, one)
    return x, y, jac


def untwist(x: torch.Tensor, y: torch.Tensor, tau_of: TauOf) -> tuple[torch.Tensor, torch.Tensor]:
    """T^-1(x, y) (float64): the classes in reverse order, each turned back (a vortex keeps the
    distance to its node, so the inverse reads the same vortex); exact up to rounding (~1e-12 m)."""
    x, y = torch.broadcast_tensors(x, y)
    for k in reversed(range(len(CLASSES))):
        i, j = class_nodes(x, y, k)
        tau = tau_of(i, j)
        if bool((tau != 0).any()):
            x, y = _step(x, y, i, j, -tau, False)
    return x, y


def _half_angle(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of half the angle of unit complex numbers with angles in (-180, 180] deg."""
    n = torch.sqrt((1.0 + re) * (1.0 + re) + im * im)
    ok = n > 1e-12
    n = torch.where(ok, n, torch.ones_like(n))
    return torch.where(ok, (1.0 + re) / n, torch.zeros_like(n)), torch.where(ok, im / n, torch.ones_like(n))


def _fourth_power(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + iy)^4: directions in quadrupled angles (directions 90 deg apart are one)."""
    re, im = x * x - y * y, 2.0 * x * y
    return re * re - im * im, 2.0 * re * im


def stencil_axes(i0: int, i1: int, j0: int, j1: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable grid of relief samples (xs (W,), ys (H,) float64 m) that the stencils of the
    nodes i0..i1 x j0..j1 share: L / (STENCIL - 1) apart, +-L / 2 around the outer nodes."""
    h = TWIST_SPACING / (STENCIL - 1)
    half = (STENCIL - 1) // 2
    xs = torch.arange((STENCIL - 1) * i0 - half, (STENCIL - 1) * i1 + half + 1, device=device).to(torch.float64) * h
    ys = torch.arange((STENCIL - 1) * j0 - half, (STENCIL - 1) * j1 + half + 1, device=device).to(torch.float64) * h
    return xs, ys


def box_turns(z: torch.Tensor, i0: int, i1: int, j0: int, j1: int,
              axes: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]) -> torch.Tensor:
    """tau (float64, (rows * cols,), row by row) of the nodes i0..i1 x j0..j1 from the relief z
    (float32 m, (H, W)) on their `stencil_axes`: the same values as `node_turn` node by node."""
    i = torch.arange(i0, i1 + 1, dtype=torch.int64, device=z.device).repeat(j1 - j0 + 1)
    j = torch.arange(j0, j1 + 1, dtype=torch.int64, device=z.device).repeat_interleave(i1 - i0 + 1)
    return node_turn(i, j, lambda x, y: z, axes, box=True)


def node_turn(i: torch.Tensor, j: torch.Tensor, height: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              axes: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]], box: bool = False) -> torch.Tensor:
    """tau (float64, the half-angle tangent of phi) of nodes (i, j) (1-D int64).

    The contour direction around a node, modulo 90 deg (a grid whose streets run along the contours
    and down the fall line fits either way), is the gradient structure tensor of the relief in
    quadrupled angles: z = sum |g|^2 e^(4i psi) over
    the central differences g of `height` (float32 m at float64 points) on a STENCIL x STENCIL
    grid L / 4 apart; its coherent slope sqrt(|z| / 9) fades the turn in from SLOPE_FLAT to
    SLOPE_FULL (on flat land, or where slopes of all directions cancel, the base grid stays).
    `axes(x, y)` gives the base grid's street axes there (ax, ay, bx, by: world vectors of u and v);
    phi turns the street axis nearer the contour or the fall line onto it; turns beyond 30 deg fade
    to 0 at 45 deg."""
    L = TWIST_SPACING
    n = i.numel()
    cx, cy = i.to(torch.float64) * L, j.to(torch.float64) * L
    h = L / (STENCIL - 1)
    half = (STENCIL - 1) // 2
    if box:  # the nodes are a whole box, row by row: one separable grid of relief samples serves all stencils
        xs, ys = stencil_axes(int(i.min()), int(i.max()), int(j.min()), int(j.max()), i.device)
        z = height(xs.reshape(1, -1), ys.reshape(-1, 1)).to(torch.float64)
        gxs = (z[1:-1, 2:] - z[1:-1, :-2]) * (0.5 / h)  # at the grid's inner samples
        gys = (z[2:, 1:-1] - z[:-2, 1:-1]) * (0.5 / h)
        k = STENCIL - 2
        gx = gxs.unfold(0, k, STENCIL - 1).unfold(1, k, STENCIL - 1).reshape(n, k, k)
        gy = gys.unfold(0, k, STENCIL - 1).unfold(1, k, STENCIL - 1).reshape(n, k, k)
    else:
        offs = (torch.arange(STENCIL, dtype=torch.float64, device=i.device) - half) * h
        px = (cx.reshape(-1, 1, 1) + offs.reshape(1, 1, -1)).expand(n, STENCIL, STENCIL)
        py = (cy.reshape(-1, 1, 1) + offs.reshape(1, -1, 1)).expand(n, STENCIL, STENCIL)
        z = height(px.reshape(-1), py.reshape(-1)).to(torch.float64).reshape(n, STENCIL, STENCIL)
        gx = (z[:, 1:-1, 2:] - z[:, 1:-1, :-2]) * (0.5 / h)
        gy = (z[:, 2:, 1:-1] - z[:, :-2, 1:-1]) * (0.5 / h)
    g2 = gx * gx + gy * gy
    g4r, g4i = _fourth_power(gx, gy)
    safe = torch.where(g2 > 0, g2, torch.ones_like(g2))
    zr, zi = (g4r / safe).sum((1, 2)), (g4i / safe).sum((1, 2))  # sum |g|^2 e^(4i psi)
    mag = torch.sqrt(zr * zr + zi * zi)
    slope = torch.sqrt(mag * (1.0 / ((STENCIL - 2) ** 2)))
    s = torch.clamp((slope - SLOPE_FLAT) * (1.0 / (SLOPE_FULL - SLOPE_FLAT)), 0.0, 1.0)
    weight = s * s * (3.0 - 2.0 * s)
    has = mag > 0
    safe_mag = torch.where(has, mag, torch.ones_like(mag))
    # e^(-4i psi): the contour and the gradient (90 deg apart) are one direction in quadrupled angles
    cr, ci = torch.where(has, zr / safe_mag, torch.ones_like(mag)), torch.where(has, -zi / safe_mag, torch.zeros_like(mag))
    ax, ay, bx, by = axes(cx, cy)
    best_r, best_i = None, None
    for vx, vy in ((ax, ay), (bx, by)):
        ar, ai = _fourth_power(vx, vy)
        norm = torch.sqrt(torch.where(ar * ar + ai * ai > 0, ar * ar + ai * ai, torch.ones_like(ar)))
        ar, ai = ar / norm, ai / norm
        rr, ri = ar * cr - ai * ci, ar * ci + ai * cr  # e^(4i (alpha - psi))
        if best_r is None:
            best_r, best_i = rr, ri
        else:
            nearer = rr > best_r
            best_r, best_i = torch.where(nearer, rr, best_r), torch.where(nearer, ri, best_i)
    c2, s2 = _half_angle(best_r, best_i)
    c1, s1 = _half_angle(c2, s2)
    tau = s1 / (1.0 + c1)
    # near +-45 deg neighbouring nodes may turn opposite ways (either family fits): a full turn there
    # would shear the grid between them and align nothing
    fade = torch.clamp((TAU_EDGE - torch.abs(tau)) * (1.0 / (TAU_EDGE - TAU_FULL)), 0.0, 1.0)
    return weight * fade * tau
