"""WorldSpec: the immutable, validated description of a world; round-trips to JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import SpecError

MAX_SEED = 2**63 - 1
TREE_OBJECTS_MAX_RESOLUTION = 2.0  # m/px: levels this fine list their trees; coarser carry crowns as relief


@dataclass(frozen=True)
class GeoOrigin:
    """Geodetic anchor of the world origin: WGS84 latitude/longitude in degrees, altitude in metres."""

    lat: float = 47.3769
    lon: float = 8.5417
    alt: float = 0.0

    def __post_init__(self) -> None:
        for name, value, lo, hi in (("lat", self.lat, -90.0, 90.0), ("lon", self.lon, -180.0, 180.0),
                                    ("alt", self.alt, -11000.0, 100000.0)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
                raise SpecError(f"origin.{name} must be a finite number in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class WorldSpec:
    """Everything that defines a world; two equal specs give byte-identical worlds.

    seed: integer in [0, 2**63 - 1].
    base_resolution: s_0, metres per pixel at level 0; level L has s_0 / 2**L.
    chunk_size: pixels per chunk side (power of two, 16..1024); height grids have chunk_size + 1 samples.
    levels: number of levels (level 0 .. levels - 1).
    origin: geodetic anchor of world (0, 0, 0).
    generator: registered generator name; generator_params: its parameters (JSON values).
    """

    seed: int = 0
    base_resolution: float = 64.0
    chunk_size: int = 256
    levels: int = 7
    origin: GeoOrigin = field(default_factory=GeoOrigin)
    generator: str = "procedural"
    generator_params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise SpecError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        r = self.base_resolution
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
            raise SpecError(f"base_resolution must be a positive number of metres per pixel, got {r!r}")
        m, _ = math.frexp(float(r))
        if m != 0.5:
            # powers of two keep every level's resolution, and so every sample position, exact in float64
            raise SpecError(f"base_resolution must be a power of two (e.g. 64, 32, 0.5), got {r!r}")
        object.__setattr__(self, "base_resolution", float(r))
        c = self.chunk_size
        if isinstance(c, bool) or not isinstance(c, int) or c < 16 or c > 1024 or c & (c - 1):
            raise SpecError(f"chunk_size must be a power of two in [16, 1024], got {c!r}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or not 1 <= self.levels <= 24:
            raise SpecError(f"levels must be an integer in [1, 24], got {self.levels!r}")
        if not isinstance(self.origin, GeoOrigin):
            raise SpecError(f"origin must be a GeoOrigin, got {type(self.origin).__name__}")
        if not isinstance(self.generator, str) or not self.generator:
            raise SpecError(f"generator must be a non-empty name, got {self.generator!r}")
        params = self.generator_params
        if isinstance(params, Mapping):
            params = tuple(sorted(params.items()))
        try:
            params = tuple(sorted((str(k), v) for k, v in params))
            json.dumps(dict(params))
        except (TypeError, ValueError) as exc:
            raise SpecError(f"generator_params must map names to JSON values: {exc}") from None
        object.__setattr__(self, "generator_params", params)

    def resolution(self, level: int) -> float:
        """Metres per pixel at `level` (exact: a power of two)."""
        return self.base_resolution / 2.0**level

    def chunk_extent(self, level: int) -> float:
        """Side of one chunk at `level`, in metres."""
        return self.resolution(level) * self.chunk_size

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.generator_params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "worldstream.worldspec/1",
            "seed": self.seed,
            "base_resolution": self.base_resolution,
            "chunk_size": self.chunk_size,
            "levels": self.levels,
            "origin": {"lat": self.origin.lat, "lon": self.origin.lon, "alt": self.origin.alt},
            "generator": self.generator,
            "generator_params": self.params,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WorldSpec":
        if not isinstance(d, Mapping):
            raise SpecError(f"a world spec must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format", "worldstream.worldspec/1")
        if fmt != "worldstream.worldspec/1":
            raise SpecError(f"unknown world spec format {fmt!r}; expected 'worldstream.worldspec/1'")
        known = {"format", "seed", "base_resolution", "chunk_size", "levels", "origin", "generator",
                 "generator_params"}
        extra = set(d) - known
        if extra:
            raise SpecError(f"unknown world spec fields {sorted(extra)}; expected some of {sorted(known)}")
        origin = d.get("origin", {})
        if not isinstance(origin, Mapping) or set(origin) - {"lat", "lon", "alt"}:
            raise SpecError(f"origin must be an object with lat, lon, alt; got {origin!r}")
        kwargs = {k: d[k] for k in ("seed", "base_resolution", "chunk_size", "levels", "generator") if k in d}
        return cls(origin=GeoOrigin(**origin), generator_params=d.get("generator_params", {}), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "WorldSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"world spec is not valid JSON: {exc}") from None
        return cls.from_dict(d)
