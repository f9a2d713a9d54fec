"""World: the public entry point. `World(spec).chunk(key)` answers "what is here?" for any chunk."""

from __future__ import annotations

import threading

import numpy as np
from cachetools import LRUCache

from .chunk import Chunk
from .generators import create
from .keys import ChunkKey
from .spec import WorldSpec


class World:
    """A deterministic, unbounded world. Chunks are cached in a small LRU (by count). `chunk` may
    be called from several threads at once (render.WorldView builds chunks in worker threads):
    the cache is locked, generation is not (two threads asking for one new key both build it,
    to the same bytes)."""

    def __init__(self, spec: WorldSpec, cache_chunks: int = 16):
        self.spec = spec
        self.generator = create(spec)
        self._cache: LRUCache | None = LRUCache(maxsize=cache_chunks) if cache_chunks > 0 else None  # key -> Chunk
        self._cache_lock = threading.Lock()

    def chunk(self, key: ChunkKey) -> Chunk:
        if self._cache is None:
            return self.generator.chunk(key)
        with self._cache_lock:
            hit = self._cache.get(key)  # marks it recently used
        if hit is not None:
            return hit
        c = self.generator.chunk(key)
        with self._cache_lock:
            self._cache[key] = c  # the least recently used chunk goes first
        return c

    def height_at(self, x, y, level: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ground, surface) heights in metres at world points (x, y), as the level's chunks and
        meshes give them (bilinear between samples); default level: the finest."""
        level = self.spec.levels - 1 if level is None else level
        return self.generator.heights_at(x, y, level)

    def trees_at(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(crown height above the ground in m, tree id) at world points; zeros where no tree or
        for generators without trees."""
        if hasattr(self.generator, "trees_at"):
            return self.generator.trees_at(x, y)
        shape = np.shape(x)
        return np.zeros(shape, np.float32), np.zeros(shape, np.uint32)
