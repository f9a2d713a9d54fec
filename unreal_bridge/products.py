"""Typed products of a chunk: what a consumer makes from a chunk's files (its tile metadata, its
decoded layers, a renderer's decoded mesh), made once per process and kept in the chunk service's
memory LRU beside the files, so no consumer re-parses tile.json or decodes PNG/TIFF to get back
arrays the process already has.

A `Product` names the formats it is made from and a pure function of the key and those files
(plus, where the worker that generated the chunk can hand the value over directly, a function of
the chunk itself, so a freshly generated chunk is never encoded and decoded on the way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..core.keys import ChunkKey


@dataclass(frozen=True)
class Product:
    """name: the LRU's name for it; formats: the export formats it is made from; make(key, files)
    -> value; nbytes(value) -> bytes it holds (for the LRU's budget); heavy: made in a worker
    thread rather than on the event loop."""

    name: str
    formats: tuple[str, ...]
    make: Callable[[ChunkKey, dict[str, bytes]], Any]
    nbytes: Callable[[Any], int]
    heavy: bool = False


@dataclass(frozen=True)
class TileMeta:
    """A chunk's tile.json as the server uses it: z range (world ENU m), the geometric error (m)
    and resolution (m/px) of its mesh."""

    z_min: float
    z_max: float
    geometric_error: float
    resolution_m: float

    @property
    def z_range(self) -> tuple[float, float]:
        return self.z_min, self.z_max


def _tile(key: ChunkKey, files: dict[str, bytes]) -> TileMeta:
    meta = json.loads(files["tile.json"])
    return TileMeta(float(meta["enu_min"][2]), float(meta["enu_max"][2]), float(meta["geometric_error"]),
                    float(meta["resolution_m"]))


def _layers(key: ChunkKey, files: dict[str, bytes]) -> dict[str, np.ndarray]:
    from ..exporters.sidecars import decode_layers

    return decode_layers(files)


def chunk_layers(chunk) -> dict[str, np.ndarray]:
    """The layers of a generated Chunk, as `decode_layers` gives them back from its sidecars (the
    same arrays: the sidecars store them losslessly): dsm, dem ((n+1, n+1) float32 m), semantic
    ((n, n) uint8), ortho ((n, n, 3) uint8)."""
    return {"dsm": np.asarray(chunk.dsm, np.float32), "dem": np.asarray(chunk.dem, np.float32),
            "semantic": np.asarray(chunk.semantic, np.uint8), "ortho": np.asarray(chunk.ortho, np.uint8)}


TILE = Product("tile", ("glb",), _tile, lambda _: 128)
LAYERS = Product("layers", ("sidecars",), _layers, lambda arrays: sum(a.nbytes for a in arrays.values()), heavy=True)
