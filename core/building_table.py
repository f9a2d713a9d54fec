"""BuildingTable: a chunk's buildings as columns, made into `Building` tuples only when read.

A coarse chunk lists every building whose footprint meets it (a city's level-0 chunk: about
100 000), but only the sidecars' annotations and the meshes of levels fine enough for buildings
read them. Building the tuples cost 0.2 s and about 80 MB for such a chunk, which a streaming
server that sends only GLBs of coarse levels would pay for nothing; the columns cost a fifth
of the memory and no Python objects.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator, Sequence, overload

import numpy as np

from .settlements import ROOFS, TYPES, Building


class BuildingTable(Sequence[Building]):
    """An immutable sequence of Building, stored as numpy columns of N buildings:
    ids (N,) int64, footprints (N, 4, 2) float64 (corners counter-clockwise), base / roof / ridge
    (N,) float32, floors (N,) int64, block and lot (N, 2) int64, roof_kind and type (N,) int64
    codes into settlements.ROOFS / TYPES. Reads as the tuple of Building it stands for (the same
    values, equality and repr); the tuples are made on first use and kept."""

    __slots__ = ("_columns", "_rows")

    def __init__(self, ids: np.ndarray, footprints: np.ndarray, base: np.ndarray, roof: np.ndarray,
                 floors: np.ndarray, block: np.ndarray, lot: np.ndarray, ridge: np.ndarray,
                 roof_kind: np.ndarray, type: np.ndarray):
        columns = (ids, footprints.reshape(-1, 4, 2), base, roof, floors, block.reshape(-1, 2), lot.reshape(-1, 2),
                   ridge, roof_kind, type)
        n = len(ids)
        for c in columns:
            if len(c) != n:
                raise ValueError(f"building columns must all have {n} rows, got {[len(c) for c in columns]}")
            c.setflags(write=False)
        self._columns = columns
        self._rows: tuple[Building, ...] | None = None

    def rows(self) -> tuple[Building, ...]:
        """The buildings as a tuple (made once)."""
        if self._rows is None:
            ids, footprints, base, roof, floors, block, lot, ridge, roof_kind, type_ = self._columns
            xy = iter(footprints.reshape(-1).tolist())  # flat: a nested tolist is ~30x slower
            corners = zip(*[zip(xy, xy)] * 4)
            pairs = lambda a: zip(a[:, 0].tolist(), a[:, 1].tolist())  # noqa: E731
            fields = zip(ids.tolist(), corners, base.tolist(), roof.tolist(), floors.tolist(), pairs(block),
                         pairs(lot), ridge.tolist(), map(ROOFS.__getitem__, roof_kind.tolist()),
                         map(TYPES.__getitem__, type_.tolist()))  # positional: Building's order
            with gc_paused():
                self._rows = tuple(map(Building._make, fields))
        return self._rows

    def __len__(self) -> int:
        return len(self._columns[0])

    @overload
    def __getitem__(self, index: int) -> Building: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Building, ...]: ...

    def __getitem__(self, index):
        return self.rows()[index]

    def __iter__(self) -> Iterator[Building]:
        return iter(self.rows())

    def __eq__(self, other) -> bool:
        if isinstance(other, (BuildingTable, tuple)):
            return self.rows() == tuple(other)
        return NotImplemented

    __hash__ = None  # like a list's: equal to a tuple, which hashes, yet not one

    def __repr__(self) -> str:
        return repr(self.rows())

    def __reduce__(self):
        return BuildingTable, self._columns


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (if it runs) while a chunk's object lists are built: it
    would scan its young objects every 700 new tuples, two thirds of the time of 100 000 buildings."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()
