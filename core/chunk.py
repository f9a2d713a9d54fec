"""Chunk: everything generated for one ChunkKey, as numpy arrays.

Array orientation, for every layer: row 0 is the north edge, column 0 the west edge (as in
GeoTIFF and images). Height grids have (size + 1) x (size + 1) samples on the shared-border grid:
sample [i, j] lies at world (west + j * res, north - i * res), so neighbouring chunks share their
border samples. Pixel layers are size x size with pixel [i, j] centred half a pixel inside that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .biomes import CLASS_IDS
from .keys import ChunkKey
from .settlements import Building
from .vegetation import Tree


@dataclass(frozen=True, eq=False)
class Chunk:
    key: ChunkKey
    resolution: float  # metres per pixel
    bounds: tuple[float, float, float, float]  # west, south, east, north (world metres)
    ortho: np.ndarray  # (H, W, 3) uint8 albedo, sRGB
    dem: np.ndarray  # (H+1, W+1) float32 bare-earth height, water surface over water (m)
    dsm: np.ndarray  # (H+1, W+1) float32 surface height incl. buildings (m)
    semantic: np.ndarray  # (H, W) uint8 class ids (worldstream.core.biomes.CLASSES)
    instances: np.ndarray  # (H, W) uint32 building or tree ids (trees have bit 31 set), 0 = none
    water: np.ndarray  # (H+1, W+1) bool, water at the sample
    buildings: Sequence[Building] = field(default=())  # a BuildingTable, or a tuple
    canopy: np.ndarray | None = None  # (H+1, W+1) float32 tree crown height above the DEM (m), 0 = none
    trees: tuple[Tree, ...] = field(default=())  # trees rooted in the chunk (fine levels only)
    # learned facade views (render.multiview.BlockViews, one per building) that the exporters bake onto
    # the facade atlas; empty where the facades are procedural
    facade_views: tuple = field(default=())

    def __post_init__(self) -> None:
        for name in ("ortho", "dem", "dsm", "semantic", "instances", "water", "canopy"):
            a = getattr(self, name)
            if a is not None:
                a.setflags(write=False)

    def vegetation_surface(self) -> np.ndarray:
        """(H+1, W+1) float32 ground with tree crowns but without buildings (DEM + canopy)."""
        return self.dem if self.canopy is None else self.dem + self.canopy

    def bridge_pixels(self) -> np.ndarray:
        """(H, W) bool: road pixels over water (all four samples water), where the generator's
        bridge decks stand (their samples raised BRIDGE_CLEARANCE above the water surface in the DSM)."""
        wet = self.water[:-1, :-1] & self.water[:-1, 1:] & self.water[1:, :-1] & self.water[1:, 1:]
        return wet & (self.semantic == CLASS_IDS["road"])

    @property
    def size(self) -> int:
        return self.semantic.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ortho": self.ortho, "dem": self.dem, "dsm": self.dsm, "semantic": self.semantic,
                "instances": self.instances, "water": self.water}
