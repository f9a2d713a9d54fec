"""Streaming protocol v1, sans-I/O: pure encode / decode of every message (docs/protocol.md).

Text frames carry one JSON object each with a "type"; binary frames carry chunks. Decoding never
raises anything but ProtocolError, whose `code` the server sends back in an `error` message, so a
malformed or hostile message cannot take a connection down by surprise. Nothing here touches a
socket; the asyncio server and the reference client are thin layers over these functions.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field

from ..core.errors import WorldstreamError
from ..core.keys import ChunkKey
from ..exporters.formats import SIDECAR_FILES

PROTOCOL_VERSION = 1
MAX_TEXT_BYTES = 64 * 1024  # a view with many cameras stays far below this
MAX_CAMERAS = 8
MAX_SEQ = 2**32 - 1  # seq travels as a u32 in chunk frames: a view's seq must fit, it is never wrapped
MAX_INT_DIGITS = 20  # integers in client JSON with more digits are rejected before conversion
FRAMES = ("enu", "airsim")

# error codes (docs/protocol.md)
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
UNSUPPORTED_VERSION = "unsupported_version"
UNAUTHORIZED = "unauthorized"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
NOT_READY = "not_ready"
INTERNAL = "internal"


class ProtocolError(WorldstreamError, ValueError):
    """A message that breaks the protocol; `code` is one of the error codes above."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ client messages
@dataclass(frozen=True)
class Hello:
    protocol: int
    client: str = ""
    token: str | None = None
    sidecars: tuple[str, ...] = ()  # sidecar files wanted in chunk frames besides the GLB


@dataclass(frozen=True)
class CameraView:
    """One camera: position and orientation in `frame` (metres; quaternion w, x, y, z rotating
    the camera's body axes into the frame: in "enu" x forward, y left, z up; in "airsim" x
    forward, y right, z down, as AirSim's), horizontal field of view in degrees, viewport in
    pixels, max screen-space error in pixels. `player_start` (world ENU) anchors the AirSim frame."""

    id: str
    frame: str
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    fov_deg: float
    viewport: tuple[int, int]
    max_sse: float = 16.0
    player_start: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class View:
    seq: int
    cameras: tuple[CameraView, ...]


@dataclass(frozen=True)
class StatsRequest:
    pass


@dataclass(frozen=True)
class Credit:
    """Flow control: the client can take `chunks` more chunk frames."""

    chunks: int


ClientMessage = Hello | View | StatsRequest | Credit


def _obj(text: str | bytes) -> dict:
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_TEXT_BYTES:
            raise ProtocolError(TOO_LARGE, f"message of {len(text)} bytes; the limit is {MAX_TEXT_BYTES}")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(BAD_JSON, "message is not UTF-8 text") from None
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError(TOO_LARGE, f"message of {len(text)} characters; the limit is {MAX_TEXT_BYTES} bytes")
    try:
        obj = json.loads(text, parse_int=_parse_int)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(BAD_JSON, f"message is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError(BAD_MESSAGE, 'expected a JSON object with a string "type"')
    return obj


def _parse_int(digits: str) -> int:
    """json's integer hook: numbers longer than MAX_INT_DIGITS digits (a 5,000-digit seq) are refused
    before Python converts them (which is quadratic and raises past 4,300 digits)."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(BAD_JSON, f"integer of {len(digits.lstrip('-'))} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(digits)


def _finite(v) -> bool:
    """A JSON number (not a bool) that is finite as a float (huge integers are not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _number(obj: dict, name: str, lo: float = -math.inf, hi: float = math.inf, default=None) -> float:
    v = obj.get(name, default)
    if not _finite(v) or not lo <= v <= hi:
        raise ProtocolError(BAD_MESSAGE, f'"{name}" must be a finite number in [{lo}, {hi}], got {v!r}')
    return float(v)


def _vector(obj: dict, name: str, n: int, default=None) -> tuple[float, ...]:
    v = obj.get(name, default)
    if (not isinstance(v, (list, tuple)) or len(v) != n
            or not all(_finite(c) for c in v)):
        raise ProtocolError(BAD_MESSAGE, f'"{name}" must be a list of {n} finite numbers, got {v!r}')
    return tuple(float(c) for c in v)


# the fields each client message may carry (docs/protocol.schema.json: additionalProperties false)
FIELDS = {"hello": frozenset({"type", "protocol", "client", "token", "sidecars"}),
          "view": frozenset({"type", "seq", "cameras"}),
          "stats": frozenset({"type"}),
          "credit": frozenset({"type", "chunks"})}
CAMERA_FIELDS = frozenset({"id", "frame", "position", "orientation", "fov_deg", "viewport", "max_sse", "player_start"})
MAX_CLIENT_NAME = 128
MAX_TOKEN = 1024


def _only(obj: dict, allowed: frozenset, what: str) -> None:
    """Strict validation: a field the protocol does not define is an error, not silently ignored."""
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ProtocolError(BAD_MESSAGE, f"{what} has unknown fields {extra[:8]}; allowed: {sorted(allowed)}")


def _camera(obj) -> CameraView:
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_MESSAGE, f"a camera must be a JSON object, got {obj!r}")
    _only(obj, CAMERA_FIELDS, "a camera")
    cid = obj.get("id", "0")
    if not isinstance(cid, str) or len(cid) > 64:
        raise ProtocolError(BAD_MESSAGE, '"id" must be a string of at most 64 characters')
    frame = obj.get("frame", "enu")
    if frame not in FRAMES:
        raise ProtocolError(BAD_MESSAGE, f'"frame" must be one of {", ".join(FRAMES)}, got {frame!r}')
    q = _vector(obj, "orientation", 4, (1.0, 0.0, 0.0, 0.0))
    norm = math.sqrt(sum(c * c for c in q))
    if not 0.5 < norm < 2.0:
        raise ProtocolError(BAD_MESSAGE, f'"orientation" must be a unit quaternion [w, x, y, z], got {list(q)}')
    viewport = obj.get("viewport", [1920, 1080])
    if (not isinstance(viewport, list) or len(viewport) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in viewport)):
        raise ProtocolError(BAD_MESSAGE, f'"viewport" must be [width, height] in pixels (1..16384), got {viewport!r}')
    return CameraView(id=cid, frame=frame, position=_vector(obj, "position", 3),
                      orientation=tuple(c / norm for c in q), fov_deg=_number(obj, "fov_deg", 1.0, 170.0, 90.0),
                      viewport=(viewport[0], viewport[1]), max_sse=_number(obj, "max_sse", 0.5, 1000.0, 16.0),
                      player_start=_vector(obj, "player_start", 3, (0.0, 0.0, 0.0)))


def decode_client(text: str | bytes) -> ClientMessage:
    """One client text frame -> message; raises ProtocolError (with a code) for anything else."""
    obj = _obj(text)
    kind = obj["type"]
    if kind not in FIELDS:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}; expected hello, view, stats or credit")
    _only(obj, FIELDS[kind], f"a {kind} message")
    if kind == "hello":
        version = obj.get("protocol")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(UNSUPPORTED_VERSION, f"server speaks protocol {PROTOCOL_VERSION}, client asked for {version!r}")
        token = obj.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
            raise ProtocolError(BAD_MESSAGE, f'"token" must be a string of at most {MAX_TOKEN} characters')
        name = obj.get("client", "")
        if not isinstance(name, str) or len(name) > MAX_CLIENT_NAME:
            raise ProtocolError(BAD_MESSAGE, f'"client" must be a string of at most {MAX_CLIENT_NAME} characters')
        sidecars = obj.get("sidecars", [])
        if not isinstance(sidecars, list) or not all(isinstance(s, str) and s in SIDECAR_FILES for s in sidecars):
            raise ProtocolError(BAD_MESSAGE, f'"sidecars" must be a list of sidecar file names among {list(SIDECAR_FILES)}')
        return Hello(protocol=version, client=name, token=token, sidecars=tuple(sidecars))
    if kind == "view":
        seq = obj.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise ProtocolError(BAD_MESSAGE, f'"seq" must be an integer in [0, {MAX_SEQ}] (2^32 - 1), got {seq!r}')
        cams = obj.get("cameras")
        if not isinstance(cams, list) or not 1 <= len(cams) <= MAX_CAMERAS:
            raise ProtocolError(BAD_MESSAGE, f'"cameras" must be a list of 1..{MAX_CAMERAS} cameras')
        cameras = tuple(_camera(c) for c in cams)
        if len({c.id for c in cameras}) != len(cameras):
            raise ProtocolError(BAD_MESSAGE, "camera ids must be unique within a view")
        return View(seq=seq, cameras=cameras)
    if kind == "stats":
        return StatsRequest()
    if kind == "credit":
        n = obj.get("chunks")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 4096:
            raise ProtocolError(BAD_MESSAGE, f'"chunks" must be an integer in [0, 4096], got {n!r}')
        return Credit(chunks=n)
    raise AssertionError(kind)  # pragma: no cover (FIELDS lists every type)


def encode_client(message: ClientMessage) -> str:
    """The inverse of decode_client (used by the reference client and tests)."""
    if isinstance(message, Hello):
        obj = {"type": "hello", "protocol": message.protocol, "client": message.client, "sidecars": list(message.sidecars)}
        if message.token is not None:
            obj["token"] = message.token
    elif isinstance(message, View):
        obj = {"type": "view", "seq": message.seq, "cameras": [
            {"id": c.id, "frame": c.frame, "position": list(c.position), "orientation": list(c.orientation),
             "fov_deg": c.fov_deg, "viewport": list(c.viewport), "max_sse": c.max_sse,
             "player_start": list(c.player_start)} for c in message.cameras]}
    elif isinstance(message, StatsRequest):
        obj = {"type": "stats"}
    elif isinstance(message, Credit):
        obj = {"type": "credit", "chunks": message.chunks}
    else:
        raise TypeError(f"not a client message: {message!r}")
    return json.dumps(obj, separators=(",", ":"))


# ------------------------------------------------------------------------------ server messages
def encode_welcome(world: dict, credit: int, tileset: str = "/tileset.json") -> str:
    return json.dumps({"type": "welcome", "protocol": PROTOCOL_VERSION, "world": world, "tileset": tileset,
                       "credit": credit, "max_message_bytes": MAX_TEXT_BYTES}, separators=(",", ":"))


def encode_unload(keys) -> str:
    return json.dumps({"type": "unload", "keys": [k.path() for k in keys]}, separators=(",", ":"))


def encode_error(code: str, message: str, seq: int | None = None) -> str:
    obj = {"type": "error", "code": code, "message": message[:500]}
    if seq is not None:
        obj["seq"] = seq
    return json.dumps(obj, separators=(",", ":"))


def encode_stats(stats: dict) -> str:
    return json.dumps({"type": "stats", **stats}, separators=(",", ":"))


def decode_server(text: str) -> dict:
    """Server text frame -> dict (for clients); raises ProtocolError."""
    return _obj(text)


# ------------------------------------------------------------------------------ chunk frames
CHUNK_MAGIC = b"WSC1"
_HEADER = struct.Struct("<4sBBHqqdddddddI")  # magic, level, flags, parts, x, y, error, w s e n, zmin zmax, seq
_PART = struct.Struct("<B I")  # name length, payload length


@dataclass(frozen=True)
class ChunkFrame:
    """key; geometric_error (m); bounds (west, south, east, north) and z range (world ENU m);
    seq: the view this frame answers; parts: file name -> bytes ("mesh.glb" first)."""

    key: ChunkKey
    geometric_error: float
    bounds: tuple[float, float, float, float]
    z_range: tuple[float, float]
    seq: int
    parts: dict[str, bytes] = field(default_factory=dict)


def encode_chunk_frame(frame: ChunkFrame) -> bytes:
    """Binary chunk frame: a 84-byte little-endian header, a parts table (name, size) and the
    payloads in table order (docs/protocol.md)."""
    k = frame.key
    if not 0 <= frame.seq <= MAX_SEQ:
        raise ValueError(f"seq must be in [0, {MAX_SEQ}] to fit the frame's u32, got {frame.seq}")
    head = _HEADER.pack(CHUNK_MAGIC, k.level, 0, len(frame.parts), k.x, k.y, frame.geometric_error, *frame.bounds,
                        *frame.z_range, frame.seq)
    table = b""
    for name, data in frame.parts.items():
        raw = name.encode()
        if not 0 < len(raw) < 256:
            raise ValueError(f"part name must be 1..255 bytes, got {name!r}")
        table += _PART.pack(len(raw), len(data)) + raw
    return head + table + b"".join(frame.parts.values())


def decode_chunk_frame(data: bytes) -> ChunkFrame:
    if len(data) < _HEADER.size:
        raise ProtocolError(BAD_MESSAGE, f"chunk frame of {len(data)} bytes is shorter than its {_HEADER.size}-byte header")
    magic, level, _flags, nparts, x, y, err, w, s, e, n, zmin, zmax, seq = _HEADER.unpack_from(data, 0)
    if magic != CHUNK_MAGIC:
        raise ProtocolError(BAD_MESSAGE, f"not a chunk frame (magic {magic!r}, expected {CHUNK_MAGIC!r})")
    off = _HEADER.size
    table = []
    for _ in range(nparts):
        if off + _PART.size > len(data):
            raise ProtocolError(BAD_MESSAGE, "chunk frame's parts table is truncated")
        nlen, size = _PART.unpack_from(data, off)
        off += _PART.size
        name = data[off:off + nlen].decode("utf-8", errors="replace")
        off += nlen
        table.append((name, size))
    parts = {}
    for name, size in table:
        if off + size > len(data):
            raise ProtocolError(BAD_MESSAGE, f"chunk frame's part {name!r} is truncated")
        parts[name] = bytes(data[off:off + size])
        off += size
    if off != len(data):
        raise ProtocolError(BAD_MESSAGE, f"chunk frame has {len(data) - off} trailing bytes")
    return ChunkFrame(key=ChunkKey(level, x, y), geometric_error=err, bounds=(w, s, e, n), z_range=(zmin, zmax),
                      seq=seq, parts=parts)
