"""3D Tiles 1.1: an explicit tileset over exported chunks, and the implicit quadtree of an
unbounded world served on demand.

Both use the world's local ENU frame as the tile frame (z up); the root transform carries ENU to
ECEF at the world's geodetic origin (column-major, as tileset.json stores matrices). Chunk GLBs
are y-up with their origin in the node translation, which the client turns into ENU.

Geometric error of a chunk = its measured mesh error (against the level's samples) + half a
sample spacing (detail finer than the level's sampling, which the next level adds).

Implicit tiling: the root box spans 2^ROOT_LEVELS level-0 chunks per side, centred on the world
origin; world level L is implicit level L + ROOT_LEVELS, and a signed chunk key maps to the
non-negative index x + 2^(d-1) (the same for y, which grows north as the box's y axis does).
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ..core import frames
from ..core.errors import WorldstreamError
from ..core.keys import ChunkKey
from ..core.spec import WorldSpec
from .mesh_options import MeshOptions

ROOT_LEVELS = 10  # implicit levels above world level 0: a root of 1024 level-0 chunks per side
SUBTREE_LEVELS = 5  # ROOT_LEVELS must be a multiple, so that content starts at a subtree root
MIN_HEIGHT, MAX_HEIGHT = -11000.0, 9000.0  # the implicit root box's vertical span (metres ENU)
IMPLICIT_CONTENT = "implicit/{level}/{x}/{y}.glb"
IMPLICIT_SUBTREES = "subtrees/{level}/{x}/{y}.subtree"


def geometric_error(mesh_error: float, resolution: float) -> float:
    return float(mesh_error) + 0.5 * float(resolution)


def box(enu_min, enu_max) -> list[float]:
    """Axis-aligned ENU bounds -> 3D Tiles box (centre, then the x, y, z half-axis vectors)."""
    lo = np.asarray(enu_min, dtype=np.float64)
    hi = np.asarray(enu_max, dtype=np.float64)
    c = (lo + hi) / 2.0
    h = np.maximum((hi - lo) / 2.0, 1e-3)
    return [float(v) for v in (c[0], c[1], c[2], h[0], 0, 0, 0, h[1], 0, 0, 0, h[2])]


START_HEIGHT_M = 1500.0  # above the origin, where start_hint puts a client's camera


def start_hint(spec: WorldSpec) -> dict:
    """tileset extras for a client's first view: the implicit root spans thousands of kilometres (a
    client zooming to it sees an empty globe), so this says where the world's origin is and a
    camera position above it (WGS84 degrees, metres above the ellipsoid)."""
    o = spec.origin
    return {"worldstream": {"origin": {"latitude": o.lat, "longitude": o.lon, "height": o.alt},
                            "start": {"latitude": o.lat, "longitude": o.lon, "height": o.alt + START_HEIGHT_M}}}


def root_transform(spec: WorldSpec) -> list[float]:
    m = frames.enu_to_ecef_matrix(spec.origin.lat, spec.origin.lon, spec.origin.alt)
    return [float(v) for v in np.asarray(m).T.ravel()]


def explicit_tileset(spec: WorldSpec, tiles: dict[ChunkKey, dict], uri=lambda k: f"chunks/{k.path()}/mesh.glb") -> dict:
    """tileset.json over exported chunks. tiles: key -> chunk metadata (tile.json: enu_min,
    enu_max, geometric_error, resolution_m). A chunk refines into its children only where all
    four were exported (REPLACE refinement with a missing child would show a hole)."""
    if not tiles:
        raise WorldstreamError("no chunks to put in a tileset")
    top = min(k.level for k in tiles)

    def node(key: ChunkKey) -> dict:
        meta = tiles[key]
        t = {"boundingVolume": {"box": box(meta["enu_min"], meta["enu_max"])},
             "geometricError": geometric_error(meta["geometric_error"], meta["resolution_m"]),
             "refine": "REPLACE", "content": {"uri": uri(key)}}
        kids = key.children()
        if all(c in tiles for c in kids):
            t["children"] = [node(c) for c in kids]
            lo = np.min([tiles[c]["enu_min"] for c in kids] + [meta["enu_min"]], axis=0)
            hi = np.max([tiles[c]["enu_max"] for c in kids] + [meta["enu_max"]], axis=0)
            t["boundingVolume"] = {"box": box(lo, hi)}
        return t

    roots = [node(k) for k in sorted(k for k in tiles if k.level == top)]
    lo = np.min([tiles[k]["enu_min"] for k in tiles], axis=0)
    hi = np.max([tiles[k]["enu_max"] for k in tiles], axis=0)
    # the root has no content of its own, so it must refine from any distance the region is seen
    # at: half its diagonal refines within ~30 diagonals at 1080 px and the default max SSE of 16
    root_error = max(0.5 * float(np.linalg.norm(hi - lo)), 2.0 * max(r["geometricError"] for r in roots))
    return {
        "asset": {"version": "1.1", "generator": "worldstream"},
        "geometricError": root_error,
        "root": {"transform": root_transform(spec), "boundingVolume": {"box": box(lo, hi)},
                 "geometricError": root_error, "refine": "REPLACE", "children": roots},
    }


# ------------------------------------------------------------------------------------ implicit
def implicit_index(key: ChunkKey) -> tuple[int, int, int]:
    """World chunk key -> (implicit level, x, y), all >= 0 inside the root box."""
    d = key.level + ROOT_LEVELS
    half = 1 << (d - 1)
    x, y = key.x + half, key.y + half
    if not (0 <= x < 2 * half and 0 <= y < 2 * half):
        raise WorldstreamError(f"chunk {key.path()} lies outside the implicit root box "
                               f"(+-{half} chunks of level {key.level} around the origin)")
    return d, x, y


def implicit_key(level: int, x: int, y: int) -> ChunkKey:
    """Implicit (level, x, y) -> world chunk key; raises for levels above the world's level 0."""
    if level < ROOT_LEVELS:
        raise WorldstreamError(f"implicit level {level} has no content (world levels start at {ROOT_LEVELS})")
    half = 1 << (level - 1)
    if not (0 <= x < 2 * half and 0 <= y < 2 * half):
        raise WorldstreamError(f"implicit tile ({level}, {x}, {y}) is outside its level (0 <= x, y < {2 * half})")
    return ChunkKey(level - ROOT_LEVELS, x - half, y - half)


def implicit_root_error(spec: WorldSpec, options: MeshOptions = MeshOptions()) -> float:
    """Root geometric error such that level L's share, root / 2^(L + ROOT_LEVELS), bounds every
    chunk of level L: mesh error <= options.max_error(res) plus half a sample."""
    res0 = spec.resolution(0)
    return geometric_error(options.max_error(res0), res0) * (1 << ROOT_LEVELS)


def level_geometric_error(root_error: float, level: int) -> float:
    """The geometric error (m) a level-`level` chunk is given under a root error of `root_error`
    (implicit_root_error): the server's and the renderer's screen-space-error selection use it."""
    return root_error / (1 << (level + ROOT_LEVELS))


def implicit_tileset(spec: WorldSpec, options: MeshOptions = MeshOptions()) -> dict:
    extent = spec.chunk_extent(0) * (1 << ROOT_LEVELS)
    half_z = (MAX_HEIGHT - MIN_HEIGHT) / 2.0
    root_error = implicit_root_error(spec, options)
    return {
        "asset": {"version": "1.1", "generator": "worldstream"},
        "geometricError": root_error * 2.0,
        "extras": start_hint(spec),
        "root": {
            "transform": root_transform(spec),
            "boundingVolume": {"box": [0.0, 0.0, MIN_HEIGHT + half_z, extent / 2.0, 0, 0, 0, extent / 2.0, 0, 0, 0, half_z]},
            "geometricError": root_error,
            "refine": "REPLACE",
            "content": {"uri": IMPLICIT_CONTENT},
            "implicitTiling": {"subdivisionScheme": "QUADTREE", "availableLevels": ROOT_LEVELS + spec.levels,
                               "subtreeLevels": SUBTREE_LEVELS, "subtrees": {"uri": IMPLICIT_SUBTREES}},
        },
    }


def implicit_subtree(spec: WorldSpec, level: int) -> bytes:
    """The binary .subtree for any subtree rooted at implicit `level` (all of a level's subtrees
    are alike: every tile exists down to the world's finest level, content exists from
    ROOT_LEVELS on). A subtree that reaches past the finest level marks only its first levels
    available, with a bitstream, since clients trust subtree availability over availableLevels."""
    available = ROOT_LEVELS + spec.levels
    if level % SUBTREE_LEVELS or level < 0 or level >= available:
        raise WorldstreamError(f"no subtree is rooted at implicit level {level}")
    content = 1 if level >= ROOT_LEVELS else 0
    doc: dict = {"childSubtreeAvailability": {"constant": 1 if level + SUBTREE_LEVELS < available else 0}}
    binary = b""
    if level + SUBTREE_LEVELS <= available:
        doc["tileAvailability"] = {"constant": 1}
        doc["contentAvailability"] = [{"constant": content}]
    else:
        levels_in = available - level
        tiles_in = (4 ** levels_in - 1) // 3  # levels are stored one after another, root first
        total = (4 ** SUBTREE_LEVELS - 1) // 3
        bits = np.zeros(total, dtype=np.uint8)
        bits[:tiles_in] = 1
        binary = np.packbits(bits, bitorder="little").tobytes()
        doc["buffers"] = [{"byteLength": len(binary)}]
        doc["bufferViews"] = [{"buffer": 0, "byteOffset": 0, "byteLength": len(binary)}]
        doc["tileAvailability"] = {"bitstream": 0, "availableCount": tiles_in}
        doc["contentAvailability"] = ([{"bitstream": 0, "availableCount": tiles_in}] if content
                                      else [{"constant": 0}])
        binary += b"\0" * (-len(binary) % 8)
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    return struct.pack("<4sIQQ", b"subt", 1, len(js), len(binary)) + js + binary
