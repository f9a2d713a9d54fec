"""Typed products per chunk in the chunk service's memory LRU: made once per process, handed over
by the worker that generated the chunk (nothing decoded), decoded once from a verified disk entry,
and never made from a damaged one."""

from __future__ import annotations

import asyncio

import numpy as np

from worldstream.core import ChunkKey, WorldSpec
from worldstream.unreal_bridge.chunk_service import PRODUCT, ChunkService
from worldstream.unreal_bridge.products import LAYERS, TILE

SPEC = WorldSpec(seed=11, chunk_size=64, levels=5)
KEY = ChunkKey(4, 1, -2)


def products(cache, corrupt=None):
    async def go():
        service = ChunkService(SPEC, cache_dir=cache, workers=1)
        try:
            layers = await service.product(KEY, LAYERS)
            again = await service.product(KEY, LAYERS)
            tile = await service.product(KEY, TILE)
            tile_again, _ = await asyncio.gather(service.product(KEY, TILE), service.product(KEY, TILE))
            assert again is layers and tile_again is tile  # kept, not made again
            return layers, tile, service.stats.as_dict()
        finally:
            service.close()

    return asyncio.run(go())


def test_products_are_made_once_handed_over_by_workers_and_never_from_a_damaged_entry(tmp_path):
    cache = tmp_path / "cache"
    fresh, tile, stats = products(cache)
    # generated here: the worker handed the layers over (nothing decoded); tile.json parsed once
    assert stats["generated"] == 2 and stats["products_made"] == 1 and stats["product_hits"] >= 3
    assert tile.z_min < tile.z_max and tile.geometric_error > 0 and tile.resolution_m == SPEC.resolution(KEY.level)

    decoded, tile2, stats = products(cache)  # another process's view: from the verified disk cache
    assert stats["generated"] == 0 and stats["disk_hits"] == 2 and stats["products_made"] == 2
    assert tile2 == tile
    for name in ("dsm", "dem", "semantic", "ortho"):
        assert decoded[name].dtype == fresh[name].dtype and np.array_equal(decoded[name], fresh[name]), name

    tif = cache / "chunks" / KEY.path() / "height.tif"
    data = bytearray(tif.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tif.write_bytes(bytes(data))
    repaired, _, stats = products(cache)
    assert stats["corrupt"] == 1 and stats["generated"] == 1  # logged, regenerated, replaced; not decoded
    assert np.array_equal(repaired["dsm"], fresh["dsm"])
    assert tif.read_bytes() != bytes(data)


def test_a_world_view_decodes_each_glb_once_through_the_service(tmp_path):
    from worldstream.render.view import WorldView

    async def go():
        service = ChunkService(SPEC, cache_dir=tmp_path / "cache", workers=1)
        view = WorldView(service)
        try:
            first = await view.chunk(KEY)
            second, third = await asyncio.gather(view.chunk(KEY), WorldView(service).chunk(KEY))
            assert second is first and third is first  # one decoded mesh, shared by every view of the service
            assert view.heights.knows(KEY) and first.key == KEY
            return service.stats.as_dict()
        finally:
            service.close()

    stats = asyncio.run(go())
    assert stats["generated"] == 1 and stats["products_made"] == 1 and stats["product_hits"] == 2


def test_sidecar_files_for_a_client_carry_no_layers_back_from_the_worker(tmp_path):
    """Only a request for the LAYERS product makes the worker return the arrays: sidecars fetched
    as files (a streaming client's) fill the LRU with files only, and layers asked later are
    decoded from them once."""
    async def go():
        service = ChunkService(SPEC, cache_dir=tmp_path / "cache", workers=1)
        try:
            files = await service.get(KEY, ("glb", "sidecars"))
            held_layers = service._memory.get((KEY, PRODUCT, LAYERS.name)) is not None
            layers = await service.product(KEY, LAYERS)
            return files, held_layers, layers, service.stats.as_dict()
        finally:
            service.close()

    files, held_layers, layers, stats = asyncio.run(go())
    assert not held_layers and "height.tif" in files
    assert stats["generated"] == 1 and stats["products_made"] == 1  # decoded from the files it already had
    assert layers["dsm"].dtype == np.float32 and layers["ortho"].shape[-1] == 3
