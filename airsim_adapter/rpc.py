"""msgpack-rpc framing as AirSim (rpclib) speaks it, sans I/O.

Requests are [0, msgid, method, params], notifications [2, method, params], responses
[1, msgid, error, result]. Strings are packed as str, binary data as bin (use_bin_type), which
the official `airsim` client (msgpack-rpc with utf-8 unpacking) reads back as bytes. A float32
numpy vector in a result (a float image) is packed as AirSim packs its std::vector<float>: an
array of msgpack float 32 values, written in one numpy pass instead of one Python float each.
"""

from __future__ import annotations

from dataclasses import dataclass

import os

import msgpack
import numpy as np

REQUEST, RESPONSE, NOTIFY = 0, 1, 2
MAX_BUFFER = 64 << 20


@dataclass(frozen=True)
class Call:
    """One request (msgid set) or notification (msgid None)."""

    msgid: int | None
    method: str
    params: tuple


class RpcError(ValueError):
    """A frame that is not msgpack-rpc; the connection cannot continue."""


class RpcDecoder:
    """Feed bytes as they arrive; get the complete calls they finish."""

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_BUFFER, strict_map_key=False)

    def feed(self, data: bytes) -> list[Call]:
        self._unpacker.feed(data)
        calls = []
        for obj in self._unpacker:
            calls.append(_call(obj))
        return calls


def _call(obj) -> Call:
    if isinstance(obj, (list, tuple)) and len(obj) == 4 and obj[0] == REQUEST:
        _, msgid, method, params = obj
        if not isinstance(msgid, int) or not isinstance(method, str) or not isinstance(params, (list, tuple)):
            raise RpcError(f"malformed request {obj!r:.200}: expected [0, msgid, method, params]")
        return Call(msgid, method, tuple(params))
    if isinstance(obj, (list, tuple)) and len(obj) == 3 and obj[0] == NOTIFY:
        _, method, params = obj
        if not isinstance(method, str) or not isinstance(params, (list, tuple)):
            raise RpcError(f"malformed notification {obj!r:.200}: expected [2, method, params]")
        return Call(None, method, tuple(params))
    raise RpcError(f"not a msgpack-rpc request: {obj!r:.200}")


def encode_response(msgid: int, error, result) -> bytes:
    vectors: list[np.ndarray] = []
    marker = os.urandom(12)  # stands in for each vector while the rest is packed; no other bytes match it

    def stand_in(obj):
        if isinstance(obj, np.ndarray) and obj.dtype == np.float32 and obj.ndim == 1:
            vectors.append(obj)
            return msgpack.ExtType(127, marker + len(vectors).to_bytes(4, "big"))
        raise TypeError(f"cannot pack {type(obj).__name__} into a msgpack-rpc response")

    packed = msgpack.packb([RESPONSE, msgid, error, result], use_bin_type=True, default=stand_in)
    for i, v in enumerate(vectors, 1):
        packed = packed.replace(b"\xd8\x7f" + marker + i.to_bytes(4, "big"), float32_array(v), 1)
    return packed


def float32_array(values: np.ndarray) -> bytes:
    """(N,) float32 -> the msgpack array of N float 32 values (0xca, big-endian)."""
    n = len(values)
    header = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdd" + n.to_bytes(4, "big")
    body = np.empty(n, [("tag", "u1"), ("value", ">f4")])
    body["tag"], body["value"] = 0xCA, values
    return header + body.tobytes()


def unknown_function(method: str, nargs: int) -> str:
    """rpclib's own text for a call it has no handler for."""
    return f"rpclib: server could not find function '{method}' with argument count {nargs}."


def wrong_arguments(method: str, given: int, expected: int) -> str:
    """rpclib's text when a known function gets the wrong number of arguments."""
    return f"rpclib: function '{method}' (called with {given} arg(s)) threw an exception. The exception contained " \
           f"this information: Function '{method}' was called with an invalid number of arguments. Expected: " \
           f"{expected}, got: {given}"
