"""`worldstream sim`: the headless simulator behind AirSim's msgpack-rpc on TCP (default
127.0.0.1:41451). A thin asyncio layer: each call runs as its own task, so a motion call that
waits for completion never blocks state queries; a connection that sends garbage is closed
without touching the others. A connection has at most CALLS_IN_FLIGHT calls running (rpclib
serves a connection's calls from a bounded pool of threads): past that, its socket is not read
until one finishes, and TCP holds the client back."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from pathlib import Path

import numpy as np

from ..core import frames
from ..core.spec import WorldSpec
from ..core.world import World
from ..unreal_bridge.chunk_service import ChunkService
from ..render.view import VIEW_MEMORY_BYTES
from . import rpc
from .ground import Ground
from .settings import build_settings, parse_settings
from .sim import Simulator

CALLS_IN_FLIGHT = 32
RPC_METHODS = frozenset({
    "ping", "getServerVersion", "getMinRequiredClientVersion", "listVehicles", "reset", "enableApiControl",
    "isApiControlEnabled", "armDisarm", "simPause", "simIsPaused", "simContinueForTime", "simGetVehiclePose",
    "simSetVehiclePose", "simGetGroundTruthKinematics", "simGetCollisionInfo", "getHomeGeoPoint",
    "getMultirotorState", "cancelLastTask", "takeoff", "land", "hover", "moveToPosition", "moveToZ", "moveOnPath",
    "moveByVelocity", "rotateToYaw", "simGetCameraInfo", "simGetImages",
})


async def dispatch(sim: Simulator, call: rpc.Call):
    """(error, result) for one call, in rpclib's terms."""
    if call.method not in RPC_METHODS:
        return rpc.unknown_function(call.method, len(call.params)), None
    fn = getattr(sim, call.method)
    try:
        inspect.signature(fn).bind(*call.params)
    except TypeError:
        expected = len(inspect.signature(fn).parameters)
        return rpc.wrong_arguments(call.method, len(call.params), expected), None
    try:
        result = fn(*call.params)
        if inspect.isawaitable(result):
            result = await result
        return None, result
    except Exception as exc:  # any failure is the call's error text: the client never waits for nothing
        return (f"rpclib: function '{call.method}' (called with {len(call.params)} arg(s)) threw an exception. "
                f"The exception contained this information: {exc}"), None


async def handle_connection(sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    decoder = rpc.RpcDecoder()
    lock = asyncio.Lock()
    tasks: set[asyncio.Task] = set()
    slots = asyncio.Semaphore(CALLS_IN_FLIGHT)

    def finished(t: asyncio.Task) -> None:
        tasks.discard(t)
        slots.release()

    async def answer(call: rpc.Call) -> None:
        error, result = await dispatch(sim, call)
        if call.msgid is None:
            return
        async with lock:
            writer.write(rpc.encode_response(call.msgid, error, result))
            await writer.drain()

    try:
        while data := await reader.read(1 << 16):
            for call in decoder.feed(data):
                await slots.acquire()
                t = asyncio.create_task(answer(call))
                tasks.add(t)
                t.add_done_callback(finished)
    except (rpc.RpcError, ValueError, ConnectionError):
        pass  # not msgpack-rpc: drop this connection only
    except asyncio.CancelledError:
        pass  # shutdown: asyncio.start_server's callback would log a cancelled handler as an error (3.11)
    finally:
        for t in tasks:
            t.cancel()
        writer.close()


def make_simulator(seed: int | None = None, settings_path: str | Path | None = None,
                   spec: WorldSpec | None = None, workers: int = 0, cache_dir: str | Path | None = None) -> Simulator:
    """A simulator for a world (seed, or the world stored in the settings file by
    `worldstream airsim settings`) and its settings (default: one SimpleFlight drone above the
    ground at the world origin). workers > 0: its ground streams through a ChunkService with that
    many generator processes and the disk cache `cache_dir` (which `worldstream serve --cache`
    can share); 0: built in this process."""
    doc = json.loads(Path(settings_path).read_text()) if settings_path else None
    if spec is None:
        stored = (doc or {}).get("worldstream", {}).get("world")
        if stored is not None and seed is None:
            spec = WorldSpec.from_dict(stored)
        else:
            spec = WorldSpec(seed=seed if seed is not None else 0)
    world = World(spec, cache_chunks=64)
    if doc is None:
        doc = build_settings(world)
    service = (ChunkService(spec, cache_dir=cache_dir, workers=workers, memory_bytes=VIEW_MEMORY_BYTES)
               if workers > 0 else None)
    settings = parse_settings(doc)
    ground = None
    if service is not None and settings.vehicles:
        # the ground around the first vehicle's spawn through the service: its disk cache, or its
        # worker processes in parallel, instead of generating both tiers here one chunk at a time
        home = frames.airsim_to_enu(np.asarray(settings.vehicles[0].spawn, np.float64), (0.0, 0.0, 0.0))
        ground = Ground(world)
        asyncio.run(ground.prefetch(float(home[0]), float(home[1]), service))
    return Simulator(world, settings, service=service, ground=ground)


async def run_sim(sim: Simulator, host: str = "127.0.0.1", port: int = 41451,
                  ready: asyncio.Future | None = None) -> None:
    physics = asyncio.create_task(sim.run())
    server = await asyncio.start_server(lambda r, w: handle_connection(sim, r, w), host, port)
    try:
        if ready is not None and not ready.done():
            ready.set_result(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()
    finally:
        physics.cancel()
        if sim.view.frames:
            print(f"worldstream sim: images: {sim.view.summary()}", file=sys.stderr)
        sim.view.close()
        if sim.service is not None:
            sim.service.close()
