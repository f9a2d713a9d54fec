"""Protocol v1, sans-I/O: round trips, every rejection carries a code, chunk frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worldstream.core import ChunkKey
from worldstream.unreal_bridge import protocol as p


def view(**camera):
    cam = {"id": "main", "frame": "enu", "position": [10.0, -20.0, 150.0], "orientation": [1, 0, 0, 0],
           "fov_deg": 90, "viewport": [1920, 1080], "max_sse": 16}
    cam.update(camera)
    return json.dumps({"type": "view", "seq": 3, "cameras": [cam]})


def test_round_trips():
    msgs = [p.Hello(protocol=1, client="test", token="t", sidecars=("height.tif",)), p.StatsRequest(), p.Credit(chunks=8),
            p.View(seq=7, cameras=(p.CameraView(id="a", frame="airsim", position=(1.0, 2.0, -3.0),
                                                orientation=(1.0, 0.0, 0.0, 0.0), fov_deg=90.0, viewport=(256, 144),
                                                max_sse=8.0, player_start=(5.0, 6.0, 7.0)),))]
    for m in msgs:
        assert p.decode_client(p.encode_client(m)) == m


@pytest.mark.parametrize("text, code", [
    ("{not json", p.BAD_JSON),
    (b"\xff\xfe", p.BAD_JSON),
    ("[1, 2]", p.BAD_MESSAGE),
    ('{"type": "teleport"}', p.UNKNOWN_TYPE),
    ('{"type": "hello", "protocol": 2}', p.UNSUPPORTED_VERSION),
    ('{"type": "view", "seq": -1, "cameras": []}', p.BAD_MESSAGE),
    (view(position=[0, 0]), p.BAD_MESSAGE),
    (view(position=[0, 0, float("nan")]).replace("NaN", "NaN"), p.BAD_MESSAGE),
    (view(frame="ecef"), p.BAD_MESSAGE),
    (view(fov_deg=0), p.BAD_MESSAGE),
    (view(viewport=[0, 10]), p.BAD_MESSAGE),
    (view(orientation=[0, 0, 0, 0]), p.BAD_MESSAGE),
    ('{"type": "credit", "chunks": true}', p.BAD_MESSAGE),
    ("x" * (p.MAX_TEXT_BYTES + 1), p.TOO_LARGE),
    ("[" * 100000 + "]" * 100000, p.TOO_LARGE),
])
def test_bad_messages_get_a_code_and_a_clear_message(text, code):
    with pytest.raises(p.ProtocolError) as err:
        p.decode_client(text)
    assert err.value.code == code and str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                              max_leaves=20).map(lambda o: json.dumps({"type": "view", "seq": 1, "cameras": [o]}))))
def test_fuzzed_input_only_ever_raises_protocol_errors(data):
    try:
        p.decode_client(data)
    except p.ProtocolError as err:
        assert err.code
    # anything else escaping would fail the test


def test_chunk_frames_round_trip_and_reject_damage():
    frame = p.ChunkFrame(key=ChunkKey(6, -5, 2**31), geometric_error=0.73, bounds=(-1280.0, 0.0, -1024.0, 256.0),
                         z_range=(-3.5, 120.25), seq=42, parts={"mesh.glb": b"glTF" + bytes(100), "height.tif": b"II*\0"})
    data = p.encode_chunk_frame(frame)
    assert data[:4] == p.CHUNK_MAGIC and p.decode_chunk_frame(data) == frame
    for bad in (data[:50], data[:-1], data + b"x", b"XXXX" + data[4:]):
        with pytest.raises(p.ProtocolError):
            p.decode_chunk_frame(bad)


def test_server_messages_are_json_with_a_type():
    assert json.loads(p.encode_error(p.BAD_JSON, "oops", seq=3)) == {"type": "error", "code": "bad_json",
                                                                      "message": "oops", "seq": 3}
    assert json.loads(p.encode_unload([ChunkKey(3, -1, 2)]))["keys"] == ["3/-1/2"]
    assert p.decode_server(p.encode_welcome({"seed": 1}, credit=16))["credit"] == 16


def test_every_text_message_matches_the_published_schema():
    import jsonschema
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    cam = p.CameraView(id="a", frame="enu", position=(1.0, 2.0, 3.0), orientation=(1.0, 0.0, 0.0, 0.0), fov_deg=90.0,
                       viewport=(640, 480))
    texts = [p.encode_client(m) for m in (p.Hello(protocol=1, token="x"), p.View(seq=1, cameras=(cam,)),
                                          p.StatsRequest(), p.Credit(chunks=3))]
    from worldstream.core import WorldSpec
    texts += [p.encode_welcome(json.loads(WorldSpec(seed=1).to_json()), 16), p.encode_unload([ChunkKey(2, -3, 4)]),
              p.encode_error(p.RATE_LIMITED, "slow down", 4), p.encode_stats({"clients": 2, "uptime_s": 1.0})]
    for t in texts:
        errors = list(validator.iter_errors(json.loads(t)))
        assert not errors, (t, errors[0].message)
    assert list(validator.iter_errors({"type": "error", "code": "oops", "message": "x"}))  # the schema can fail
