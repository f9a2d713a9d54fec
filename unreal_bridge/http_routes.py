"""The HTTP side of `worldstream serve`, sans-I/O: request path -> route, auth, cache headers.

`parse_route(path, spec)` turns a request path into a frozen `Route` or raises `HttpError` with a
4xx status; every key is range-checked here, so no request reaches the chunk service, the
implicit-tiling helpers or the file system with a key or path they would reject (no 500 for a
bad request). Integers in paths have at most 20 digits (longer ones are 404 before conversion).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs

from ..core.errors import WorldstreamError
from ..core.keys import ChunkKey
from ..core.spec import WorldSpec
from ..exporters.formats import SIDECAR_FILES
from ..exporters.tiles import ROOT_LEVELS, SUBTREE_LEVELS, implicit_key
from .session import tokens_equal

MAX_PATH = 1024  # characters; longer request paths are 400
CHUNK_FILES = ("mesh.glb", "tile.json") + tuple(SIDECAR_FILES)
CONTENT_TYPES = {"glb": "model/gltf-binary", "json": "application/json", "png": "image/png", "tif": "image/tiff"}
_INT = r"(\d{1,20})"
_SIGNED = r"(-?\d{1,20})"
_VIEWER_REL = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}){0,7}")

# Cache-Control per kind of response
IMMUTABLE = "public, max-age=86400, immutable"  # a chunk, implicit tile or subtree of this world never changes
REVALIDATE = "no-cache"  # tileset.json and viewer files: small, may change with a restart
NO_STORE = "no-store"  # /stats, errors, redirects


class HttpError(WorldstreamError, ValueError):
    """A request the server refuses: `status` (4xx) and a message saying what was expected."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Route:
    """kind: tileset | viewer_redirect | viewer | stats | subtree | implicit | chunk. `level`: a
    subtree's implicit level; `key`, `name`: a chunk's key and file; `rel`: a viewer file."""

    kind: str
    level: int = 0
    key: ChunkKey | None = None
    name: str = ""
    rel: str = ""

    @property
    def cache_control(self) -> str:
        if self.kind in ("subtree", "implicit", "chunk"):
            return IMMUTABLE
        if self.kind in ("tileset", "viewer"):
            return REVALIDATE
        return NO_STORE

    @property
    def generates(self) -> bool:
        """Whether the route may trigger chunk generation (bounded by the server)."""
        return self.kind in ("implicit", "chunk")


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")


def _not_found(message: str) -> HttpError:
    return HttpError(HTTPStatus.NOT_FOUND, message)


def parse_route(path: str, spec: WorldSpec) -> Route:
    """A request path (without the query) -> Route; raises HttpError 400 / 404."""
    if len(path) > MAX_PATH:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"request path of {len(path)} characters; at most {MAX_PATH}")
    if path in ("/", "/tileset.json"):
        return Route("tileset")
    if path == "/stats":
        return Route("stats")
    if path == "/viewer":
        return Route("viewer_redirect")
    if path.startswith("/viewer/"):
        rel = path[len("/viewer/"):] or "index.html"
        if not _VIEWER_REL.fullmatch(rel) or any(part.startswith(".") for part in rel.split("/")):
            raise _not_found(f"no viewer file {rel[:80]!r}")
        return Route("viewer", rel=rel)
    available = ROOT_LEVELS + spec.levels  # implicit levels 0 .. available - 1
    m = re.fullmatch(rf"/subtrees/{_INT}/{_INT}/{_INT}\.subtree", path)
    if m:
        level, x, y = (int(g) for g in m.groups())
        if level % SUBTREE_LEVELS or level >= available:
            raise _not_found(f"no subtree is rooted at implicit level {level}; subtree roots are the multiples "
                             f"of {SUBTREE_LEVELS} below {available}")
        if x >= 1 << level or y >= 1 << level:
            raise _not_found(f"subtree ({level}, {x}, {y}) is outside its level (0 <= x, y < 2^{level})")
        return Route("subtree", level=level)
    m = re.fullmatch(rf"/implicit/{_INT}/{_INT}/{_INT}\.glb", path)
    if m:
        level, x, y = (int(g) for g in m.groups())
        if not ROOT_LEVELS <= level < available:
            raise _not_found(f"implicit level {level} has no content; content levels are {ROOT_LEVELS}..{available - 1}")
        try:
            return Route("implicit", key=implicit_key(level, x, y), name="mesh.glb")
        except WorldstreamError as exc:
            raise _not_found(str(exc)) from None
    m = re.fullmatch(rf"/chunks/{_INT}/{_SIGNED}/{_SIGNED}/([a-z_.]{{1,32}})", path)
    if m:
        level, x, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        name = m.group(4)
        if level >= spec.levels:
            raise _not_found(f"level {level} is outside this world's levels 0..{spec.levels - 1}")
        if name not in CHUNK_FILES:
            raise _not_found(f"no chunk file {name!r}; expected one of {', '.join(CHUNK_FILES)}")
        try:
            key = ChunkKey(level, x, y)
        except WorldstreamError as exc:
            raise _not_found(str(exc)) from None
        return Route("chunk", key=key, name=name)
    raise _not_found(f"no route for {path[:200]}")


def query_token(query: str) -> str | None:
    """The percent-decoded `token` of a query string (the first, if repeated)."""
    values = parse_qs(query, keep_blank_values=True).get("token")
    return values[0] if values else None


def authorized(query: str, authorization: str, token: str | None) -> bool:
    """Whether a request carries the token (`?token=` percent-decoded, or `Authorization: Bearer`),
    compared in constant time; always True when the server has no token."""
    if token is None:
        return True
    given = query_token(query)
    # header values arrive decoded as ISO-8859-1: their raw bytes are the client's UTF-8
    bearer = authorization[len("Bearer "):].encode("latin-1") if authorization.startswith("Bearer ") else None
    return tokens_equal(given, token) | tokens_equal(bearer, token)  # both compared: no early exit
