"""The world core: spec, keys, frames, position-hashed noise, generators and the World API.

The names that need torch (the generators, the World, chunk contents) are imported on first use,
so a process that only names keys and specs (the streaming server, whose workers generate) does
not load torch.
"""

from importlib import import_module

from .errors import ChunkKeyError, GeneratorError, SpecError, WorldstreamError
from .keys import ChunkKey, keys_in_radius
from .spec import GeoOrigin, WorldSpec

_LAZY = {"CLASSES": "biomes", "CLASS_IDS": "biomes", "PALETTE": "biomes", "Chunk": "chunk", "Building": "settlements",
         "World": "world"}

__all__ = ["CLASSES", "CLASS_IDS", "PALETTE", "Building", "Chunk", "ChunkKey", "ChunkKeyError", "GeneratorError",
           "GeoOrigin", "SpecError", "World", "WorldSpec", "WorldstreamError", "keys_in_radius"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
