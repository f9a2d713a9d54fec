"""A streaming server in a background event-loop thread, shared by the bridge tests."""

from __future__ import annotations

import asyncio

import pytest

from worldstream.core import WorldSpec
from worldstream.unreal_bridge.server import run_server

SPEC = WorldSpec(seed=7, chunk_size=64, levels=5)  # 4 km level-0 chunks of 64 px: quick to generate


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server in a background event loop thread; yields its port."""
    import threading

    loop = asyncio.new_event_loop()
    ready = loop.create_future()
    cache = tmp_path_factory.mktemp("cache")
    task = loop.create_task(run_server(SPEC, port=0, cache_dir=cache, workers=2, token=None, ready=ready))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 30), loop).result()
    yield port
    loop.call_soon_threadsafe(task.cancel)


