"""The streaming server on loopback with real websockets: handshake, urgent chunks first, unloads,
hostile input, a stalled client, HTTP tiles, tokens."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request

import pytest

from worldstream.core import ChunkKey
from worldstream.exporters.gltf import read_glb
from worldstream.unreal_bridge import protocol as p
from worldstream.unreal_bridge.client import StreamClient, camera
from worldstream.unreal_bridge.server import run_server

from .conftest import SPEC


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(client, n_chunks, timeout=90):
    chunks, unloads, errors = [], [], []
    async def loop():
        async for kind, ev in client.events():
            if kind == "chunk":
                chunks.append(ev)
                if len(chunks) >= n_chunks:
                    return
            elif kind == "unload":
                unloads.extend(ev)
            elif kind == "error":
                errors.append(ev)
    await asyncio.wait_for(loop(), timeout)
    return chunks, unloads, errors


def test_view_streams_the_most_urgent_chunks_first(server):
    async def go():
        async with StreamClient(f"ws://127.0.0.1:{server}/") as c:
            assert c.welcome["protocol"] == 1 and c.welcome["world"]["seed"] == 7
            await c.view([camera(100.0, 50.0, 300.0, yaw_deg=0, pitch_deg=-40)])
            chunks, _, errors = await collect(c, 6)
            assert not errors
            first = chunks[0]
            assert first.bounds[0] <= 100.0 < first.bounds[2] or first.key.level >= SPEC.levels - 2
            doc, _ = read_glb(first.parts["mesh.glb"])
            assert doc["asset"]["version"] == "2.0"
            assert first.geometric_error > 0 and first.z_range[0] < first.z_range[1]
            keys = [ch.key for ch in chunks]
            assert len(set(keys)) == len(keys)
            await c.request_stats()
            async for kind, ev in c.events():
                if kind == "stats":
                    assert ev["client"]["sent_chunks"] >= 6 and ev["clients"] >= 1
                    break
    run(go())


def test_the_server_declines_per_message_compression(server):
    """Chunk frames are GLB and PNG/TIFF bytes that deflate poorly: the server must not spend its
    event loop deflating them, even for a client that offers permessage-deflate (websockets does)."""
    import websockets

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{server}/", compression="deflate") as ws:
            assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            assert ws.protocol.extensions == []
    run(go())


def test_moving_away_unloads_only_covered_chunks(server):
    async def go():
        async with StreamClient(f"ws://127.0.0.1:{server}/") as c:
            await c.view([camera(0.0, 0.0, 200.0, pitch_deg=-60, max_sse=64)])
            first, _, _ = await collect(c, 12)
            await c.view([camera(30000.0, 0.0, 200.0, pitch_deg=-60, max_sse=64)])
            chunks, unloads, errors = await collect(c, 12)
            assert not errors and unloads
            delivered = {ch.key for ch in first + chunks} - set(unloads)
            # nothing near the new position was unloaded (chunks of the first view still in flight when
            # the second view arrived may be delivered and then unloaded: they lie near the old one)
            for k in unloads:
                w, s, e, n = k.bounds(SPEC)
                assert math.hypot(max(w - 30000.0, 0.0, 30000.0 - e), max(s, 0.0, -n)) > 5000.0, k
            assert delivered
    run(go())


def test_malformed_messages_get_errors_and_other_clients_carry_on(server):
    async def go():
        async with StreamClient(f"ws://127.0.0.1:{server}/") as good, StreamClient(f"ws://127.0.0.1:{server}/") as bad:
            for junk in ("{", '{"type":"view","seq":1,"cameras":[{"position":[1,2]}]}', '{"type":"warp"}', b"\x00\x01"):
                await bad.send_raw(junk)
            codes = []
            async for kind, ev in bad.events():
                if kind == "error":
                    codes.append(ev["code"])
                    if len(codes) == 4:
                        break
            assert codes == [p.BAD_JSON, p.BAD_MESSAGE, p.UNKNOWN_TYPE, p.BAD_MESSAGE]
            await good.view([camera(500.0, 500.0, 150.0)])
            chunks, _, errors = await collect(good, 3)
            assert chunks and not errors
            await bad.view([camera(0.0, 0.0, 150.0)])  # the offender is still served after its errors
            chunks, _, _ = await collect(bad, 1)
            assert chunks
    run(go())


STALL_HOLD_S = 5.0  # how long a stalled client, owed chunks the server holds for it, must get no chunk frame


async def take_chunks(events, n: int, timeout: float = 90.0) -> None:
    """Read events until n chunk frames have come."""
    got = 0
    while got < n:
        kind, _ = await asyncio.wait_for(anext(events), timeout)
        got += kind == "chunk"


async def client_stats(client, events) -> dict:
    """Ask for stats; the reply's per-client part (no chunk frame may come before it)."""
    await client.request_stats()
    while True:
        kind, ev = await asyncio.wait_for(anext(events), 30)
        assert kind != "chunk", "a chunk frame came past the credit"
        if kind == "stats":
            return ev["client"]


def test_a_stalled_client_gets_no_more_than_its_credit(server):
    """A client that returns no credit gets `credit` chunk frames, then none while the server holds
    more for it; credit returned for two releases two more."""
    async def go():
        async with StreamClient(f"ws://127.0.0.1:{server}/", auto_credit=False) as c:
            await c.view([camera(-2000.0, 700.0, 150.0, max_sse=2)])  # needs far more chunks than the credit
            credit = c.welcome["credit"]
            events = c.events()
            await take_chunks(events, credit)
            stalled = await client_stats(c, events)
            assert (stalled["sent_chunks"], stalled["credit"]) == (credit, 0) and stalled["pending"] > 0
            with pytest.raises(TimeoutError):  # then nothing until the client returns credit
                async with asyncio.timeout(STALL_HOLD_S):
                    async for kind, _ in events:
                        assert kind != "chunk", "a chunk frame came while the client was stalled"
            events = c.events()  # the timeout closed the last one
            await c.credit(2)
            await take_chunks(events, 2)
            assert (await client_stats(c, events))["sent_chunks"] == credit + 2

    run(go())


def test_http_serves_the_implicit_tileset_and_chunks(server):
    base = f"http://127.0.0.1:{server}"
    ts = json.loads(urllib.request.urlopen(f"{base}/tileset.json", timeout=30).read())
    assert ts["root"]["implicitTiling"]["subdivisionScheme"] == "QUADTREE"
    sub = urllib.request.urlopen(f"{base}/subtrees/10/0/0.subtree", timeout=30).read()
    assert sub[:4] == b"subt"
    glb = urllib.request.urlopen(f"{base}/chunks/4/1/-1/mesh.glb", timeout=120).read()
    assert glb[:4] == b"glTF"
    from worldstream.exporters.tiles import implicit_index
    d, x, y = implicit_index(ChunkKey(4, 1, -1))
    assert urllib.request.urlopen(f"{base}/implicit/{d}/{x}/{y}.glb", timeout=120).read() == glb
    tif = urllib.request.urlopen(f"{base}/chunks/4/1/-1/height.tif", timeout=120).read()
    assert tif[:2] in (b"II", b"MM")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/chunks/9/0/0/mesh.glb", timeout=30)
    assert err.value.code == 404


def test_token_is_required_when_set(tmp_path):
    async def go():
        ready = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(run_server(SPEC, port=0, workers=1, token="s3cret", ready=ready))
        port = await asyncio.wait_for(ready, 30)
        try:
            with pytest.raises(p.ProtocolError) as err:
                async with StreamClient(f"ws://127.0.0.1:{port}/", token="wrong"):
                    pass
            assert err.value.code == p.UNAUTHORIZED
            async with StreamClient(f"ws://127.0.0.1:{port}/", token="s3cret") as c:
                assert c.welcome["type"] == "welcome"
            status = await asyncio.to_thread(lambda: _status(f"http://127.0.0.1:{port}/tileset.json"))
            assert status == 401
            status = await asyncio.to_thread(lambda: _status(f"http://127.0.0.1:{port}/tileset.json?token=s3cret"))
            assert status == 200
        finally:
            task.cancel()
    run(go())


def _status(url):
    try:
        return urllib.request.urlopen(url, timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code


def test_velocity_is_smoothed_and_teleports_reset_it():
    from worldstream.unreal_bridge.server import MAX_SPEED, track_velocity
    motion = {}
    assert track_velocity(motion, "a", (0, 0, 100), 0.0) == (0.0, 0.0, 0.0)
    v = (0.0, 0.0, 0.0)
    for i in range(1, 40):
        v = track_velocity(motion, "a", (30.0 * i / 30.0, 0, 100), i / 30.0)
    assert v[0] == pytest.approx(30.0, rel=1e-3) and abs(v[1]) < 1e-9
    assert track_velocity(motion, "b", (5, 5, 5), 1.0) == (0.0, 0.0, 0.0)  # cameras are tracked apart
    assert track_velocity(motion, "a", (MAX_SPEED * 10, 0, 100), 40 / 30.0) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_stopping_the_server_leaves_no_worker_processes(signal_name):
    import os
    import signal
    import time

    from bench.live import children, start_server, stop_server

    proc, url = start_server(seed=7, workers=2)
    base = url.replace("ws://", "http://")
    try:
        for i in range(2):  # start both workers
            urllib.request.urlopen(f"{base}chunks/0/{i}/0/tile.json", timeout=120).read()
        workers = children(proc.pid)
        assert len(workers) >= 2
    except BaseException:
        stop_server(proc)  # a failed warm-up must not leave the server (and its workers) running
        raise
    os.kill(proc.pid, getattr(signal, signal_name))
    proc.wait(30)
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{w}") and "Z" not in open(f"/proc/{w}/stat").read().split(")")[1][:3]
              for w in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived the server ({signal_name})"
        time.sleep(0.2)


def _packages_loaded(setup: str, packages: tuple[str, ...]) -> list[str]:
    """Which of `packages` a fresh interpreter has imported after running `setup` (Python code)."""
    import ast
    import subprocess
    import sys

    code = f"import sys\n{setup}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {set(packages)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip())


def test_the_server_process_does_not_load_torch():
    """`serve` only names keys and files and hands jobs to its workers: its own process stays free
    of torch and scipy (about 200 MB of RSS and 1.4 s of start-up), which only the workers load."""
    setup = ("import worldstream.cli, worldstream.unreal_bridge.server as s, worldstream.core as c\n"
             "from worldstream.exporters.mesh_options import MeshOptions\n"
             "s.ChunkService(c.WorldSpec(seed=7), workers=1, options=MeshOptions()).close()")
    assert _packages_loaded(setup, ("torch", "scipy")) == []


def test_a_worker_loads_neither_sympy_nor_scipy():
    """A worker's jobs need torch, not sympy (which torch.broadcast_shapes imports: 0.44 s and
    34 MB a worker) nor scipy (29 MB; only the terrain mesh's rare Delaunay fallback uses it)."""
    setup = ("from worldstream.core import WorldSpec\n"
             "from worldstream.exporters.formats import warm_worker, export_key\n"
             "s = WorldSpec(seed=7, chunk_size=64, levels=5).to_json()\nwarm_worker(s)\n"
             "for k in ('0/0/0', '4/3/-2'):\n    export_key(s, k, ('glb', 'sidecars'))")
    assert _packages_loaded(setup, ("sympy", "scipy")) == []
