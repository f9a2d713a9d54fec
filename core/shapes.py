"""Shape arithmetic for the generators, in plain Python.

`torch.broadcast_shapes` runs torch's reference implementation, whose first call imports sympy
(measured: 0.44 s and 34 MB of resident memory in every worker process that calls it).
"""

from __future__ import annotations

from typing import Sequence


def broadcast_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """The shape that arrays of shapes a and b broadcast to (numpy / torch rules); ValueError if
    they do not broadcast."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for p, q in zip(a, b):
        if p != q and p != 1 and q != 1:
            raise ValueError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast (sizes {p} and {q})")
        out.append(q if p == 1 else p)
    return tuple(out)
