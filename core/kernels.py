"""The compiled per-point kernels (core/kernels.c), for CPU tensors, and whether they are in use.

`pip install` builds them (setup.py) with the platform's C compiler; where that failed, or
``WORLDSTREAM_KERNELS=0`` is set, or the tensors live on another device, `available` says no and
the callers (noise, lattice.at_points, twist, hashing.hash2) take their torch paths, which give
the same bits: each kernel repeats its torch path's operations in the same order, built without
fused multiply-adds (tests/core/test_kernels.py checks them against each other). A library
built from another version of kernels.c (its INTERFACE differs) is not used: reinstall.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import warnings

import numpy as np
import torch

from . import hashing
from .shapes import broadcast_shape


INTERFACE = 1  # kernels.c's WORLDSTREAM_KERNELS_INTERFACE: the functions and arguments declared below


def open_library(path: str) -> ctypes.CDLL:
    """The kernels' shared library at `path`, with its functions' argument types declared.
    Raises OSError where it cannot be loaded or was built from another interface version."""
    lib = ctypes.CDLL(path)
    try:
        built = lib.worldstream_kernels_interface()
    except AttributeError:
        built = 0
    if built != INTERFACE:
        raise OSError(f"{path} implements kernel interface {built}, this code needs {INTERFACE}")
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
    lib.noise_points.argtypes = [i64, ptr, ptr, i32, ptr, ptr, ptr, ptr, ptr, ptr, ptr]
    lib.noise_points.restype = ctypes.c_int
    lib.catmull_rom_points.argtypes = [i64, i32, ptr, ptr, ptr, ptr, ptr]
    lib.catmull_rom_points.restype = None
    lib.noise_grid.argtypes = [i64, ptr, i64, ptr, ctypes.c_double, ctypes.c_uint32, ctypes.c_uint32, ptr, ptr]
    lib.noise_grid.restype = ctypes.c_int
    lib.hash2_points.argtypes = [i64, ptr, ptr, ctypes.c_uint32, ctypes.c_uint32, ptr]
    lib.hash2_points.restype = None
    lib.twist_class_nodes.argtypes = [i64, ptr, ptr, ctypes.c_double, i64, i64, ptr, ptr]
    lib.twist_class_nodes.restype = None
    lib.twist_step.argtypes = [i64, ptr, ptr, ptr, ptr, ptr, ctypes.c_double, ptr, ptr, ptr]
    lib.twist_step.restype = None
    return lib


def built_library() -> str | None:
    """Where `pip install` put the compiled kernels, or None."""
    spec = importlib.util.find_spec(__package__ + "._kernels")
    return None if spec is None else spec.origin


def _load() -> ctypes.CDLL | None:
    if os.environ.get("WORLDSTREAM_KERNELS", "1") == "0":
        return None
    path = built_library()
    if path is None:
        return None
    try:
        return open_library(path)
    except OSError as exc:  # e.g. a library left by an older install: the torch paths give the same bits
        warnings.warn(f"worldstream's compiled kernels are not used ({exc}); reinstall (pip install -e .) "
                      "to rebuild them", RuntimeWarning, stacklevel=2)
        return None


LIBRARY = _load()


def available(*tensors: torch.Tensor) -> bool:
    """Whether the kernels are built and enabled, and every tensor is on the CPU."""
    return LIBRARY is not None and all(t.device.type == "cpu" for t in tensors)


def _address(t: torch.Tensor) -> int:
    return t.data_ptr()


def noise_points(x: torch.Tensor, y: torch.Tensor, spacings: list[float], keys: list[int], grad: torch.Tensor,
                 with_derivatives: bool) -> tuple[torch.Tensor, ...]:
    """Gradient noise of K octaves at N points (noise._noise_stack's operations).

    x, y: (N,) float64 world metres; spacings, keys: the K octaves; grad: (2, 16) float32, the
    gradient table. Returns (value,) or (value, d/dx, d/dy), each (K, N) float32.
    """
    n, k = x.numel(), len(keys)
    if n == 0:
        return tuple(torch.empty((k, 0), dtype=torch.float32) for _ in range(3 if with_derivatives else 1))
    x, y = x.contiguous(), y.contiguous()
    spacing = torch.tensor(spacings, dtype=torch.float64)
    key_x = np.array(keys, dtype=np.uint32)
    key_y = np.array([hashing.axis_keys(key)[1] for key in keys], dtype=np.uint32)
    table = grad.contiguous()
    out = tuple(torch.empty((k, n), dtype=torch.float32) for _ in range(3 if with_derivatives else 1))
    dx, dy = (_address(out[1]), _address(out[2])) if with_derivatives else (None, None)
    if LIBRARY.noise_points(n, _address(x), _address(y), k, _address(spacing), key_x.ctypes.data,
                            key_y.ctypes.data, _address(table), _address(out[0]), dx, dy) != 0:
        raise MemoryError(f"noise_points: no memory for the cells of {n} points")
    return out


def noise_grid(xs: torch.Tensor, ys: torch.Tensor, spacing: float, key: int, grad: torch.Tensor) -> torch.Tensor | None:
    """One gradient-noise octave on the separable grid of columns xs (W,) and rows ys (H,) (float64
    metres): (H, W) float32 (noise._grid_octave's operations), or None where the grid spans over
    4 lattice nodes a sample (as noise._grid_octave)."""
    xs, ys = xs.contiguous(), ys.contiguous()
    out = torch.empty((ys.numel(), xs.numel()), dtype=torch.float32)
    status = LIBRARY.noise_grid(xs.numel(), _address(xs), ys.numel(), _address(ys), spacing, key, hashing.axis_keys(key)[1],
                                _address(grad.contiguous()), _address(out))
    if status < 0:
        raise MemoryError(f"noise_grid: no memory for a {ys.numel()} x {xs.numel()} grid")
    return None if status else out


def catmull_rom_points(table: torch.Tensor, node: torch.Tensor, wx: tuple[torch.Tensor, ...],
                       wy: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """lattice.at_points' interpolation of F fields at N points.

    table: (F, M) float32 node values; node: (4, 4, N) int64 indices into a table row, [column,
    row, point]; wx, wy: the 4 Catmull-Rom weights along x and y, (N,) float32 each.
    Returns (F, N) float32.
    """
    node = node.contiguous()
    n, nf = node.shape[-1], table.shape[0]
    nodes = table.t().contiguous()  # (M, F): a node's fields side by side
    wx, wy = torch.stack(wx), torch.stack(wy)
    out = torch.empty((n, nf), dtype=torch.float32)
    LIBRARY.catmull_rom_points(n, nf, _address(nodes), _address(node), _address(wx), _address(wy), _address(out))
    return out.t().contiguous()


def twist_class_nodes(x: torch.Tensor, y: torch.Tensor, spacing: float, ox: int, oy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """twist.class_nodes: node indices (int64, x's shape) of the class with parities (ox, oy) nearest
    to the points x, y (float64, one shape)."""
    x, y = x.contiguous(), y.contiguous()
    i, j = torch.empty(x.shape, dtype=torch.int64), torch.empty(x.shape, dtype=torch.int64)
    LIBRARY.twist_class_nodes(x.numel(), _address(x), _address(y), 1.0 / spacing, ox, oy, _address(i), _address(j))
    return i, j


def twist_step(x: torch.Tensor, y: torch.Tensor, i: torch.Tensor, j: torch.Tensor, tau: torch.Tensor, spacing: float,
               jacobian: bool):
    """twist._step at points x, y (float64), nodes i, j (int64) and tau (float64), all one shape:
    the moved points, and with `jacobian` the step's Jacobian (a, b, c, d)."""
    x, y, i, j, tau = (t.contiguous() for t in (x, y, i, j, tau))
    nx, ny = torch.empty_like(x), torch.empty_like(y)
    jac = torch.empty((4,) + x.shape, dtype=torch.float64) if jacobian else None
    LIBRARY.twist_step(x.numel(), _address(x), _address(y), _address(i), _address(j), _address(tau), spacing,
                       _address(nx), _address(ny), None if jac is None else _address(jac))
    return (nx, ny, tuple(jac.unbind(0))) if jacobian else (nx, ny)


def hash2(ix: torch.Tensor, iy: torch.Tensor, key: int) -> torch.Tensor:
    """hashing.hash2 of int64 coordinates (broadcastable) under one 32-bit key: int64 words."""
    shape = broadcast_shape(ix.shape, iy.shape)  # (torch.broadcast_shapes imports sympy: 33 MB)
    ix, iy = ix.expand(shape).contiguous(), iy.expand(shape).contiguous()
    out = torch.empty(shape, dtype=torch.int64)
    LIBRARY.hash2_points(out.numel(), _address(ix), _address(iy), key, hashing.axis_keys(key)[1], _address(out))
    return out
