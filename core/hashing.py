"""Integer coordinate hashing on int64 tensors (or numpy int64 arrays, or Python ints).

Randomness in worldstream comes only from hashing integer coordinates, never from RNG state, so any
sample can be evaluated alone, in any order, in any process. Every intermediate value stays below
2**63 (32-bit words times constants below 2**27), so no operation ever overflows int64 and the
results are identical on every backend, for every tensor shape and for numpy arrays and ints.
"""

from __future__ import annotations

import torch

from . import kernels

M32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # odd multiplier from the well-known 32-bit integer finaliser


def mix32(h):
    """Avalanche 32-bit words held in int64 (values in [0, 2**32)): a tensor, numpy array or int."""
    h = (((h >> 16) ^ h) * _MUL) & M32
    h = (((h >> 16) ^ h) * _MUL) & M32
    return (h >> 16) ^ h


def salt(seed: int, *tags: int) -> int:
    """A 32-bit constant derived from the world seed and integer tags (pure Python, exact)."""
    h = seed & M32
    for t in (seed >> 32, *tags):
        h = mix32(h ^ (t & M32) ^ 0x9E3779B9)
    return h


def hash_axis(coord, key):
    """Hash signed int64 coordinates (any magnitude up to 2**62; tensor or numpy array) into
    32-bit words under `key` (an int, or keys broadcastable with the coordinates)."""
    lo = coord & M32
    hi = (coord >> 32) & M32
    return mix32(mix32(lo ^ key) ^ hi)


def hash2(ix: torch.Tensor, iy: torch.Tensor, key: int | torch.Tensor) -> torch.Tensor:
    """Hash a pair of int64 coordinate tensors (broadcastable) into 32-bit words.

    key: a 32-bit word, or an int64 tensor of them broadcastable with the coordinates (one hash
    under each key, the same words as separate calls). The axes are hashed separately, so
    broadcast (H, 1) x (1, W) inputs cost two 1-D passes and one full-size combine.
    """
    if (isinstance(key, int) and 0 <= key <= M32 and isinstance(ix, torch.Tensor) and isinstance(iy, torch.Tensor)
            and ix.dtype == iy.dtype == torch.int64 and kernels.available(ix, iy)):
        return kernels.hash2(ix, iy, key)
    key_x, key_y = axis_keys(key)
    return combine_axes(hash_axis(ix, key_x), hash_axis(iy, key_y))


_Y_SALT = 0x68E31DA4


def axis_keys(key):
    """The keys `hash2` hashes x and y coordinates under (of an int key, or a tensor of them)."""
    return key, mix32(key ^ _Y_SALT)


def combine_axes(hx, hy):
    """`hash2`'s words from the hashes of the x and y coordinates (`hash_axis` under `axis_keys`;
    tensors or numpy arrays)."""
    return mix32(hx ^ ((hy * 0x2C1B3C6) & M32))


def unit_float(h: torch.Tensor) -> torch.Tensor:
    """32-bit words -> float32 in [0, 1) (24 significant bits, exact)."""
    return (h >> 8).to(torch.float32) * (1.0 / 16777216.0)
