"""The simulator's ground streams through the server's ChunkService: same data, no blocking builds."""

from __future__ import annotations

import asyncio

import numpy as np

from worldstream.airsim_adapter.ground import Ground, build_mosaic
from worldstream.core import World, WorldSpec
from worldstream.unreal_bridge.chunk_service import ChunkService

SPEC = WorldSpec(seed=11, chunk_size=64, levels=5)


def test_prefetch_through_the_chunk_service_matches_the_in_process_build(tmp_path):
    world = World(SPEC, cache_chunks=64)
    ground = Ground(world, near_m=100.0, far_m=1500.0).around(0.0, 0.0)
    assert ground.built_in_place == 2  # both tiers, at start

    async def stream():
        service = ChunkService(SPEC, cache_dir=tmp_path / "cache", workers=1)
        try:
            assert await ground.prefetch(10.0, 0.0, service) == 0  # still well inside both tiers
            replaced = await ground.prefetch(60.0, 30.0, service)  # past a quarter of the fine reach
            return replaced, service.stats.as_dict()
        finally:
            service.close()

    replaced, stats = asyncio.run(stream())
    assert replaced == 1 and stats["generated"] > 0
    want = build_mosaic(world, ground.fine_level, 60.0, 30.0, 100.0)
    got = ground.fine
    assert (got.west, got.north, got.resolution) == (want.west, want.north, want.resolution)
    for layer in ("dsm", "dem", "semantic", "ortho"):
        assert np.array_equal(getattr(got, layer), getattr(want, layer)), layer
    ground.around(90.0, 40.0)  # within half the reach of the prefetched centre: nothing built here
    assert ground.built_in_place == 2
    assert (tmp_path / "cache" / "chunks").is_dir()  # the same disk cache `worldstream serve --cache` uses


def test_a_chunk_asked_for_as_glb_and_as_sidecars_at_once_is_generated_once():
    """The simulator's cameras ask for GLBs and its ground for sidecars of the same chunks: a queued
    job is widened to both formats instead of generating the chunk twice."""
    from concurrent.futures import ThreadPoolExecutor

    from worldstream.core import ChunkKey
    from worldstream.exporters.formats import expected_files, export_key

    blocker, key = ChunkKey(3, 0, 0), ChunkKey(4, 1, 2)

    async def ask():
        with ThreadPoolExecutor(max_workers=1) as pool:
            service = ChunkService(SPEC, executor=pool)
            got = await asyncio.gather(service.get(blocker), service.get(key, ("glb",)),
                                       service.get(key, ("sidecars",)), service.get(key, ("glb", "sidecars")))
            again = await service.get(key, ("sidecars",))  # from memory now
            return got, again, service.stats.as_dict()

    (_, glb, sidecars, both), again, stats = asyncio.run(ask())
    assert stats["generated"] == 2 and stats["widened"] == 1 and stats["memory_hits"] == 1
    assert set(glb) == set(expected_files(("glb",))) and set(sidecars) == set(expected_files(("sidecars",)))
    want = export_key(SPEC.to_json(), key.path(), ("glb", "sidecars"))
    assert both == want and again == sidecars and all(glb[n] == want[n] for n in glb)
