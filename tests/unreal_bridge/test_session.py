"""The per-connection rules as a sans-I/O state machine (no sockets): hostile event sequences,
the D1 backlog case, the error budget (D7), and the protocol's integer limits (D3, D8)."""

from __future__ import annotations

import json

import pytest

from worldstream.core import ChunkKey
from worldstream.unreal_bridge import protocol as p
from worldstream.unreal_bridge import session as ss
from worldstream.unreal_bridge.client import camera

WELCOME = p.encode_welcome({"seed": 1}, 16)
HELLO = p.encode_client(p.Hello(protocol=1, client="t"))


def view(seq: int) -> str:
    return p.encode_client(p.View(seq=seq, cameras=(camera(0.0, 0.0, 100.0),)))


def new_session(token=None, **limits) -> ss.Session:
    s = ss.Session(WELCOME, ("height.tif",), token=token, limits=ss.Limits(**limits))
    assert s.receive(HELLO if token is None else p.encode_client(p.Hello(protocol=1, token=token)), 0.0) == [
        ss.SendText(WELCOME)]
    return s


def codes(actions) -> list[str]:
    return [json.loads(a.text)["code"] for a in actions if isinstance(a, ss.SendText) and '"error"' in a.text]


def test_hello_comes_first_and_once():
    s = ss.Session(WELCOME, ())
    assert codes(s.receive(view(1), 0.0)) == [p.NOT_READY]
    assert s.receive(HELLO, 0.1) == [ss.SendText(WELCOME)]
    assert codes(s.receive(HELLO, 0.2)) == [p.BAD_MESSAGE]
    out = s.receive(view(2), 0.3)
    assert isinstance(out[0], ss.NewView) and out[0].view.seq == 2 and out[0].at == 0.3


def test_a_wrong_token_is_unauthorized_and_closes():
    s = ss.Session(WELCOME, (), token="s3cret")
    out = s.receive(p.encode_client(p.Hello(protocol=1, token="s3cres")), 0.0)
    assert codes(out) == [p.UNAUTHORIZED] and out[-1] == ss.Close(1008, "unauthorized")
    assert s.closed and s.receive(HELLO, 0.1) == []
    assert ss.Session(WELCOME, (), token="s3cret").receive(HELLO, 0.0)[-1] == ss.Close(1008, "unauthorized")
    assert ss.tokens_equal("é/+ x", "é/+ x") and not ss.tokens_equal(None, "x") and not ss.tokens_equal("x", "xx")


def test_unknown_sidecars_are_refused():
    s = ss.Session(WELCOME, ("height.tif",))
    assert codes(s.receive(p.encode_client(p.Hello(protocol=1, sidecars=("secret.bin",))), 0.0)) == [p.BAD_MESSAGE]
    assert s.hello is None


def test_d1_a_backlog_that_arrived_spread_out_is_not_a_burst():
    """30 views/s for 20 s (600 messages, five times the burst), all processed in one go after a
    stall: judged by arrival time, none is rate-limited."""
    s = new_session()
    actions = [a for i in range(600) for a in s.receive(view(i), 1.0 + i / 30.0)]
    assert codes(actions) == [] and s.rate_limited == 0 and not s.closed
    assert sum(isinstance(a, ss.NewView) for a in actions) == 600


def test_a_real_burst_is_rate_limited_then_closed():
    s = new_session()
    actions = [a for i in range(200) for a in s.receive(view(i), 1.0)]
    assert sum(isinstance(a, ss.NewView) for a in actions) == 120  # the burst (refilled since the hello)
    assert codes(actions) == [p.RATE_LIMITED] * 20  # the 20th strike closes
    assert actions[-1] == ss.Close(1008, "too many protocol errors") and s.closed
    assert s.receive(view(999), 100.0) == []


def test_d7_forty_bad_messages_close_at_the_twentieth():
    s = ss.Session(WELCOME, ())
    closes = []
    for i in range(40):
        out = s.receive("{", 0.0)
        closes += [i for a in out if isinstance(a, ss.Close)]
    assert closes == [19]


def test_strikes_are_forgiven_over_time():
    s = new_session(forgive_s=5.0)
    for i in range(19):
        assert codes(s.receive('{"type":"warp"}', 1.0)) == [p.UNKNOWN_TYPE]
    # 100 s later 20 strikes are forgiven: another 19 errors do not close
    for i in range(19):
        assert codes(s.receive('{"type":"warp"}', 101.0)) == [p.UNKNOWN_TYPE]
    assert not s.closed
    out = s.receive('{"type":"warp"}', 101.0)
    assert out[-1] == ss.Close(1008, "too many protocol errors")


def test_arrival_times_running_backwards_count_as_simultaneous():
    s = new_session(rate=10.0, burst=2.0)
    assert not codes(s.receive(view(1), 5.0)) and not codes(s.receive(view(2), 5.0))
    assert codes(s.receive(view(3), 1.0)) == [p.RATE_LIMITED]  # no refill from a stamp in the past


def test_credit_is_granted_capped_and_spent():
    s = new_session(credit=2, max_credit=5)
    assert s.spend_credit() and s.spend_credit() and not s.spend_credit()
    assert s.receive(p.encode_client(p.Credit(chunks=100)), 1.0) == [ss.CreditGranted(5)]
    assert s.receive('{"type":"stats"}', 1.1) == [ss.SendStats()]


def test_uncredited_frames_count_what_was_sent_and_not_credited():
    s = new_session(credit=16)
    for _ in range(5):
        assert s.spend_credit()
    assert s.uncredited == 5
    s.receive(p.encode_client(p.Credit(chunks=3)), 1.0)
    assert s.uncredited == 2


def test_binary_messages_are_rejected():
    s = new_session()
    assert codes(s.receive(b"\x00\x01", 1.0)) == [p.BAD_MESSAGE]


def test_arrival_window_start():
    # a first read: now; else since the previous read, but not before the loop last ran ...
    assert ss.arrival_window_start(10.0, None, 9.0, False) == 10.0
    assert ss.arrival_window_start(10.0, 4.0, 9.5, False) == 9.5
    assert ss.arrival_window_start(10.0, 4.0, None, False) == 4.0
    # ... unless reading was paused: the bytes waited in the kernel since that read, loop running or not
    assert ss.arrival_window_start(10.0, 4.0, 9.5, True) == 4.0
    # a stalled loop (its last tick before the previous read): since the previous read
    assert ss.arrival_window_start(10.0, 4.0, 2.0, False) == 4.0


def test_arrival_window_end():
    # messages read at t=10 whose socket last received data 3 s before: they came by t=7
    assert ss.arrival_window_end(10.0, 4.0, 3.0) == 7.0
    # never before the window's start, never after the read; unknown (not TCP): the read
    assert ss.arrival_window_end(10.0, 8.5, 3.0) == 8.5
    assert ss.arrival_window_end(10.0, 4.0, 0.0) == 10.0
    assert ss.arrival_window_end(10.0, 4.0, None) == 10.0
    # a burst read 5 s late after a stalled loop stays a burst: 300 views within 0.1 s, not 5 s
    start, end = 5.0, ss.arrival_window_end(10.0, 5.0, 4.9)
    assert ss.arrivals_from_backlog(start, end, 300, 30000, [])[-1] == pytest.approx(5.1)


def test_the_kernel_tells_when_a_socket_last_received_data():
    """arrivals._last_data_age on a real loopback TCP connection: data sent, read 0.4 s later."""
    import socket
    import time

    from worldstream.unreal_bridge.arrivals import _last_data_age

    class Transport:  # what asyncio's transport offers: its socket
        def __init__(self, sock):
            self.sock = sock

        def get_extra_info(self, name):
            return self.sock if name == "socket" else None

    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"x" * 30000)
                time.sleep(0.4)
                got = 0
                while got < 30000:
                    got += len(conn.recv(1 << 16))
                age = _last_data_age(Transport(conn))
    if age is None:
        pytest.skip("TCP_INFO is not readable here (not Linux)")
    assert 0.3 <= age <= 2.0, age


def test_arrivals_from_backlog():
    # 6 messages of 600 bytes read at t=10 after a pause since t=4, sampled by the watch: by t=5
    # 200 bytes waited (2 messages, spread over 4..5), by t=6 all 600 (the other 4 over 5..6)
    assert ss.arrivals_from_backlog(4.0, 10.0, 6, 600, [(5.0, 200), (6.0, 600)]) == pytest.approx(
        [4.5, 5.0, 5.25, 5.5, 5.75, 6.0])
    # a burst all there at the first sample stays a burst (within that 50 ms); bytes after the last
    # sample came after it
    assert ss.arrivals_from_backlog(4.0, 10.0, 4, 400, [(4.05, 400)]) == pytest.approx([4.0125, 4.025, 4.0375, 4.05])
    assert ss.arrivals_from_backlog(4.0, 10.0, 2, 400, [(5.0, 200)]) == [5.0, 10.0]
    # no samples: spread over the window
    assert ss.arrivals_from_backlog(0.0, 6.0, 3, 300, []) == ss.spread_arrivals(0.0, 6.0, 3)
    assert ss.arrivals_from_backlog(0.0, 6.0, 0, 0, []) == []


def test_spread_arrivals():
    assert ss.spread_arrivals(0.0, 6.0, 3) == [2.0, 4.0, 6.0]
    assert ss.spread_arrivals(7.0, 6.0, 2) == [6.0, 6.0]
    assert ss.spread_arrivals(0.0, 1.0, 0) == []


# ------------------------------------------------------------------------------ protocol integers
def test_d3_a_seq_of_5000_digits_is_bad_json_not_a_crash():
    text = '{"type":"view","seq":' + "9" * 5000 + ',"cameras":[{"position":[0,0,1]}]}'
    with pytest.raises(p.ProtocolError) as err:
        p.decode_client(text)
    assert err.value.code == p.BAD_JSON and "5000 digits" in str(err.value)


def test_d8_seq_must_fit_in_32_bits():
    ok = p.decode_client(view(p.MAX_SEQ))
    assert ok.seq == 2**32 - 1
    for seq in (2**32, 2**40, -1):
        with pytest.raises(p.ProtocolError) as err:
            p.decode_client(view(0).replace('"seq":0', f'"seq":{seq}'))
        assert err.value.code == p.BAD_MESSAGE and "2^32 - 1" in str(err.value)
    frame = p.ChunkFrame(key=ChunkKey(1, 0, 0), geometric_error=1.0, bounds=(0, 0, 1, 1), z_range=(0, 1),
                         seq=2**32, parts={"mesh.glb": b"x"})
    with pytest.raises(ValueError, match="u32"):
        p.encode_chunk_frame(frame)
    top = p.decode_chunk_frame(p.encode_chunk_frame(p.ChunkFrame(**{**frame.__dict__, "seq": p.MAX_SEQ})))
    assert top.seq == p.MAX_SEQ


@pytest.mark.parametrize("position", ["[1e400,0,0]", "[" + "9" * 400 + ",0,0]", "[10000000000000000000,0,1e999]"])
def test_out_of_range_numbers_are_errors_not_crashes(position):
    with pytest.raises(p.ProtocolError) as err:
        p.decode_client('{"type":"view","seq":1,"cameras":[{"position":%s}]}' % position)
    assert err.value.code in (p.BAD_JSON, p.BAD_MESSAGE)


# ------------------------------------------------------------------------------ strictness, both sides
CAM = '{"position":[0,0,100]}'
CLIENT_TEXTS = [
    '{"type":"hello","protocol":1}', '{"type":"hello","protocol":1,"client":"' + "c" * 128 + '"}',
    '{"type":"hello","protocol":1,"client":"' + "c" * 129 + '"}', '{"type":"hello","protocol":1,"colour":"red"}',
    '{"type":"hello","protocol":1,"token":"' + "t" * 1025 + '"}', '{"type":"hello","protocol":1,"sidecars":["x.bin"]}',
    '{"type":"view","seq":4294967295,"cameras":[%s]}' % CAM, '{"type":"view","seq":4294967296,"cameras":[%s]}' % CAM,
    '{"type":"view","seq":1,"cameras":[%s],"extra":1}' % CAM, '{"type":"view","seq":1,"cameras":[{"position":[0,0,1],"zoom":2}]}',
    '{"type":"view","seq":1,"cameras":[{"position":[0,0,1],"viewport":[0,10]}]}',
    '{"type":"view","seq":1,"cameras":[{"position":[0,0,1],"fov_deg":171}]}',
    '{"type":"stats"}', '{"type":"stats","x":1}', '{"type":"credit","chunks":4096}', '{"type":"credit","chunks":4097}',
    '{"type":"credit","chunks":1,"more":true}',
]


@pytest.mark.parametrize("text", CLIENT_TEXTS, ids=range(len(CLIENT_TEXTS)))
def test_the_server_accepts_exactly_what_the_schema_accepts(text):
    import jsonschema
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json").read_text())
    schema_ok = jsonschema.Draft202012Validator(schema).is_valid(json.loads(text))
    try:
        p.decode_client(text)
        server_ok = True
    except p.ProtocolError:
        server_ok = False
    assert schema_ok == server_ok, (schema_ok, server_ok)


def test_the_welcome_world_matches_the_schema():
    import jsonschema
    from pathlib import Path

    from worldstream.core import WorldSpec
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json").read_text())
    welcome = json.loads(p.encode_welcome(json.loads(WorldSpec(seed=3).to_json()), 16))
    assert jsonschema.Draft202012Validator(schema).is_valid(welcome)
    welcome["world"].pop("chunk_size")
    assert not jsonschema.Draft202012Validator(schema).is_valid(welcome)


def test_d1_credit_returned_per_frame_does_not_count_against_the_rate():
    """30 views/s while the server sends 50 frames/s, each credited back at once: 80 messages/s,
    none rate-limited; credit beyond the frames sent counts (and a flood of it is limited)."""
    s = new_session(credit=64, max_credit=64)
    credit = p.encode_client(p.Credit(chunks=1))
    actions = []
    for i in range(600):  # 20 s
        t = 1.0 + i / 30.0
        actions += s.receive(view(i), t)
        for j in range(2 if i % 3 else 1):  # 5 frames per 3 views: 50 frames/s
            assert s.spend_credit()
            actions += s.receive(credit, t + 0.001 * (j + 1))
    assert codes(actions) == [] and s.rate_limited == 0 and s.credit == 64
    flood = [a for _ in range(200) for a in s.receive(credit, 30.0)]  # nothing outstanding: each costs a token
    assert p.RATE_LIMITED in codes(flood) and s.credit == 64


def test_hostile_event_sequences_never_raise():
    """Thousands of random messages (fragments of real ones, huge and odd numbers, wrong types,
    binary) with random arrival times: every one gets actions, never an exception; the session ends
    closed or open, consistently."""
    import random

    rng = random.Random(19)
    values = ['0', '-1', '1e400', '9' * 30, '4294967296', 'true', 'null', '"x"', '[]', '{}', '[1,2]', '[0,0,1]',
              '[1,0,0,0]', '[1920,1080]', '"enu"', '"airsim"', '[' * 50, '"height.tif"', '["height.tif"]']
    fields = ['"type"', '"seq"', '"cameras"', '"position"', '"chunks"', '"protocol"', '"token"', '"sidecars"',
              '"viewport"', '"orientation"', '"fov_deg"', '"frame"', '"id"']
    types = ['"hello"', '"view"', '"credit"', '"stats"', '"warp"']
    closed_runs = 0
    for run in range(40):
        s = ss.Session(WELCOME, ("height.tif",), token=None if run % 2 else "k")
        t = 0.0
        valid = 0.97 if run % 4 == 1 else 0.1  # a quarter of the runs mostly behave
        if run % 4 == 1:
            s.receive(HELLO, t)
        for i in range(100):
            t += rng.choice([0.0, 0.001, 0.05, 1.0])
            kind = rng.random()
            if kind < 0.1 * (1.0 - valid):
                msg = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
            elif kind < 0.1 + valid:
                msg = rng.choice([HELLO, view(i), '{"type":"credit","chunks":3}', '{"type":"stats"}'])
            else:
                body = [f'"type":{rng.choice(types)}'] + [f"{rng.choice(fields)}:{rng.choice(values)}"
                                                          for _ in range(rng.randrange(5))]
                if rng.random() < 0.3:
                    body.append('"cameras":[{' + ",".join(f"{rng.choice(fields)}:{rng.choice(values)}"
                                                          for _ in range(rng.randrange(6))) + "}]")
                msg = "{" + ",".join(body) + "}"
            for action in s.receive(msg, t):
                assert isinstance(action, (ss.SendText, ss.Close, ss.NewView, ss.SendStats, ss.CreditGranted))
        closed_runs += s.closed
    assert 0 < closed_runs < 40  # some runs hit the error budget (or a wrong token), some did not


# ------------------------------------------------------------------------------ delivery (selection, unloads)
def _sel(*keys, visible=True):
    from worldstream.unreal_bridge.lod import Selected
    return [Selected(key=k, sse=100.0 - i, distance=float(i), visible=visible) for i, k in enumerate(keys)]


def test_delivery_unloads_a_parent_only_when_all_its_children_arrived():
    d = ss.Delivery(max_level=6, hold_s=0.0)
    parent = ChunkKey(0, 1, 1)  # level 0: no hole filler goes before it
    kids = parent.children()
    assert d.on_selection(_sel(parent), 10.0) == [] and d.pending == [parent]
    assert d.on_sent(parent, 10.5) == [] and d.latencies == [0.5]
    assert d.on_selection(_sel(*kids), 11.0) == []  # refine: the parent stays while children are missing
    for k in kids[:3]:
        assert d.on_sent(k, 12.0) == []
    assert d.on_sent(kids[3], 12.0) == [parent]  # covered now: unloaded (no hold), and forgotten
    assert parent not in d.delivered and d.pending == []
    assert d.on_selection(_sel(parent), 13.0) == [] and d.pending == [parent]  # wanted again: sent again
    assert set(d.on_sent(parent, 13.2)) == set(kids)  # the children go once the parent is back
    assert d.views_selected == 3 and d.views_resolved == 0


def test_delivery_holds_a_covered_parent_so_that_wanting_it_back_sends_nothing():
    d = ss.Delivery(max_level=6, hold_s=5.0)
    parent = ChunkKey(0, 1, 1)
    kids = parent.children()
    d.on_selection(_sel(parent), 10.0)
    d.on_sent(parent, 10.0)
    d.on_selection(_sel(*kids), 11.0)
    assert [d.on_sent(k, 12.0) for k in kids] == [[], [], [], []]  # covered at 12.0: held, not unloaded
    assert parent in d.delivered and d.on_selection(_sel(*kids), 16.9) == []
    assert set(d.on_selection(_sel(parent), 16.95)) == set(kids)  # back within the hold: nothing to send, and
    assert d.pending == [] and d.delivered == {parent}  # the kids it covers go at once
    d.on_selection(_sel(*kids), 17.0)
    d.on_sent(kids[0], 17.1)
    assert [d.on_sent(k, 18.0) for k in kids[1:]] == [[], [], []]  # covered again at 18.0: held for 5 s from then
    assert d.on_selection(_sel(*kids), 22.9) == [] and d.on_selection(_sel(*kids), 23.0) == [parent]


def test_delivery_unloads_what_no_required_chunk_overlaps_at_once():
    d = ss.Delivery(max_level=6)
    here, there = ChunkKey(3, 0, 0), ChunkKey(3, 40, 40)
    d.on_selection(_sel(here), 0.0)
    d.on_sent(here, 0.1)
    assert d.on_selection(_sel(there), 1.0) == [here]
    assert d.on_selection(_sel(there), 1.1) == []  # nothing left to unload twice


def test_delivery_times_urgency_from_the_first_view_wanting_the_key():
    d = ss.Delivery(max_level=6)
    a, b = ChunkKey(0, 0, 0), ChunkKey(0, 1, 0)
    d.on_selection(_sel(a, b), 1.0)
    d.on_selection(_sel(a, b), 2.0)  # still the same most urgent key: timed from 1.0
    d.on_sent(a, 3.0)
    assert d.latencies == [2.0]
    d.on_failed(b)
    assert d.pending == [] and not d.wants(b)
    d.on_selection(_sel(a, b), 4.0)
    assert d.pending == [b] and d.views_selected == 3


def test_delivery_times_only_what_the_current_cameras_need_not_prefetches():
    from worldstream.unreal_bridge.lod import Selected
    d = ss.Delivery(max_level=6)
    here, ahead = ChunkKey(0, 0, 0), ChunkKey(0, 1, 0)
    needed = Selected(key=here, sse=5.0, distance=0.0, visible=True)
    prefetch = Selected(key=ahead, sse=9.0, distance=0.0, visible=True, soon=True, needed=False)
    d.on_selection([prefetch], 1.0)  # only a prefetch to send: the view misses nothing
    assert d.pending == [ahead] and d.urgent == {} and d.views_resolved == 1
    d.on_selection([prefetch, needed], 2.0)  # the needed key is the view's most urgent missing chunk
    assert d.pending == [ahead, here] and d.urgent == {here: 2.0}
    d.on_sent(ahead, 2.5)
    d.on_sent(here, 3.0)
    assert d.latencies == [1.0] and d.views_resolved == 1
    behind = Selected(key=ChunkKey(0, 2, 0), sse=1.0, distance=0.0, visible=False)  # kept for a turning camera
    d.on_selection([needed, behind], 4.0)
    assert d.pending == [behind.key] and d.urgent == {} and d.views_resolved == 2


def test_reselection_skips_views_that_change_no_decision():
    import math

    from worldstream.unreal_bridge import lod

    def cam(x=0.0, yaw_deg=0.0, max_sse=16.0):
        yaw = math.radians(yaw_deg)
        return lod.Camera((x, 0.0, 120.0), (math.cos(yaw), math.sin(yaw), 0.0), (0.0, 0.0, 1.0), math.radians(90.0),
                          1920, 1080, max_sse)

    r = ss.Reselection(parent_error=2.0)  # the finest level's parents refine within 120 m: tolerance 6 m
    assert r.due([cam()], [cam(60.0)], 0.0)  # the first view
    assert not r.due([cam(1.0)], [cam(61.0)], 1 / 30)  # a metre: nothing changes
    assert not r.due([cam(5.0)], [cam(70.0)], 0.1)
    assert r.due([cam(6.5)], [cam(66.0)], 0.15)  # 6.5 m from the last selection
    assert not r.due([cam(7.0, yaw_deg=0.5)], [cam(66.0)], 0.2)
    assert r.due([cam(6.5, yaw_deg=1.5)], [cam(66.0)], 0.25)  # turned 1.5 deg
    assert r.due([cam(6.5, yaw_deg=1.5)], [cam(200.0)], 0.3)  # the look-ahead camera jumped (speed changed)
    assert r.due([cam(6.5, yaw_deg=1.5, max_sse=8.0)], [cam(200.0)], 0.31)  # another max SSE
    assert not r.due([cam(6.5, yaw_deg=1.5, max_sse=8.0)], [cam(200.0)], 0.7)
    assert r.due([cam(6.5, yaw_deg=1.5, max_sse=8.0)], [cam(200.0)], 0.82)  # half a second since the last: heights learned
    assert r.due([cam(6.5, yaw_deg=1.5, max_sse=8.0), cam()], [cam(200.0), cam()], 0.83)  # a second camera
    assert r.skipped == 4


def test_reselection_can_be_forced_for_the_last_view():
    import math

    from worldstream.unreal_bridge import lod

    cam = lambda x: lod.Camera((x, 0.0, 120.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), math.radians(90.0), 1920, 1080)  # noqa: E731
    r = ss.Reselection(parent_error=2.0)
    assert r.due([cam(0.0)], [], 0.0) and not r.due([cam(3.0)], [], 0.1)
    assert r.due([cam(3.0)], [], 0.1, force=True)  # the server's timer: no view followed the skipped one
    assert not r.due([cam(8.0)], [], 0.2)  # judged from the forced selection at 3 m
