"""Generator registry: a generator turns (WorldSpec, ChunkKey) into a Chunk, deterministically."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from ..chunk import Chunk
from ..errors import GeneratorError
from ..keys import ChunkKey
from ..spec import WorldSpec


class Generator(Protocol):
    spec: WorldSpec

    def chunk(self, key: ChunkKey) -> Chunk: ...

    def heights_at(self, x: np.ndarray, y: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]: ...


_REGISTRY: dict[str, Callable[[WorldSpec], Generator]] = {}


def register(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def _import_all() -> None:
    from . import learned, procedural  # noqa: F401  (they register themselves)


def create(spec: WorldSpec) -> Generator:
    from . import procedural  # noqa: F401  (registers itself)
    if spec.generator == "learned":
        from . import learned  # noqa: F401  (imports diffusers: only when asked for)
    try:
        factory = _REGISTRY[spec.generator]
    except KeyError:
        raise GeneratorError(f"unknown generator {spec.generator!r}; available: {sorted(_REGISTRY)}") from None
    return factory(spec)


def available() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)
