"""Export options of the chunk meshes: a frozen value type that the streaming server, the stores
and the tilesets share with the exporters without importing them (nor torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import WorldstreamError
from ..core.spec import TREE_OBJECTS_MAX_RESOLUTION


@dataclass(frozen=True)
class MeshOptions:
    """error_per_pixel: max vertical error as a fraction of the level's m/px (0.5 -> 0.5 m at
    1 m/px); tau: |n . z_up| below which a face is vertical; buildings_max_resolution: coarsest
    m/px with building boxes; facade_texels_per_metre / facade_max_size: atlas scale and cap."""

    error_per_pixel: float = 0.5
    tau: float = 0.25
    buildings_max_resolution: float = 4.0
    skirts: bool = True
    facade_texels_per_metre: float = 2.0
    facade_max_size: int = 1024
    trees_max_resolution: float = 2.0  # coarsest m/px with tree models; coarser levels mesh the crowns as relief
    instanced_trees: bool = True  # EXT_mesh_gpu_instancing; False merges trees into plain meshes (glTFRuntime)
    compress: bool = False  # GLB storage: meshopt geometry + WebP base colour (exporters.compress); plain by default

    def __post_init__(self) -> None:
        if not self.error_per_pixel > 0:
            raise WorldstreamError(f"error_per_pixel must be > 0, got {self.error_per_pixel}")
        if not 0.0 <= self.tau < 1.0:
            raise WorldstreamError(f"tau must be in [0, 1), got {self.tau}")
        if self.facade_max_size < 16:
            raise WorldstreamError(f"facade_max_size must be >= 16 texels, got {self.facade_max_size}")

    def max_error(self, resolution: float) -> float:
        return self.error_per_pixel * resolution

    def has_buildings(self, resolution: float) -> bool:
        return resolution <= self.buildings_max_resolution

    def has_trees(self, resolution: float) -> bool:
        """Tree models at this level: only where the generator lists trees (TREE_OBJECTS_MAX_RESOLUTION;
        the option can lower that, not raise it) and buildings are models too."""
        return resolution <= min(self.trees_max_resolution, self.buildings_max_resolution, TREE_OBJECTS_MAX_RESOLUTION)

    def surface(self, resolution: float) -> str:
        """What the terrain mesh follows: "dem" (trees and buildings are models), "dem+canopy"
        (buildings are models, tree crowns relief) or "dsm" (both relief)."""
        if self.has_trees(resolution):
            return "dem"
        return "dem+canopy" if self.has_buildings(resolution) else "dsm"
