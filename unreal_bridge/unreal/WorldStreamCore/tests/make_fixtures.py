"""Write the byte fixtures the C++ core is tested against, made by the Python protocol module
(worldstream.unreal_bridge.protocol) and a real `worldstream generate` chunk, into DIR.

Run by ctest (test `make_fixtures`, a FIXTURES_SETUP of the `fixtures` and `glb` groups):
    python3 tests/make_fixtures.py BUILD/fixtures
Nothing is committed: the fixtures always come from the Python code of this checkout.
"""

from __future__ import annotations

import json
import math
import random
import struct
import sys
from pathlib import Path

from worldstream.core import WorldSpec
from worldstream.core.keys import ChunkKey
from worldstream.unreal_bridge import protocol as p


def client_messages() -> list[dict]:
    """Each case: the arguments the C++ side builds the message from, and Python's text."""
    cases = []
    for client, token, sidecars in (("worldstream.cpp", None, []), ("Unreal Ünïcode \u2603 \U0001F600 \"q\"\n", "t\u00f6k/en", ["height.tif", "normal.png"])):
        hello = p.Hello(protocol=1, client=client, token=token, sidecars=tuple(sidecars))
        cases.append({"kind": "hello", "client": client, "token": token, "sidecars": sidecars,
                      "text": p.encode_client(hello)})
    rng = random.Random(21)
    odd = [0.1, 1e-05, 1e16, 1.5e16, 123456789.123, -0.0, 1e-7, 9.999999999999999e15, 5e-324, 1.7976931348623157e308,
           -2.5, 100.0, 1e22, 0.0001, 0.00012345]
    for seq in (1, 12, 4294967295, 0):
        cams = []
        for i in range(1 + seq % 3):
            pos = [rng.uniform(-1e6, 1e6), odd[(seq + i) % len(odd)], rng.choice(odd)]
            q = [rng.gauss(0, 1) for _ in range(4)]
            n = math.sqrt(sum(c * c for c in q))
            cams.append(p.CameraView(id=f"cam{i}", frame=("enu", "airsim")[i % 2], position=tuple(pos),
                                     orientation=tuple(c / n for c in q), fov_deg=rng.uniform(1, 170),
                                     viewport=(rng.randint(1, 16384), rng.randint(1, 16384)),
                                     max_sse=rng.choice([16.0, 0.5, 1000.0, rng.uniform(0.5, 1000)]),
                                     player_start=(rng.uniform(-1e4, 1e4), 0.0, -12.5)))
        view = p.View(seq=seq, cameras=tuple(cams))
        cases.append({"kind": "view", "seq": seq, "cameras": [
            {"id": c.id, "frame": c.frame, "position": [v.hex() for v in c.position],
             "orientation": [v.hex() for v in c.orientation], "fov_deg": c.fov_deg.hex(), "viewport": list(c.viewport),
             "max_sse": c.max_sse.hex(), "player_start": [v.hex() for v in c.player_start]} for c in cams],
            "text": p.encode_client(view)})
    for n in (0, 1, 4096):
        cases.append({"kind": "credit", "chunks": n, "text": p.encode_client(p.Credit(chunks=n))})
    cases.append({"kind": "stats", "text": p.encode_client(p.StatsRequest())})
    return cases


def floats() -> list[dict]:
    rng = random.Random(7)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(400)]
    values += [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(400)]
    values += [1e-4, 1e-5, 1e15, 1e16, 0.5, 2.0 ** 60, 1 / 3, 5e-324, 2.2250738585072014e-308]
    values = [v for v in values if math.isfinite(v)]
    return [{"hex": v.hex(), "text": json.dumps(v)} for v in values]


def server_messages(spec: WorldSpec) -> list[dict]:
    world = json.loads(spec.to_json())
    return [
        {"text": p.encode_welcome(world, credit=16), "type": "welcome", "credit": 16},
        {"text": p.encode_unload([ChunkKey(6, 12, -13), ChunkKey(0, 0, 0), ChunkKey(30, -2**40, 2**40)]), "type": "unload",
         "keys": ["6/12/-13", "0/0/0", f"30/{-2**40}/{2**40}"]},
        {"text": p.encode_error(p.RATE_LIMITED, "more than 60 messages/s \u00e9", seq=4294967295), "type": "error",
         "code": "rate_limited", "seq": 4294967295},
        {"text": p.encode_error(p.BAD_JSON, "x" * 600), "type": "error", "code": "bad_json"},
        {"text": p.encode_stats({"clients": 1, "client": {"delivered": 3, "pending": 0, "required": 3}}), "type": "stats"},
    ]


def frames(out: Path) -> list[dict]:
    rng = random.Random(3)
    cases = []
    specs = [(ChunkKey(0, 0, 0), 0, {"mesh.glb": b"glTF" + bytes(8)}),
             (ChunkKey(6, -12, 13), 4294967295, {"mesh.glb": bytes(rng.getrandbits(8) for _ in range(1000)),
                                                   "height.tif": b"", "n" * 255: b"xyz"}),
             (ChunkKey(30, -2**40, 2**40), 12345, {}),
             (ChunkKey(17, 5, -7), 1, {"mesh.glb": bytes(70000)})]
    for i, (key, seq, parts) in enumerate(specs):
        frame = p.ChunkFrame(key=key, geometric_error=rng.uniform(0, 100), bounds=(-1.5 * i, 2.25, 1e7, -0.0),
                             z_range=(-200.125, 3000.5), seq=seq, parts=parts)
        data = p.encode_chunk_frame(frame)
        (out / f"frame{i}.bin").write_bytes(data)
        for name, blob in parts.items():
            (out / f"frame{i}.{len(name)}.part").write_bytes(blob)
        cases.append({"file": f"frame{i}.bin", "level": key.level, "x": key.x, "y": key.y, "seq": seq,
                      "geometric_error": frame.geometric_error.hex(), "bounds": [v.hex() for v in frame.bounds],
                      "z_range": [v.hex() for v in frame.z_range],
                      "parts": [{"name": n, "size": len(b), "file": f"frame{i}.{len(n)}.part"} for n, b in parts.items()]})
    return cases


def real_chunk(out: Path) -> dict:
    """One chunk of a town exported by `worldstream generate`, and the frame the server would send."""
    from worldstream.cli import main

    world = out / "world"
    args = ["generate", "--seed", "7", "--chunk-size", "64", "--num-levels", "5", "--center", "2830,-3150",
            "--radius", "1", "--levels", "4:4", "--format", "glb", "--out", str(world), "--quiet"]
    if main(args) != 0:
        raise SystemExit("worldstream generate failed")
    folder = next(world.glob("chunks/4/*/*"))
    glb = (folder / "mesh.glb").read_bytes()
    meta = json.loads((folder / "tile.json").read_text())
    spec = WorldSpec.from_dict(json.loads((world / "world.json").read_text()))
    key = ChunkKey(meta["key"]["level"], meta["key"]["x"], meta["key"]["y"])
    frame = p.ChunkFrame(key=key, geometric_error=meta["geometric_error"] + 0.5 * meta["resolution_m"],
                         bounds=key.bounds(spec), z_range=(meta["enu_min"][2], meta["enu_max"][2]), seq=7,
                         parts={"mesh.glb": glb})
    (out / "real_frame.bin").write_bytes(p.encode_chunk_frame(frame))
    (out / "real_mesh.glb").write_bytes(glb)
    return {"key": key.path(), "origin_unreal_cm": meta["origin_unreal_cm"], "buildings": meta.get("buildings", 0),
            "glb_bytes": len(glb)}


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    spec = WorldSpec(seed=7, chunk_size=64, levels=5)
    doc = {"client": client_messages(), "floats": floats(), "server": server_messages(spec), "frames": frames(out),
           "real": real_chunk(out)}
    (out / "fixtures.json").write_text(json.dumps(doc, indent=1))
    print(f"wrote fixtures to {out}: {len(doc['client'])} client messages, {len(doc['floats'])} floats, "
          f"{len(doc['server'])} server messages, {len(doc['frames'])} frames, real chunk {doc['real']['key']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
