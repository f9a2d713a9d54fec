"""`worldstream serve`: one port for the streaming websocket and HTTP (3D Tiles, chunks, stats).

A thin asyncio layer over the sans-I/O protocol (protocol.py), the LOD selection (lod.py) and the
chunk service (chunk_service.py). Per client, one task reads messages, one selects and one sends chunks:
- a third task re-selects the required chunks (SSE with hysteresis) for the newest view, in a
  worker thread, and re-orders the pending queue, most urgent first; views that arrive while it
  works coalesce; fetches for chunks no view needs any more are cancelled; each camera is also
  predicted LOOKAHEAD_S ahead from its measured velocity, so a moving camera's next chunks are
  fetched before it needs them; chunk heights learned from exported chunks make the SSE distances
  true to the terrain;
- a chunk is sent only against client credit (flow control), and `await send` blocks only that
  client's sender, so a stalled client never slows the others or grows server memory beyond its
  credit window;
- `unload` goes out for delivered chunks once their area is covered by delivered chunks of the
  current selection (never a hole);
- malformed or hostile messages get an `error` with a code; the connection stays up unless the
  client keeps misbehaving (then it is closed with 1008), and no other client is affected.
HTTP: /tileset.json (implicit, unbounded), /subtrees/..., /implicit/{l}/{x}/{y}.glb,
/chunks/{level}/{x}/{y}/{file}, /stats, and the web viewer at /viewer/. Binds 127.0.0.1 unless told otherwise; an optional token
guards both.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..core.keys import ChunkKey
from ..core.spec import WorldSpec
from ..exporters.chunk_mesh import MeshOptions
from ..exporters.formats import SIDECAR_FILES
from ..exporters.tiles import implicit_key, implicit_root_error, implicit_subtree, implicit_tileset, level_geometric_error
from . import lod
from . import protocol as p
from .chunk_service import ChunkService

DEFAULT_CREDIT = 16
PREFETCH = 4  # concurrent fetches per client (the pool is shared; this bounds one client's share)
RATE = 60.0  # messages per second per client, with a burst of twice that
MAX_STRIKES = 20  # protocol errors before a client is disconnected
LOOKAHEAD_S = 2.0  # how far ahead (seconds of motion) a camera is predicted
MAX_SPEED = 1000.0  # m/s; faster apparent motion is a teleport, not a velocity
VELOCITY_SMOOTHING = 0.3  # weight of the newest measurement


@dataclass
class ClientState:
    """Everything the server knows about one connection (plain data; the tasks below mutate it)."""

    hello: p.Hello | None = None
    cameras: list = field(default_factory=list)
    seq: int = -1
    view_time: float = 0.0
    selection: list = field(default_factory=list)
    previous: frozenset = frozenset()
    delivered: set = field(default_factory=set)
    pending: list = field(default_factory=list)
    credit: int = DEFAULT_CREDIT
    tokens: float = 2 * RATE
    last_refill: float = field(default_factory=time.monotonic)
    strikes: int = 0
    sent_chunks: int = 0
    sent_bytes: int = 0
    latencies: list = field(default_factory=list)
    view_ready: asyncio.Event = field(default_factory=asyncio.Event)
    motion: dict = field(default_factory=dict)  # camera id -> (position, time, velocity)
    ahead: list = field(default_factory=list)
    urgent: dict = field(default_factory=dict)  # most urgent undelivered key -> earliest view time wanting it
    views_selected: int = 0
    views_resolved: int = 0

    def take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(2 * RATE, self.tokens + (now - self.last_refill) * RATE)
        self.last_refill = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class StreamServer:
    def __init__(self, spec: WorldSpec, service: ChunkService, token: str | None = None,
                 options: MeshOptions = MeshOptions(), horizon_m: float = 20000.0):
        self.spec = spec
        self.service = service
        self.token = token
        self.options = options
        self.horizon_m = horizon_m
        self.root_error = implicit_root_error(spec, options)
        self.clients: dict[ServerConnection, ClientState] = {}
        self.heights = lod.HeightSpans(self.level_error)
        self.started = time.monotonic()

    def level_error(self, level: int) -> float:
        return level_geometric_error(self.root_error, level)

    def _learn_heights(self, key: ChunkKey, files: dict[str, bytes]) -> dict:
        """The chunk's tile.json, its height span remembered for selection."""
        meta = json.loads(files["tile.json"])
        self.heights.learn(key, meta["enu_min"][2], meta["enu_max"][2])
        return meta

    # ------------------------------------------------------------------ websocket
    async def handle(self, ws: ServerConnection) -> None:
        state = ClientState()
        self.clients[ws] = state
        wake = asyncio.Event()
        sender = asyncio.create_task(self._send_loop(ws, state, wake))
        selector = asyncio.create_task(self._select_loop(ws, state, wake))
        try:
            async for message in ws:
                if not state.take_token():
                    await self._reject(ws, state, p.ProtocolError(p.RATE_LIMITED, f"more than {RATE:g} messages/s"))
                    continue
                if isinstance(message, bytes):
                    await self._reject(ws, state, p.ProtocolError(p.BAD_MESSAGE, "clients send text frames only"))
                    continue
                try:
                    msg = p.decode_client(message)
                    await self._on_message(ws, state, msg)
                except p.ProtocolError as exc:
                    await self._reject(ws, state, exc)
                    continue
                wake.set()
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            selector.cancel()
            self.clients.pop(ws, None)

    async def _reject(self, ws, state: ClientState, exc: p.ProtocolError) -> None:
        state.strikes += 1
        await ws.send(p.encode_error(exc.code, str(exc)))
        if state.strikes >= MAX_STRIKES:
            await ws.close(1008, "too many protocol errors")

    async def _on_message(self, ws, state: ClientState, msg) -> None:
        if isinstance(msg, p.Hello):
            if self.token is not None and msg.token != self.token:
                await ws.send(p.encode_error(p.UNAUTHORIZED, "a valid token is required"))
                await ws.close(1008, "unauthorized")
                return
            unknown = [s for s in msg.sidecars if s not in SIDECAR_FILES]
            if unknown:
                raise p.ProtocolError(p.BAD_MESSAGE, f"unknown sidecars {unknown}; expected some of {list(SIDECAR_FILES)}")
            state.hello = msg
            await ws.send(p.encode_welcome(json.loads(self.spec.to_json()), DEFAULT_CREDIT))
            return
        if state.hello is None:
            raise p.ProtocolError(p.NOT_READY, "send hello first")
        if isinstance(msg, p.View):
            now = time.monotonic()
            state.cameras = [lod.camera_from_view(c) for c in msg.cameras]
            state.ahead = [lod.predict(cam, track_velocity(state.motion, view.id, cam.position, now), LOOKAHEAD_S)
                           for view, cam in zip(msg.cameras, state.cameras)]
            ids = {view.id for view in msg.cameras}
            for gone in [i for i in state.motion if i not in ids]:  # bounded by the cameras of one view
                del state.motion[gone]
            state.seq = msg.seq
            state.view_time = now
            state.view_ready.set()  # the selector takes the newest view; views it missed are skipped
        elif isinstance(msg, p.Credit):
            state.credit = min(state.credit + msg.chunks, 4 * DEFAULT_CREDIT)
        elif isinstance(msg, p.StatsRequest):
            await ws.send(p.encode_stats(self.stats(state)))

    async def _select_loop(self, ws, state: ClientState, wake: asyncio.Event) -> None:
        """Re-select for the newest view, off the event loop; views that arrive meanwhile coalesce."""
        try:
            while True:
                await state.view_ready.wait()
                state.view_ready.clear()
                view_time = state.view_time
                selection = await asyncio.to_thread(
                    lod.select, self.spec, list(state.cameras), self.level_error, self.horizon_m, self.heights,
                    state.previous, ahead=list(state.ahead))
                state.selection = selection
                state.previous = frozenset(s.key for s in selection)
                state.pending, gone = lod.plan(selection, state.delivered, self.spec.levels - 1)
                state.views_selected += 1
                pending = set(state.pending)
                state.urgent = {k: t for k, t in state.urgent.items() if k in pending}  # the rest: superseded
                if state.pending:
                    state.urgent.setdefault(state.pending[0], view_time)
                else:
                    state.views_resolved += 1
                await self._send_unloads(ws, state, gone)
                wake.set()
        except ConnectionClosed:
            pass

    async def _send_unloads(self, ws, state: ClientState, gone: list[ChunkKey]) -> None:
        if gone:
            state.delivered.difference_update(gone)
            await ws.send(p.encode_unload(gone))

    async def _send_loop(self, ws, state: ClientState, wake: asyncio.Event) -> None:
        fetches: dict[ChunkKey, asyncio.Task] = {}
        formats = ("glb",)
        try:
            while True:
                if not state.pending or state.credit <= 0:
                    wake.clear()
                    await wake.wait()
                    continue
                if state.hello and state.hello.sidecars:
                    formats = ("glb", "sidecars")
                wanted = state.pending[:PREFETCH]
                for key in list(fetches):
                    if key not in state.pending:  # a newer view made it useless
                        fetches.pop(key).cancel()
                for key in wanted:
                    if key not in fetches:
                        fetches[key] = asyncio.create_task(self.service.get(key, formats))
                key = wanted[0]
                try:
                    files = await fetches[key]
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise
                    fetches.pop(key, None)
                    continue
                except Exception as exc:  # generation failed: tell the client, drop the key
                    fetches.pop(key, None)
                    state.pending = [k for k in state.pending if k != key]
                    await ws.send(p.encode_error(p.INTERNAL, f"chunk {key.path()} failed: {exc}"))
                    continue
                fetches.pop(key, None)
                if key not in state.pending:
                    continue
                meta = self._learn_heights(key, files)
                parts = {"mesh.glb": files["mesh.glb"]}
                if state.hello and state.hello.sidecars:
                    parts.update({n: files[n] for n in state.hello.sidecars})
                frame = p.ChunkFrame(key=key, geometric_error=meta["geometric_error"] + 0.5 * meta["resolution_m"],
                                     bounds=key.bounds(self.spec), z_range=(meta["enu_min"][2], meta["enu_max"][2]),
                                     seq=max(state.seq, 0), parts=parts)
                data = p.encode_chunk_frame(frame)
                await ws.send(data)
                state.credit -= 1
                state.sent_chunks += 1
                state.sent_bytes += len(data)
                if key in state.urgent:
                    state.latencies.append(time.monotonic() - state.urgent.pop(key))
                    del state.latencies[:-5000]
                state.delivered.add(key)
                state.pending, gone = lod.plan(state.selection, state.delivered, self.spec.levels - 1)
                await self._send_unloads(ws, state, gone)
        except ConnectionClosed:
            pass
        finally:
            for t in fetches.values():
                t.cancel()

    def stats(self, state: ClientState | None = None) -> dict:
        out = {"clients": len(self.clients), "uptime_s": round(time.monotonic() - self.started, 3),
               "service": self.service.stats.as_dict()}
        if state is not None:
            lat = sorted(state.latencies)
            q = (lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))] * 1000, 1) if lat else None)  # noqa: E731
            out["client"] = {"seq": state.seq, "delivered": len(state.delivered), "pending": len(state.pending),
                             "required": len(state.selection), "credit": state.credit,
                             "sent_chunks": state.sent_chunks, "sent_bytes": state.sent_bytes,
                             "views_selected": state.views_selected, "views_resolved": state.views_resolved,
                             "urgent_latency_samples": len(lat),
                             "latency_ms_p50": q(0.5), "latency_ms_p95": q(0.95)}
        return out

    # ------------------------------------------------------------------ HTTP
    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path, _, query = request.path.partition("?")
        if self.token is not None:
            given = dict(part.partition("=")[::2] for part in query.split("&") if part).get("token")
            auth = request.headers.get("Authorization", "")
            if given != self.token and auth != f"Bearer {self.token}":
                return _response(HTTPStatus.UNAUTHORIZED, b"a valid token is required\n", "text/plain")
        try:
            return await self._route(path)
        except (ValueError, LookupError) as exc:
            return _response(HTTPStatus.NOT_FOUND, f"{exc}\n".encode(), "text/plain")

    async def _route(self, path: str) -> Response:
        if path in ("/", "/tileset.json"):
            body = json.dumps(implicit_tileset(self.spec, self.options)).encode()
            return _response(HTTPStatus.OK, body, "application/json")
        if path == "/viewer":
            return _redirect("/viewer/")
        if path.startswith("/viewer/"):
            return _viewer_file(path[len("/viewer/"):] or "index.html")
        if path == "/stats":
            return _response(HTTPStatus.OK, json.dumps(self.stats()).encode(), "application/json")
        m = re.fullmatch(r"/subtrees/(\d+)/(\d+)/(\d+)\.subtree", path)
        if m:
            return _response(HTTPStatus.OK, implicit_subtree(self.spec, int(m.group(1))), "application/octet-stream")
        m = re.fullmatch(r"/implicit/(\d+)/(\d+)/(\d+)\.glb", path)
        if m:
            key = implicit_key(*(int(g) for g in m.groups()))
            return await self._chunk_file(key, "mesh.glb")
        m = re.fullmatch(r"/chunks/(\d+)/(-?\d+)/(-?\d+)/([a-z_.]+)", path)
        if m:
            key = ChunkKey(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            return await self._chunk_file(key, m.group(4))
        return _response(HTTPStatus.NOT_FOUND, f"no route for {path}\n".encode(), "text/plain")

    async def _chunk_file(self, key: ChunkKey, name: str) -> Response:
        if key.level >= self.spec.levels:
            raise LookupError(f"level {key.level} is outside this world's levels 0..{self.spec.levels - 1}")
        if name in ("mesh.glb", "tile.json"):
            files = await self.service.get(key, ("glb",))
            self._learn_heights(key, files)
        elif name in SIDECAR_FILES:
            files = await self.service.get(key, ("sidecars",))
        else:
            raise LookupError(f"no chunk file {name!r}")
        ctype = {"glb": "model/gltf-binary", "json": "application/json", "png": "image/png",
                 "tif": "image/tiff"}[name.rsplit(".", 1)[1]]
        return _response(HTTPStatus.OK, files[name], ctype)


def track_velocity(motion: dict, camera_id: str, position, now: float) -> tuple[float, float, float]:
    """Update and return camera_id's smoothed ENU velocity (m/s) from its newest position; a jump
    faster than MAX_SPEED (a teleport) resets it to zero."""
    pos = tuple(float(c) for c in position)
    prev = motion.get(camera_id)
    vel = (0.0, 0.0, 0.0)
    if prev is not None:
        p0, t0, v0 = prev
        dt = now - t0
        if dt < 1e-3:  # too close in time to measure: keep the estimate
            return v0
        measured = tuple((a - b) / dt for a, b in zip(pos, p0))
        if math.sqrt(sum(c * c for c in measured)) <= MAX_SPEED:
            a = VELOCITY_SMOOTHING
            vel = tuple(a * m + (1.0 - a) * v for m, v in zip(measured, v0))
    motion[camera_id] = (pos, now, vel)
    return vel


VIEWER_DIR = Path(__file__).resolve().parent / "viewer"
VIEWER_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css",
                "": "text/plain; charset=utf-8"}


def _viewer_file(rel: str) -> Response:
    """A file of the web viewer (shipped inside the package, three.js vendored: works offline)."""
    path = (VIEWER_DIR / rel).resolve()
    if VIEWER_DIR not in path.parents or not path.is_file():
        raise LookupError(f"no viewer file {rel!r}")
    return _response(HTTPStatus.OK, _read_static(path), VIEWER_TYPES.get(path.suffix, "application/octet-stream"))


@functools.lru_cache(maxsize=32)
def _read_static(path: Path) -> bytes:
    """Static files are read once, not on the event loop at every request."""
    return path.read_bytes()


def _redirect(location: str) -> Response:
    headers = Headers([("Location", location), ("Content-Length", "0")])
    return Response(HTTPStatus.MOVED_PERMANENTLY.value, "Moved Permanently", headers, b"")


def _response(status: HTTPStatus, body: bytes, ctype: str) -> Response:
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))),
                       ("Access-Control-Allow-Origin", "*"), ("Cache-Control", "public, max-age=86400")])
    return Response(status.value, status.phrase, headers, body)


async def run_server(spec: WorldSpec, host: str = "127.0.0.1", port: int = 8765, cache_dir=None, workers: int = 2,
                     memory_mb: int = 256, token: str | None = None, ready: asyncio.Future | None = None) -> None:
    service = ChunkService(spec, cache_dir=cache_dir, memory_bytes=memory_mb << 20, workers=workers)
    server = StreamServer(spec, service, token=token)
    try:
        async with serve(server.handle, host, port, process_request=server.process_request,
                         max_size=p.MAX_TEXT_BYTES, max_queue=16, write_limit=1 << 20) as ws_server:
            bound = ws_server.sockets[0].getsockname()[1]
            if ready is not None and not ready.done():
                ready.set_result(bound)
            await asyncio.Future()  # until cancelled
    finally:
        service.close()
