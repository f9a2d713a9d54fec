"""`worldstream serve`: one port for the streaming websocket and HTTP (3D Tiles, chunks, stats).

A thin asyncio layer over the sans-I/O protocol (protocol.py), the LOD selection (lod.py) and the
chunk service (chunk_service.py). Per client, one task reads messages, one selects and one sends chunks:
- a third task re-selects the required chunks (SSE with hysteresis) for the newest view, in a
  worker thread, and re-orders the pending queue, most urgent first; views that arrive while it
  works coalesce; fetches for chunks no view needs any more are cancelled; each camera is also
  predicted at each of LOOKAHEAD_S ahead from its measured velocity, so a moving camera's next
  chunks are fetched before it needs them; chunk heights learned from exported chunks make the SSE distances
  true to the terrain;
- fetches go to the chunk service under the client's name: the generator pool serves clients in
  turn (round robin), so one client's backlog does not starve another's most urgent chunk;
- a chunk is sent only against client credit (flow control), and `await send` blocks only that
  client's sender, so a stalled client never slows the others or grows server memory beyond its
  credit window;
- `unload` goes out for delivered chunks once their area is covered by delivered chunks of the
  current selection (never a hole);
- what a client holds and still needs (pending queue, delivered set, unloads, urgent-chunk
  latency) is a sans-I/O `session.Delivery` fed selections and sent chunks;
- the per-connection rules (hello, token, credit, rate limit, error budget) are a sans-I/O
  `session.Session`, fed each message with its arrival time (`arrivals.StampedConnection`), so a
  backlog the server processes late is not mistaken for a burst; malformed or hostile messages
  get an `error` with a code; the connection stays up unless the client keeps misbehaving (then
  it is closed with 1008 at once), and no other client is affected.
HTTP (`http_routes`): /tileset.json (implicit, unbounded), /subtrees/..., /implicit/{l}/{x}/{y}.glb,
/chunks/{level}/{x}/{y}/{file}, /stats, and the web viewer at /viewer/; bad paths and keys are
404 / 400, never 500; concurrent HTTP requests that may generate are bounded (503 + Retry-After
past the bound); Cache-Control per route. Binds 127.0.0.1 unless told otherwise; an optional
token guards both.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import logging
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..core.keys import ChunkKey
from ..core.spec import WorldSpec
from ..exporters.mesh_options import MeshOptions
from ..exporters.formats import SIDECAR_FILES
from ..exporters.tiles import implicit_root_error, implicit_subtree, implicit_tileset, level_geometric_error
from . import lod
from . import protocol as p
from . import session as ss
from .arrivals import LoopWatch, stamped_connection
from .chunk_service import ChunkService
from .products import TILE, TileMeta
from .http_routes import NO_STORE, HttpError, Route, authorized, content_type, parse_route

log = logging.getLogger(__name__)

LIMITS = ss.Limits()
DEFAULT_CREDIT = LIMITS.credit
PREFETCH = 4  # concurrent fetches per client (the pool is shared; this bounds one client's share)
RATE = LIMITS.rate  # messages per second per client (on arrival), with a burst of LIMITS.burst
MAX_STRIKES = LIMITS.max_strikes  # protocol errors (net of forgiven ones) before a client is disconnected
RETRY_AFTER_S = 1  # told to HTTP clients refused for load (503)
# how far ahead (seconds of motion) a camera is predicted. Measured with bench_flight at 150 m/s from
# a warm store: with 2 s alone, 4 of 1800 views lacked a chunk, all where the drone's climb rate turned
# over a ridge (a velocity measured a moment ago puts the 2 s prediction tens of metres off there);
# with 0.5 s as well, none (cold: 98.5 -> 99.7 %)
LOOKAHEAD_S = (0.5, 2.0)
MAX_SPEED = 1000.0  # m/s; faster apparent motion is a teleport, not a velocity
VELOCITY_SMOOTHING = 0.3  # weight of the newest measurement


@dataclass
class ClientState:
    """Everything the server knows about one connection (plain data; the tasks below mutate it);
    the protocol rules and credit live in `session`, what the client holds and needs in `delivery`
    (both sans-I/O)."""

    session: ss.Session
    delivery: ss.Delivery
    reselection: ss.Reselection
    cameras: list = field(default_factory=list)
    seq: int = -1
    view_time: float = 0.0
    sent_chunks: int = 0
    sent_bytes: int = 0
    view_ready: asyncio.Event = field(default_factory=asyncio.Event)
    motion: dict = field(default_factory=dict)  # camera id -> (position, time, velocity)
    ahead: list = field(default_factory=list)

    @property
    def hello(self) -> p.Hello | None:
        return self.session.hello


class StreamServer:
    def __init__(self, spec: WorldSpec, service: ChunkService, token: str | None = None,
                 options: MeshOptions = MeshOptions(), horizon_m: float = 20000.0, limits: ss.Limits = LIMITS,
                 http_generation_limit: int = 8):
        self.spec = spec
        self.service = service
        self.token = token
        self.options = options
        self.horizon_m = horizon_m
        self.root_error = implicit_root_error(spec, options)
        self.clients: dict[ServerConnection, ClientState] = {}
        self.heights = lod.HeightSpans(self.level_error)
        service.backlog = self._uncredited
        self.started = time.monotonic()
        self.limits = limits
        self.welcome = p.encode_welcome(json.loads(spec.to_json()), limits.credit)
        self.http_generation_limit = http_generation_limit
        self.http_generating = 0  # HTTP requests in flight that may generate a chunk
        self.http_refused = 0

    def _uncredited(self, client) -> int:
        """The chunk frames a websocket client was sent and has not returned credit for (0 for
        others: HTTP)."""
        state = self.clients.get(client)
        return 0 if state is None else state.session.uncredited

    def level_error(self, level: int) -> float:
        return level_geometric_error(self.root_error, level)

    async def _tile(self, key: ChunkKey, files: dict[str, bytes]) -> TileMeta:
        """The tile metadata of a chunk whose files the caller holds (kept by the chunk service,
        parsed once), its height span remembered for selection."""
        meta = await self.service.product(key, TILE, files=files)
        self.heights.learn(key, meta.z_min, meta.z_max)
        return meta

    # ------------------------------------------------------------------ websocket
    async def handle(self, ws: ServerConnection) -> None:
        state = ClientState(session=ss.Session(self.welcome, SIDECAR_FILES, self.token, self.limits),
                            delivery=ss.Delivery(self.spec.levels - 1),
                            reselection=ss.Reselection(self.level_error(self.spec.levels - 2)))
        self.clients[ws] = state
        wake = asyncio.Event()
        sender = asyncio.create_task(self._send_loop(ws, state, wake))
        selector = asyncio.create_task(self._select_loop(ws, state, wake))
        arrival = getattr(ws, "arrival", time.monotonic)  # a StampedConnection knows when each message came
        closing: list[asyncio.Task] = []
        try:
            # after the session closes, messages still queued are read and dropped (the session
            # ignores them), so reading resumes and the client's close frame is seen at once
            async for message in ws:
                for action in state.session.receive(message, arrival()):
                    await self._perform(ws, state, action, wake, closing)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            selector.cancel()
            self.clients.pop(ws, None)
            self.service.client_gone(ws)

    async def _perform(self, ws, state: ClientState, action: ss.Action, wake: asyncio.Event,
                       closing: list[asyncio.Task]) -> None:
        """Carry out one action of the session. A close is started, not awaited: waiting here for
        the closing handshake would stop this loop from reading the client's close frame (it
        queues behind the messages the client sent before it) until the close timeout."""
        if isinstance(action, ss.SendText):
            await ws.send(action.text)
        elif isinstance(action, ss.Close):
            closing.append(asyncio.create_task(ws.close(action.code, action.reason)))
        elif isinstance(action, ss.NewView):
            self._apply_view(state, action.view, action.at)
            wake.set()
        elif isinstance(action, ss.CreditGranted):
            wake.set()
        elif isinstance(action, ss.SendStats):
            await ws.send(p.encode_stats(self.stats(state)))

    def _apply_view(self, state: ClientState, view: p.View, at: float) -> None:
        """The newest view, arrived at `at` (velocities are measured between arrival times)."""
        state.cameras = [lod.camera_from_view(c) for c in view.cameras]
        velocities = [track_velocity(state.motion, cv.id, cam.position, at) for cv, cam in zip(view.cameras, state.cameras)]
        state.ahead = [lod.predict(cam, v, s) for cam, v in zip(state.cameras, velocities) for s in LOOKAHEAD_S]
        ids = {cv.id for cv in view.cameras}
        for gone in [i for i in state.motion if i not in ids]:  # bounded by the cameras of one view
            del state.motion[gone]
        state.seq = view.seq
        state.view_time = at
        state.view_ready.set()  # the selector takes the newest view; views it missed are skipped

    async def _select_loop(self, ws, state: ClientState, wake: asyncio.Event) -> None:
        """Re-select for the newest view, off the event loop; views that arrive meanwhile coalesce."""
        try:
            while True:
                await state.view_ready.wait()
                state.view_ready.clear()
                view_time = state.view_time
                if not state.reselection.due(state.cameras, state.ahead, view_time):
                    try:  # no camera moved enough to change the selection: wait for the next view, or
                        await asyncio.wait_for(state.view_ready.wait(), state.reselection.max_age_s)
                        continue
                    except asyncio.TimeoutError:  # none came: select for this one after all
                        state.reselection.due(state.cameras, state.ahead, view_time, force=True)
                selection = await asyncio.to_thread(
                    lod.select, self.spec, list(state.cameras), self.level_error, self.horizon_m, self.heights,
                    state.delivery.previous, ahead=list(state.ahead))
                await self._send_unloads(ws, state.delivery.on_selection(selection, view_time))
                wake.set()
        except ConnectionClosed:
            pass

    async def _send_unloads(self, ws, gone: list[ChunkKey]) -> None:
        if gone:
            await ws.send(p.encode_unload(gone))

    async def _send_loop(self, ws, state: ClientState, wake: asyncio.Event) -> None:
        fetches: dict[ChunkKey, asyncio.Task] = {}
        formats = ("glb",)
        try:
            while True:
                delivery = state.delivery
                if not delivery.pending or state.session.credit <= 0:
                    wake.clear()
                    await wake.wait()
                    continue
                if state.hello and state.hello.sidecars:
                    formats = ("glb", "sidecars")
                wanted = delivery.pending[:PREFETCH]
                for key in list(fetches):
                    if not delivery.wants(key):  # a newer view made it useless
                        fetches.pop(key).cancel()
                for key in wanted:
                    if key not in fetches:
                        fetches[key] = asyncio.create_task(self.service.get(key, formats, client=ws))
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
                    delivery.on_failed(key)
                    await ws.send(p.encode_error(p.INTERNAL, f"chunk {key.path()} failed: {exc}"))
                    continue
                fetches.pop(key, None)
                if not delivery.wants(key):
                    continue
                meta = await self._tile(key, files)
                parts = {"mesh.glb": files["mesh.glb"]}
                if state.hello and state.hello.sidecars:
                    parts.update({n: files[n] for n in state.hello.sidecars})
                frame = p.ChunkFrame(key=key, geometric_error=meta.geometric_error + 0.5 * meta.resolution_m,
                                     bounds=key.bounds(self.spec), z_range=meta.z_range,
                                     seq=max(state.seq, 0), parts=parts)
                data = p.encode_chunk_frame(frame)
                await ws.send(data)
                state.session.spend_credit()
                state.sent_chunks += 1
                state.sent_bytes += len(data)
                await self._send_unloads(ws, delivery.on_sent(key, time.monotonic()))
        except ConnectionClosed:
            pass
        finally:
            for t in fetches.values():
                t.cancel()

    def stats(self, state: ClientState | None = None) -> dict:
        out = {"clients": len(self.clients), "uptime_s": round(time.monotonic() - self.started, 3),
               "service": self.service.stats.as_dict(),
               "http": {"generating": self.http_generating, "limit": self.http_generation_limit,
                        "refused": self.http_refused}}
        if state is not None:
            d = state.delivery
            lat = sorted(d.latencies)
            q = (lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))] * 1000, 1) if lat else None)  # noqa: E731
            out["client"] = {"seq": state.seq, "delivered": len(d.delivered), "pending": len(d.pending),
                             "required": len(d.selection), "credit": state.session.credit,
                             "rejected": state.session.rejected, "rate_limited": state.session.rate_limited,
                             "sent_chunks": state.sent_chunks, "sent_bytes": state.sent_bytes,
                             "views_selected": d.views_selected, "views_resolved": d.views_resolved,
                             "views_unchanged": state.reselection.skipped,
                             "urgent_latency_samples": len(lat),
                             "latency_ms_p50": q(0.5), "latency_ms_p95": q(0.95)}
        return out

    # ------------------------------------------------------------------ HTTP
    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path, _, query = request.path.partition("?")
        if not authorized(query, request.headers.get("Authorization", ""), self.token):
            return _error(HTTPStatus.UNAUTHORIZED, "a valid token is required (?token=... or Authorization: Bearer ...)")
        try:
            route = parse_route(path, self.spec)
            if route.generates and not self.service.in_memory(route.key, _formats_of(route.name)):
                if self.http_generating >= self.http_generation_limit:
                    self.http_refused += 1
                    return _error(HTTPStatus.SERVICE_UNAVAILABLE,
                                  f"{self.http_generating} chunk requests in flight; retry in {RETRY_AFTER_S} s",
                                  (("Retry-After", str(RETRY_AFTER_S)),))
                self.http_generating += 1
                try:
                    return await self._route(route)
                finally:
                    self.http_generating -= 1
            return await self._route(route)
        except HttpError as exc:
            return _error(exc.status, str(exc))
        except Exception as exc:  # a bug or a failed generation: say so, without a traceback to the client
            log.exception("HTTP %s failed", path[:200])
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

    async def _route(self, route: Route) -> Response:
        private = self.token is not None
        if route.kind == "tileset":
            body = json.dumps(implicit_tileset(self.spec, self.options)).encode()
            return _response(HTTPStatus.OK, body, "application/json", route.cache_control, private)
        if route.kind == "viewer_redirect":
            return _redirect("/viewer/")
        if route.kind == "viewer":
            return _response(HTTPStatus.OK, *_viewer_file(route.rel), route.cache_control, private)
        if route.kind == "stats":
            return _response(HTTPStatus.OK, json.dumps(self.stats()).encode(), "application/json", NO_STORE)
        if route.kind == "subtree":
            return _response(HTTPStatus.OK, implicit_subtree(self.spec, route.level), "application/octet-stream",
                             route.cache_control, private)
        files = await self.service.get(route.key, _formats_of(route.name), client="http")
        if route.name in ("mesh.glb", "tile.json"):
            await self._tile(route.key, files)
        return _response(HTTPStatus.OK, files[route.name], content_type(route.name), route.cache_control, private)


def _formats_of(name: str) -> tuple[str, ...]:
    """The chunk-service formats that make file `name`."""
    return ("glb",) if name in ("mesh.glb", "tile.json") else ("sidecars",)


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


def _viewer_file(rel: str) -> tuple[bytes, str]:
    """A file of the web viewer (shipped inside the package, three.js vendored: works offline):
    its bytes and content type; `rel` was checked by parse_route (plain names, no dot segments)."""
    path = (VIEWER_DIR / rel).resolve()
    if VIEWER_DIR not in path.parents or not path.is_file():
        raise HttpError(HTTPStatus.NOT_FOUND, f"no viewer file {rel!r}")
    return _read_static(path), VIEWER_TYPES.get(path.suffix, "application/octet-stream")


@functools.lru_cache(maxsize=32)
def _read_static(path: Path) -> bytes:
    """Static files are read once, not on the event loop at every request."""
    return path.read_bytes()


def _redirect(location: str) -> Response:
    headers = Headers([("Location", location), ("Content-Length", "0"), ("Cache-Control", NO_STORE)])
    return Response(HTTPStatus.MOVED_PERMANENTLY.value, "Moved Permanently", headers, b"")


def _response(status: HTTPStatus, body: bytes, ctype: str, cache: str, private: bool = False,
              extra: tuple[tuple[str, str], ...] = ()) -> Response:
    """A response with its Cache-Control; behind a token, cacheable content is `private` (no
    shared cache may hand it to someone without the token)."""
    if private and cache.startswith("public"):
        cache = "private" + cache[len("public"):]
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))),
                       ("Access-Control-Allow-Origin", "*"), ("Cache-Control", cache), *extra])
    return Response(status.value, status.phrase, headers, body)


def _error(status: HTTPStatus, message: str, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    """An error response: never stored by any cache."""
    return _response(status, f"{message}\n".encode(), "text/plain; charset=utf-8", NO_STORE, extra=extra)


async def run_server(spec: WorldSpec, host: str = "127.0.0.1", port: int = 8765, cache_dir=None, workers: int = 2,
                     memory_mb: int = 256, token: str | None = None, ready: asyncio.Future | None = None,
                     http_generation_limit: int | None = None, options: MeshOptions = MeshOptions(),
                     announce: Callable[[int], None] | None = None) -> None:
    """Serve until cancelled; `ready` gets the bound port, and `announce(port)` is called once the
    server listens (after the chunk store opened, so a bad store is reported before any banner).
    `http_generation_limit`: HTTP chunk requests that may generate at once (default 4 per worker,
    at least 8); more get 503. `options`: the chunks' export options (`compress`: compressed GLBs)."""
    service = ChunkService(spec, cache_dir=cache_dir, memory_bytes=memory_mb << 20, workers=workers, options=options)
    service.warm()  # before this process starts any thread
    limit = http_generation_limit if http_generation_limit is not None else max(8, 4 * workers)
    server = StreamServer(spec, service, token=token, options=options, http_generation_limit=limit)
    watch = LoopWatch()
    watch.start()
    try:
        async with serve(server.handle, host, port, process_request=server.process_request,
                         create_connection=stamped_connection(watch),
                         max_size=p.MAX_TEXT_BYTES, max_queue=16, write_limit=1 << 20,
                         compression=None) as ws_server:
            bound = ws_server.sockets[0].getsockname()[1]
            if ready is not None and not ready.done():
                ready.set_result(bound)
            if announce is not None:
                announce(bound)
            await asyncio.Future()  # until cancelled
    finally:
        watch.stop()
        service.close()
