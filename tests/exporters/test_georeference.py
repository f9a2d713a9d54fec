"""Every sidecar layer is placed on the globe by GDAL (through rasterio): the GeoTIFFs by their
GeoKeys, the PNG layers by their .aux.xml side files, all in the same projection, the PNG pixels as
areas covering exactly the chunk and the height samples as points on its sample grid."""

import numpy as np
import pytest

from worldstream.core import ChunkKey, World, WorldSpec
from worldstream.exporters.sidecars import chunk_sidecars

rasterio = pytest.importorskip("rasterio")


def test_png_layers_land_where_the_height_grids_do(tmp_path):
    world = World(WorldSpec(seed=7), cache_chunks=0)
    chunk = world.chunk(ChunkKey(5, 3, -2))
    for name, data in chunk_sidecars(chunk, world.spec).items():
        (tmp_path / name).write_bytes(data)
    west, south, east, north = chunk.bounds
    with rasterio.open(tmp_path / "height.tif") as height:
        crs = height.crs.to_proj4()
        assert "+proj=ortho" in crs and np.allclose(height.xy(0, 0, offset="center"), (west, north))
    for name in ("ortho.png", "semantic.png", "normal.png", "instances.png"):
        with rasterio.open(tmp_path / name) as layer:
            assert layer.crs.to_proj4() == crs, name
            assert np.allclose(tuple(layer.bounds), (west, south, east, north)), name
            px = (east - west) / layer.width
            assert np.allclose(layer.xy(0, 0, offset="center"), (west + px / 2, north - px / 2)), name
