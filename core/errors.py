"""Error hierarchy: one root class; subclasses also inherit the matching built-in error."""


class WorldstreamError(Exception):
    """Root of every error raised on purpose by worldstream."""


class SpecError(WorldstreamError, ValueError):
    """A WorldSpec (or its JSON) is invalid."""


class ChunkKeyError(WorldstreamError, ValueError):
    """A chunk key is out of range or malformed."""


class GeneratorError(WorldstreamError, LookupError):
    """An unknown generator was named, or its parameters are invalid."""
