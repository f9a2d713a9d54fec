"""Issue 19's defects against a real server on loopback (real websockets, real HTTP):
D1 (a backlog after a server stall is not a burst), D3 / D8 (out-of-range seq), D7 (the error
budget closes at once), D4 and the HTTP layer (404/400 never 500, cache headers, token decoding,
a bound on HTTP generation), D2 (a corrupt disk-cache entry is regenerated, never served)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage
from websockets.protocol import State

from worldstream.exporters.gltf import read_glb
from worldstream.unreal_bridge import protocol as p
from worldstream.unreal_bridge.client import StreamClient, camera
from worldstream.unreal_bridge.server import run_server

from .conftest import SPEC


@contextlib.contextmanager
def running_server(**kwargs):
    """run_server in a background event-loop thread; yields (port, loop)."""
    loop = asyncio.new_event_loop()
    ready = loop.create_future()
    task = loop.create_task(run_server(SPEC, port=0, ready=ready, **{"workers": 1, **kwargs}))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 30), loop).result()
        yield port, loop
    finally:
        loop.call_soon_threadsafe(task.cancel)
        deadline = time.monotonic() + 60
        while not task.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def http(url: str, headers: dict | None = None):
    """(status, headers, body) of a GET, errors included."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def run(coro, timeout=180):
    return asyncio.run(asyncio.wait_for(coro, timeout))


HELLO = p.encode_client(p.Hello(protocol=1, client="hostile-test"))


# ------------------------------------------------------------------------------ websocket
def test_d3_d8_out_of_range_seq_gets_an_error_and_the_connection_stays(server):
    async def go():
        async with StreamClient(f"ws://127.0.0.1:{server}/") as c:
            await c.send_raw('{"type":"view","seq":' + "7" * 5000 + ',"cameras":[{"position":[0,0,100]}]}')
            kind, ev = await c.next_event(30)
            assert (kind, ev["code"]) == ("error", p.BAD_JSON) and "digits" in ev["message"]
            await c.send_raw(p.encode_client(p.View(seq=2**32, cameras=(camera(0.0, 0.0, 100.0),))))
            kind, ev = await c.next_event(30)
            assert (kind, ev["code"]) == ("error", p.BAD_MESSAGE) and "2^32 - 1" in ev["message"]
            await c.send_raw(p.encode_client(p.View(seq=p.MAX_SEQ, cameras=(camera(0.0, 0.0, 300.0),))))
            kind, frame = await c.next_event(120)  # still open, still served; seq echoed unwrapped
            assert kind == "chunk" and frame.seq == p.MAX_SEQ
    run(go())


def test_d7_forty_bad_messages_at_once_close_promptly(server):
    async def go():
        async with connect(f"ws://127.0.0.1:{server}/") as ws:
            t0 = time.monotonic()
            for _ in range(40):
                await ws.send("{")
            errors = 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    errors += msg["type"] == "error"
            elapsed = time.monotonic() - t0
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert errors == 20 and elapsed < 3.0, (errors, elapsed)
    run(go())


def test_d1_views_queued_during_a_server_stall_are_not_rate_limited():
    """The server's event loop is blocked for 5 s while a client sends 30 views/s (150 views pile
    up, more than the 120 burst); afterwards they are judged by when they arrived: no rate_limited,
    no close, and the client is still served."""
    with running_server() as (port, loop):
        async def go():
            async with StreamClient(f"ws://127.0.0.1:{port}/") as c:
                errors = []

                async def drain():
                    async for kind, ev in c.events():
                        if kind == "error":
                            errors.append(ev["code"])

                reader = asyncio.create_task(drain())
                await c.view([camera(0.0, 0.0, 300.0)])
                await asyncio.sleep(1.0)
                loop.call_soon_threadsafe(time.sleep, 5.0)  # the server stalls
                t0 = time.monotonic()
                for i in range(240):  # 8 s at 30 views/s
                    await c.view([camera(float(i), 0.0, 300.0)])
                    await asyncio.sleep(max(0.0, t0 + (i + 1) / 30.0 - time.monotonic()))
                await asyncio.sleep(1.0)
                await c.request_stats()
                await asyncio.sleep(1.0)
                assert not reader.done(), "the server closed the connection"
                reader.cancel()
                assert errors == []
        run(go())


# ------------------------------------------------------------------------------ HTTP
BAD_PATHS = ["/implicit/9/0/0.glb", "/implicit/10/99999999999/0.glb", "/subtrees/99/0/0.subtree",
             "/subtrees/3/0/0.subtree", "/viewer/" + "a" * 5000, "/subtrees/5/99999999999999999999/0.subtree",
             "/subtrees/5/32/0.subtree", "/chunks/9/0/0/mesh.glb", "/chunks/2/" + "9" * 30 + "/0/mesh.glb",
             "/chunks/2/99999999999999/0/mesh.glb", "/chunks/2/0/0/secret.bin", "/viewer/../server.py",
             "/viewer/%2e%2e/server.py", "/implicit/" + "9" * 5000 + "/0/0.glb", "/nowhere"]


@pytest.mark.parametrize("path", BAD_PATHS, ids=lambda s: s[:40])
def test_d4_bad_paths_are_404_or_400_and_never_stored(server, path):
    status, headers, body = http(f"http://127.0.0.1:{server}{path}")
    assert status in (400, 404), (status, body[:200])
    assert headers["Cache-Control"] == "no-store"
    assert b"WebSocket" not in body


def test_cache_headers_per_route(server):
    base = f"http://127.0.0.1:{server}"
    status, headers, body = http(f"{base}/chunks/3/0/0/mesh.glb")
    assert status == 200 and body[:4] == b"glTF" and "immutable" in headers["Cache-Control"]
    assert "public" in headers["Cache-Control"]
    status, headers, _ = http(f"{base}/subtrees/10/0/0.subtree")
    assert status == 200 and "immutable" in headers["Cache-Control"]
    status, headers, _ = http(f"{base}/subtrees/5/31/0.subtree")
    assert status == 200
    status, headers, _ = http(f"{base}/stats")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    for path in ("/tileset.json", "/viewer/", "/viewer/viewer.js"):
        status, headers, _ = http(f"{base}{path}")
        assert status == 200 and headers["Cache-Control"] == "no-cache", path


def test_the_token_is_percent_decoded_and_guards_both_sides():
    token = "s3 cr/t+é&x"
    with running_server(token=token) as (port, _):
        base = f"http://127.0.0.1:{port}"
        status, headers, _ = http(f"{base}/tileset.json")
        assert status == 401 and headers["Cache-Control"] == "no-store"
        assert http(f"{base}/tileset.json?token={urllib.parse.quote(token[:-1])}")[0] == 401
        status, headers, _ = http(f"{base}/tileset.json?token={urllib.parse.quote(token, safe='')}")
        assert status == 200
        status, headers, _ = http(f"{base}/subtrees/10/0/0.subtree", {"Authorization": f"Bearer {token}".encode().decode("latin-1")})
        assert status == 200 and headers["Cache-Control"].startswith("private")

        async def go():
            with pytest.raises(p.ProtocolError) as err:
                async with StreamClient(f"ws://127.0.0.1:{port}/", token=token[:-1]):
                    pass
            assert err.value.code == p.UNAUTHORIZED
            async with StreamClient(f"ws://127.0.0.1:{port}/", token=token) as c:
                assert c.welcome["type"] == "welcome"
        run(go())


def test_http_generation_is_bounded_with_503_and_retry_after():
    with running_server(http_generation_limit=2) as (port, _):
        keys = [(3, x, y) for x in range(3) for y in range(3)]

        async def go():
            return await asyncio.gather(*(asyncio.to_thread(http, f"http://127.0.0.1:{port}/chunks/{l}/{x}/{y}/mesh.glb")
                                          for l, x, y in keys))
        results = asyncio.run(go())
        statuses = [s for s, _, _ in results]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
        for status, headers, body in results:
            if status == 503:
                assert headers["Retry-After"] == "1" and headers["Cache-Control"] == "no-store"
            else:
                assert read_glb(body)[0]["asset"]["version"] == "2.0"
        stats = json.loads(http(f"http://127.0.0.1:{port}/stats")[2])
        assert stats["service"]["generated"] <= len(keys)
        assert stats["http"]["refused"] == statuses.count(503) and stats["http"]["generating"] == 0


# ------------------------------------------------------------------------------ D2: the disk cache
def test_d2_a_corrupt_cache_entry_is_regenerated_and_repaired_not_served(tmp_path):
    """A truncated mesh.glb and a bit-flipped ortho.png in the disk cache (one server run covers
    both kinds of damage) are regenerated and repaired, never served."""
    path = "/chunks/3/1/-1/mesh.glb"
    with running_server(cache_dir=tmp_path) as (port, _):
        status, _, good = http(f"http://127.0.0.1:{port}{path}")
        assert status == 200
        tif = http(f"http://127.0.0.1:{port}/chunks/3/1/-1/ortho.png")[2]
    cached = tmp_path / "chunks" / "3" / "1" / "-1" / "mesh.glb"
    assert cached.read_bytes() == good
    cached.write_bytes(good[: len(good) // 2])
    png = tmp_path / "chunks" / "3" / "1" / "-1" / "ortho.png"
    flipped = bytearray(png.read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    png.write_bytes(bytes(flipped))
    with running_server(cache_dir=tmp_path) as (port, _):  # a fresh process memory: the disk is asked
        status, _, served = http(f"http://127.0.0.1:{port}{path}")
        assert status == 200 and served == good
        assert http(f"http://127.0.0.1:{port}/chunks/3/1/-1/ortho.png")[2] == tif

        async def ws_chunk():  # the websocket path reads the same (now repaired) entry
            async with StreamClient(f"ws://127.0.0.1:{port}/") as c:
                await c.view([camera(0.0, 0.0, 100.0)])
                await c.request_stats()
                async for kind, ev in c.events():
                    if kind == "stats":
                        return ev
        stats = run(ws_chunk())
        assert stats["service"]["corrupt"] == 2 and stats["service"]["generated"] >= 2
    assert cached.read_bytes() == good and png.read_bytes() == tif  # repaired on disk


# ------------------------------------------------------------------------------ hostile traffic
def test_a_polite_client_keeps_its_stream_while_200_connections_misbehave():
    """A `worldstream serve` process; 200 connections flood (bursts of views over the rate), send
    junk, send oversized messages, or hold chunks without reading or returning credit, while one
    client sends 30 views/s: it gets no error, is never closed, and keeps receiving chunks."""
    from bench.live import free_port, start_worldstream, stop_server, wait_warm

    port = free_port()
    proc = start_worldstream(["serve", "--seed", "7", "--chunk-size", "64", "--num-levels", "5", "--port", str(port),
                              "--workers", "2"], port)
    url = f"ws://127.0.0.1:{port}/"
    view_text = p.encode_client(p.View(seq=1, cameras=(camera(0.0, 0.0, 300.0),)))

    async def flooder(i: int) -> str:
        try:
            async with connect(url, max_size=None, open_timeout=60) as ws:
                await ws.send(HELLO)
                kind = i % 4
                if kind == 0:  # a flood: four bursts of 300 views a second apart, each in one write
                    # (websockets' own framing, then one send). A single burst that lands while the
                    # loaded server's loop is stalled may pass as a trickle (docs/protocol.md, Rate);
                    # 1200 views in 3 s are over the rate by any clock
                    for _ in range(4):
                        if ws.protocol.state is not State.OPEN:  # closed for the first burst(s): see how below
                            break
                        for _ in range(300):
                            ws.protocol.send_text(view_text.encode())
                        ws.send_data()
                        await asyncio.sleep(1.0)
                elif kind == 1:  # junk
                    for _ in range(40):
                        await ws.send("{not json")
                elif kind == 2:  # oversized
                    await ws.send("x" * (p.MAX_TEXT_BYTES + 10))
                else:  # takes chunks, never reads, never returns credit
                    await ws.send(p.encode_client(p.View(seq=1, cameras=(camera(1000.0 * i, 0.0, 200.0, max_sse=2),))))
                    await asyncio.sleep(12)
                    return "open"
                try:  # the offenders read on, to see how the server ends it
                    await asyncio.wait_for(_drain(ws), 12)
                except asyncio.TimeoutError:
                    return "open"
                return "ended"
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else None}"
        except (OSError, InvalidHandshake, InvalidMessage) as exc:  # a loaded server may drop a flooder's handshake
            return f"refused {exc}"

    hostile: list[asyncio.Task] = []

    async def polite() -> tuple[int, list, bool]:
        async with StreamClient(url) as c:  # connected and streaming before the attack starts
            hostile.extend(asyncio.create_task(flooder(i)) for i in range(200))
            chunks, errors = [], []

            async def read():
                async for kind, ev in c.events():
                    if kind == "chunk":
                        chunks.append(ev)
                    elif kind == "error":
                        errors.append(ev)

            reader = asyncio.create_task(read())
            t0 = time.monotonic()
            for i in range(360):  # 12 s at 30 views/s, flying east at 60 m/s
                await c.view([camera(2.0 * i, 0.0, 300.0, max_sse=8)])
                await asyncio.sleep(max(0.0, t0 + (i + 1) / 30.0 - time.monotonic()))
            open_at_end = not reader.done()
            reader.cancel()
            return len(chunks), errors, open_at_end

    async def go():
        good = await polite()
        outcomes = await asyncio.gather(*hostile)
        return good, outcomes

    try:
        # the claim is about a stream under attack, not a cold start: on a loaded machine the
        # workers' warm-up (torch imported, the World built) alone can outlast the 12 s the client
        # is watched
        wait_warm(url, 2, timeout_s=120)
        (n_chunks, errors, open_at_end), outcomes = run(go(), timeout=240)
    finally:
        stop_server(proc)
    # 51 clients want chunks from 2 generator processes taking turns: a fair share is a few chunks
    assert open_at_end and errors == [] and n_chunks >= 3, (open_at_end, errors[:3], n_chunks)
    # under heavy load the server may drop a few attackers' handshakes: they never got to attack
    refused = [o for o in outcomes if o.startswith("refused")]
    assert len(refused) <= len(outcomes) // 10, refused[:3]
    by_kind = {k: {o for i, o in enumerate(outcomes) if i % 4 == k and not o.startswith("refused")} for k in range(4)}
    # floods and junk hit the error budget (1008), oversized messages the size limit (1009)
    assert by_kind[0] == {"closed 1008"} and by_kind[1] == {"closed 1008"}, by_kind
    assert by_kind[2] == {"closed 1009"} and by_kind[3] == {"open"}, by_kind


async def _drain(ws) -> None:
    async for _ in ws:
        pass
