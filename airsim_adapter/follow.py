"""`worldstream airsim follow`: stream chunks around AirSim vehicles.

A thread of its own polls the vehicles' cameras with the official client (simGetCameraInfo gives
each camera's pose in the vehicle's NED frame and its FOV) and hands the latest poses to the
asyncio side, which sends them to the streaming server as views in the protocol's "airsim" frame,
anchored at the vehicle's home (getHomeGeoPoint, converted with the world's origin). What the
server sends is kept: the resident set (chunk frames add, unloads remove) and, with `out`, every
chunk's files under out/chunks/{level}/{x}/{y}/ plus out/resident.json, written atomically, for a
consumer such as an Unreal actor loading them with glTFRuntime.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np

from ..core import frames
from ..core.keys import ChunkKey
from ..exporters.atomic import write_dir_atomic, write_file_atomic
from ..unreal_bridge import protocol as p
from ..unreal_bridge.client import StreamClient

RESIDENT_WRITE_S = 1.0


def camera_view(camera_id: str, position_ned, orientation_ned, fov_deg: float, home_enu, viewport=(1920, 1080),
                max_sse: float = 16.0) -> p.CameraView:
    """A camera pose as AirSim gives it (vehicle-frame NED position, NED quaternion w, x, y, z of
    the camera's x forward, y right, z down axes) -> a view in the protocol's "airsim" frame."""
    return p.CameraView(id=camera_id, frame="airsim", position=tuple(float(v) for v in position_ned),
                        orientation=tuple(float(v) for v in orientation_ned), fov_deg=float(fov_deg),
                        viewport=tuple(viewport), max_sse=max_sse,
                        player_start=tuple(float(v) for v in home_enu))


class CameraPoller(threading.Thread):
    """Polls camera poses at `hz` with a client made in this thread (the official client runs its
    own event loop and cannot share the asyncio one); `latest` holds the newest views."""

    def __init__(self, make_client, vehicle: str, cameras: list[str], origin, hz: float, viewport, max_sse: float):
        super().__init__(daemon=True, name="airsim-poller")
        self.make_client, self.vehicle, self.cameras, self.origin = make_client, vehicle, cameras, origin
        self.period, self.viewport, self.max_sse = 1.0 / hz, viewport, max_sse
        self.latest: tuple[list[p.CameraView], np.ndarray] | None = None
        self.error: BaseException | None = None
        self.polls = 0
        self.stop = threading.Event()
        self.updated = threading.Event()

    def run(self) -> None:
        try:
            client = self.make_client()
            home = client.getHomeGeoPoint(vehicle_name=self.vehicle)
            home_enu = frames.geodetic_to_enu(home.latitude, home.longitude, home.altitude, self.origin)
            while not self.stop.is_set():
                t0 = time.monotonic()
                views = []
                for cam in self.cameras:
                    info = client.simGetCameraInfo(cam, vehicle_name=self.vehicle)
                    pos, q = info.pose.position, info.pose.orientation
                    views.append(camera_view(cam, (pos.x_val, pos.y_val, pos.z_val),
                                             (q.w_val, q.x_val, q.y_val, q.z_val), info.fov, home_enu,
                                             self.viewport, self.max_sse))
                vehicle = client.simGetVehiclePose(vehicle_name=self.vehicle).position
                enu = frames.airsim_to_enu(np.array([vehicle.x_val, vehicle.y_val, vehicle.z_val]), home_enu)
                self.latest = (views, enu)
                self.polls += 1
                self.updated.set()
                self.stop.wait(max(0.0, self.period - (time.monotonic() - t0)))
        except BaseException as exc:  # noqa: BLE001 - reported by follow() on the asyncio side
            self.error = exc
            self.updated.set()


class Resident:
    """The chunks the server has sent and not unloaded: key -> (geometric error, bounds)."""

    def __init__(self, out: Path | None):
        self.out = out
        self.chunks: dict[ChunkKey, tuple[float, tuple]] = {}
        self.received = 0
        self.bytes = 0
        self._written = 0.0

    def add(self, frame: p.ChunkFrame) -> None:
        self.chunks[frame.key] = (frame.geometric_error, frame.bounds)
        self.received += 1
        self.bytes += sum(len(b) for b in frame.parts.values())

    def store(self, frame: p.ChunkFrame) -> None:
        """The chunk's files on disk (blocking I/O: run it off the event loop)."""
        if self.out is not None:
            write_dir_atomic(self.out / "chunks" / frame.key.path(), frame.parts)

    def remove(self, keys) -> None:
        for k in keys:
            self.chunks.pop(k, None)

    def covering(self, x: float, y: float) -> ChunkKey | None:
        """The finest resident chunk whose bounds hold (x, y)."""
        best = None
        for k, (_, (w, s, e, n)) in self.chunks.items():
            if w <= x < e and s < y <= n and (best is None or k.level > best.level):
                best = k
        return best

    def levels(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for k in self.chunks:
            out[k.level] = out.get(k.level, 0) + 1
        return dict(sorted(out.items()))

    def due(self) -> bool:
        return self.out is not None and time.monotonic() - self._written >= RESIDENT_WRITE_S

    def write(self) -> None:
        """resident.json (blocking I/O: run it off the event loop)."""
        if self.out is None:
            return
        self._written = time.monotonic()
        doc = {"chunks": [{"key": k.path(), "geometric_error": e, "bounds": list(b), "folder": f"chunks/{k.path()}/"}
                          for k, (e, b) in sorted(self.chunks.items())]}
        write_file_atomic(self.out / "resident.json", json.dumps(doc).encode())


async def follow(server_url: str, make_client, origin, vehicle: str = "", cameras: tuple[str, ...] = ("front_center",),
                 hz: float = 10.0, out: Path | str | None = None, duration: float | None = None,
                 viewport=(1920, 1080), max_sse: float = 16.0, token: str | None = None, log=lambda msg: None,
                 stop: asyncio.Event | None = None) -> dict:
    """Stream around the vehicle until `duration` seconds pass, `stop` is set (the CLI sets it on
    Ctrl-C) or, with `duration` None, until cancelled; then it writes resident.json and returns the
    summary."""
    out = Path(out) if out is not None else None
    resident = Resident(out)
    poller = CameraPoller(make_client, vehicle, list(cameras), origin, hz, viewport, max_sse)
    poller.start()
    views_sent, last_enu = 0, None
    deadline = None if duration is None else time.monotonic() + duration
    try:  # stopped by `duration`, `stop` (Ctrl-C), the server or cancellation: the summary either way
        async with StreamClient(server_url, client="worldstream.airsim.follow", token=token) as stream:
            async def receive():
                async for kind, event in stream.events():
                    if kind == "chunk":
                        resident.add(event)
                        await asyncio.to_thread(resident.store, event)
                    elif kind == "unload":
                        resident.remove(event)
                    elif kind == "error":
                        log(f"server error: {event.get('code')} {event.get('message')}")
                    if resident.due():
                        await asyncio.to_thread(resident.write)

            receiver = asyncio.create_task(receive())
            sent = None
            try:
                while (deadline is None or time.monotonic() < deadline) and not (stop and stop.is_set()):
                    await asyncio.sleep(1.0 / hz)
                    if poller.error is not None:
                        raise poller.error
                    latest = poller.latest
                    if latest is None or latest is sent:
                        continue
                    sent = latest
                    await stream.view(latest[0])
                    views_sent += 1
                    last_enu = latest[1]
                    if receiver.done():
                        receiver.result()  # the server closed the connection: say why
                        break
            finally:
                receiver.cancel()
    except asyncio.CancelledError:
        if duration is not None:  # a bounded run cancelled from outside: the caller wants no summary
            raise
        log("stopped")
    finally:
        poller.stop.set()
        await asyncio.to_thread(poller.join, 5)
    if stop is not None and stop.is_set():
        log("stopped")
    resident.write()
    cover = resident.covering(float(last_enu[0]), float(last_enu[1])) if last_enu is not None else None
    return {"views_sent": views_sent, "polls": poller.polls, "chunks_received": resident.received,
            "bytes_received": resident.bytes, "resident": len(resident.chunks), "levels": resident.levels(),
            "vehicle_enu": None if last_enu is None else [float(v) for v in last_enu],
            "finest_under_vehicle": None if cover is None else cover.path()}
