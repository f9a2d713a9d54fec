"""The world core: spec, keys, frames, position-hashed noise, generators and the World API."""

from .biomes import CLASS_IDS, CLASSES, PALETTE
from .chunk import Chunk
from .errors import ChunkKeyError, GeneratorError, SpecError, WorldstreamError
from .keys import ChunkKey, keys_in_radius
from .settlements import Building
from .spec import GeoOrigin, WorldSpec
from .world import World

__all__ = ["CLASSES", "CLASS_IDS", "PALETTE", "Building", "Chunk", "ChunkKey", "ChunkKeyError", "GeneratorError",
           "GeoOrigin", "SpecError", "World", "WorldSpec", "WorldstreamError", "keys_in_radius"]
