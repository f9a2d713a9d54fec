"""Reference asyncio client of the streaming protocol (used by tests, benchmarks and the AirSim
adapter): connect, hello, send views, receive chunk frames / unloads / errors, keep credit up."""

from __future__ import annotations

import asyncio
import math

from websockets.asyncio.client import connect

from ..core.keys import ChunkKey
from . import protocol as p


class StreamClient:
    """`async with StreamClient(url) as c:` then `await c.view([...])` and iterate `c.events()`.

    Events are ("chunk", ChunkFrame), ("unload", [keys]), ("error", dict), ("stats", dict).
    Credit is returned automatically as chunk frames arrive, unless auto_credit is False."""

    def __init__(self, url: str, client: str = "worldstream.client", token: str | None = None,
                 sidecars: tuple[str, ...] = (), auto_credit: bool = True):
        self.url = url
        self.hello = p.Hello(protocol=p.PROTOCOL_VERSION, client=client, token=token, sidecars=sidecars)
        self.auto_credit = auto_credit
        self.welcome: dict | None = None
        self._ws = None
        self._seq = 0

    async def __aenter__(self) -> "StreamClient":
        self._ws = await connect(self.url, max_size=256 << 20)
        await self._ws.send(p.encode_client(self.hello))
        first = p.decode_server(await self._ws.recv())
        if first["type"] != "welcome":
            raise p.ProtocolError(first.get("code", p.BAD_MESSAGE), first.get("message", str(first)))
        self.welcome = first
        return self

    async def __aexit__(self, *exc) -> None:
        await self._ws.close()

    async def view(self, cameras: list[p.CameraView]) -> int:
        self._seq += 1
        await self._ws.send(p.encode_client(p.View(seq=self._seq, cameras=tuple(cameras))))
        return self._seq

    async def send_raw(self, text: str | bytes) -> None:
        await self._ws.send(text)

    async def request_stats(self) -> None:
        await self._ws.send(p.encode_client(p.StatsRequest()))

    async def credit(self, chunks: int) -> None:
        await self._ws.send(p.encode_client(p.Credit(chunks=chunks)))

    async def events(self):
        async for message in self._ws:
            if isinstance(message, bytes):
                frame = p.decode_chunk_frame(message)
                if self.auto_credit:
                    await self.credit(1)
                yield "chunk", frame
                continue
            obj = p.decode_server(message)
            if obj["type"] == "unload":
                yield "unload", [ChunkKey.parse(k) for k in obj["keys"]]
            else:
                yield obj["type"], obj

    async def next_event(self, timeout: float = 60.0):
        it = self.events().__aiter__()
        return await asyncio.wait_for(it.__anext__(), timeout)


def camera(x: float, y: float, z: float, yaw_deg: float = 0.0, pitch_deg: float = -30.0, fov_deg: float = 90.0,
           viewport=(1920, 1080), max_sse: float = 16.0, cid: str = "main") -> p.CameraView:
    """An ENU camera at (x, y, z) looking along yaw (degrees from east towards north) and pitch
    (degrees, negative looks down)."""
    cy, sy = math.cos(math.radians(yaw_deg) / 2), math.sin(math.radians(yaw_deg) / 2)
    # body FLU: yaw about z (up), then pitch about y (left): pitch down is a positive rotation about y
    cp, sp = math.cos(math.radians(-pitch_deg) / 2), math.sin(math.radians(-pitch_deg) / 2)
    w = cy * cp
    x_ = -sy * sp
    y_ = cy * sp
    z_ = sy * cp
    return p.CameraView(id=cid, frame="enu", position=(x, y, z), orientation=(w, x_, y_, z_), fov_deg=fov_deg,
                        viewport=tuple(viewport), max_sse=max_sse)
