"""Which chunks must be resident around a set of cameras, in what order, and what may go.

The 3D Tiles rule: a chunk of geometric error g seen from distance d on a viewport h pixels high
with vertical field of view fovy has screen-space error sse = g * h / (2 d tan(fovy / 2)); a chunk
is refined into its four children while sse > max_sse. Selection walks the quadtree from the
level-0 chunks within the horizon, so coarse levels cover everything out to the horizon and
finer ones only what the camera resolves. Chunks outside every frustum refine against a larger
error (they stay coarse, but present: turning the camera never shows a hole).

Hysteresis: a chunk already refined in the previous selection stays refined until its sse drops
below max_sse * (1 - h); an unrefined one refines only above max_sse * (1 + h).

Look-ahead: cameras predicted a moment ahead (from each camera's velocity) refine too, so the
chunks a moving camera is about to need are fetched before it needs them. A chunk selected only
because a predicted camera refined past what the current cameras need is a prefetch (`needed`
false): it sorts after every chunk the current cameras need in view, and it is not a chunk the
current view misses.

Height: a chunk's z range comes from `z_range(key)` (the server learns the true ranges from the
chunks it exports and bounds unknown descendants by a known ancestor's); without it, -200..3000 m.

Residency: a delivered chunk is unloaded only when nothing required overlaps it, or when its
whole area is covered by delivered chunks of the new selection, so a parent stays until all its
children are there (and children stay until their parent is back).

Pure functions on value types; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Iterable

import numpy as np

from ..core import frames
from ..core.keys import ChunkKey
from ..core.spec import WorldSpec
from .protocol import CameraView

OUT_OF_VIEW_SSE_FACTOR = 4.0
DEFAULT_Z_RANGE = (-200.0, 3000.0)
Z_MARGIN_M = 10.0


@dataclass(frozen=True)
class Camera:
    """A camera in world ENU: position (3,), unit forward and up vectors, horizontal field of
    view (radians), viewport (pixels), max screen-space error (pixels)."""

    position: tuple[float, float, float]
    forward: tuple[float, float, float]
    up: tuple[float, float, float]
    fov_x: float
    width: int
    height: int
    max_sse: float = 16.0

    @property
    def fov_y(self) -> float:
        return 2.0 * math.atan(math.tan(self.fov_x / 2.0) * self.height / self.width)


def _rotate(q, v) -> tuple[float, float, float]:
    """Rotate vector v by unit quaternion q = (w, x, y, z). Plain floats: this runs for every view
    a client sends, and numpy on 3-vectors costs more in call overhead than the arithmetic."""
    w, x, y, z = (float(c) for c in q)
    a, b, c = (float(c) for c in v)
    uv, uu = x * a + y * b + z * c, x * x + y * y + z * z
    s = w * w - uu
    return (2.0 * uv * x + s * a + 2.0 * w * (y * c - z * b),
            2.0 * uv * y + s * b + 2.0 * w * (z * a - x * c),
            2.0 * uv * z + s * c + 2.0 * w * (x * b - y * a))


def camera_from_view(view: CameraView) -> Camera:
    """Protocol camera -> world-ENU camera. Body axes: in the "enu" frame x forward, y left, z up
    (identity looks east); in the "airsim" frame AirSim's x forward, y right, z down in NED
    relative to `player_start` (identity looks north)."""
    if view.frame == "enu":
        position = view.position
        forward = _rotate(view.orientation, (1.0, 0.0, 0.0))
        up = _rotate(view.orientation, (0.0, 0.0, 1.0))
    else:
        position = frames.airsim_to_enu(view.position, view.player_start)
        ned_to_enu = lambda v: (v[1], v[0], -v[2])  # noqa: E731
        forward = ned_to_enu(_rotate(view.orientation, (1.0, 0.0, 0.0)))
        up = ned_to_enu(_rotate(view.orientation, (0.0, 0.0, -1.0)))
    return Camera(position=tuple(float(c) for c in position), forward=tuple(float(c) for c in forward),
                  up=tuple(float(c) for c in up), fov_x=math.radians(view.fov_deg), width=view.viewport[0],
                  height=view.viewport[1], max_sse=view.max_sse)


def screen_space_error(geometric_error: float, distance: float, camera: Camera) -> float:
    """The sse (pixels) of a chunk of `geometric_error` at `distance` (inf at 0)."""
    return float(screen_space_errors(geometric_error, np.array([distance]), camera)[0])


def screen_space_errors(geometric_error: float, distances: np.ndarray, camera: Camera) -> np.ndarray:
    """The sse (pixels) of chunks of `geometric_error` at `distances` (N,) float64; inf at 0."""
    return _sse(geometric_error, distances[None], _rig((camera,)))[0]


def _sse(geometric_error: float, distances: np.ndarray, rig: "_Rig") -> np.ndarray:
    """screen_space_errors for every camera of `rig`: distances (C, N) -> (C, N)."""
    with np.errstate(divide="ignore"):
        sse = geometric_error * rig.height / (2.0 * distances * rig.tan_half_fov_y)
    return np.where(distances <= 1e-9, math.inf, sse)


@dataclass(frozen=True)
class Boxes:
    """N axis-aligned boxes in world ENU (metres): west, south, east, north, bottom, top, each (N,)
    float64."""

    w: np.ndarray
    s: np.ndarray
    e: np.ndarray
    n: np.ndarray
    z0: np.ndarray
    z1: np.ndarray

    @classmethod
    def of(cls, bounds, z_range) -> "Boxes":
        """One box: bounds (w, s, e, n) x z_range (z0, z1)."""
        return cls(*(np.array([float(v)]) for v in (*bounds, *z_range)))

    @classmethod
    def of_keys(cls, spec: WorldSpec, level: int, xs: np.ndarray, ys: np.ndarray, z0: np.ndarray,
                z1: np.ndarray) -> "Boxes":
        """The boxes of chunks (level, xs, ys) (int64 (N,)) with height spans z0..z1 (exact: the
        same products as ChunkKey.bounds)."""
        e = spec.chunk_extent(level)
        return cls(xs * e, ys * e, (xs + 1) * e, (ys + 1) * e, z0, z1)


def box_distance(camera: Camera, bounds, z_range) -> float:
    """Distance from the camera to the axis-aligned box bounds x z_range (0 inside)."""
    return float(box_distances(camera, Boxes.of(bounds, z_range))[0])


def box_distances(camera: Camera, boxes: Boxes) -> np.ndarray:
    """Distances (N,) from the camera to `boxes` (0 inside)."""
    return _distances(_rig((camera,)), boxes)[0]


def _distances(rig: "_Rig", boxes: Boxes) -> np.ndarray:
    """box_distances for every camera of `rig`: (C, N)."""
    dx = np.maximum(np.maximum(boxes.w - rig.px, 0.0), rig.px - boxes.e)
    dy = np.maximum(np.maximum(boxes.s - rig.py, 0.0), rig.py - boxes.n)
    dz = np.maximum(np.maximum(boxes.z0 - rig.pz, 0.0), rig.pz - boxes.z1)
    return np.sqrt(dx * dx + dy * dy + dz * dz)


@dataclass(frozen=True)
class _Frustum:
    """A camera's culling data, computed once per Camera: position, forward, the inward normals of
    the four side planes and tan(fov_y / 2), in plain floats."""

    px: float
    py: float
    pz: float
    forward: tuple[float, float, float]
    planes: tuple[tuple[float, float, float], ...]
    tan_half_fov_y: float


@lru_cache(maxsize=256)
def _frustum(camera: Camera) -> _Frustum:
    f0, f1, f2 = (float(c) for c in camera.forward)
    u0, u1, u2 = (float(c) for c in camera.up)
    r0, r1, r2 = f1 * u2 - f2 * u1, f2 * u0 - f0 * u2, f0 * u1 - f1 * u0  # right = forward x up
    hx, hy = camera.fov_x / 2.0, camera.fov_y / 2.0
    cx, sx, cy, sy = math.cos(hx), math.sin(hx), math.cos(hy), math.sin(hy)
    # inward normals of the side planes: rotate +-right / +-up towards forward by the half angles
    planes = ((-cx * r0 + sx * f0, -cx * r1 + sx * f1, -cx * r2 + sx * f2),
              (cx * r0 + sx * f0, cx * r1 + sx * f1, cx * r2 + sx * f2),
              (-cy * u0 + sy * f0, -cy * u1 + sy * f1, -cy * u2 + sy * f2),
              (cy * u0 + sy * f0, cy * u1 + sy * f1, cy * u2 + sy * f2))
    px, py, pz = (float(c) for c in camera.position)
    return _Frustum(px, py, pz, (f0, f1, f2), planes, math.tan(camera.fov_y / 2.0))


@dataclass(frozen=True)
class _Rig:
    """Cameras as columns, for testing boxes against all of them at once: position, viewport
    height, tan(fov_y / 2) and max sse, each (C, 1) float64, and the inward normals of the near
    side and the four side planes, normals[plane][axis] (C, 1) and planes (C, 5, 3) (the same
    floats as `_Frustum`)."""

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    height: np.ndarray
    tan_half_fov_y: np.ndarray
    max_sse: np.ndarray
    normals: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    planes: np.ndarray  # (C, 5, 3): the same normals, a camera's in one array


@lru_cache(maxsize=256)
def _rig(cameras: tuple[Camera, ...]) -> _Rig:
    frs = [_frustum(c) for c in cameras]
    col = lambda values: np.array(values, dtype=np.float64).reshape(-1, 1)  # noqa: E731
    planes = np.array([(fr.forward, *fr.planes) for fr in frs], dtype=np.float64).reshape(-1, 5, 3)
    normals = tuple(tuple(planes[:, p, axis:axis + 1].copy() for axis in range(3)) for p in range(5))
    return _Rig(col([fr.px for fr in frs]), col([fr.py for fr in frs]), col([fr.pz for fr in frs]),
                col([c.height for c in cameras]), col([fr.tan_half_fov_y for fr in frs]),
                col([c.max_sse for c in cameras]), normals, planes)


OUTSIDE, STRADDLES, INSIDE = 0, 1, 2


def frustum_side(camera: Camera, bounds, z_range) -> int:
    """`frustum_sides` of the one box bounds x z_range."""
    return int(frustum_sides(camera, Boxes.of(bounds, z_range))[0])


def frustum_sides(camera: Camera, boxes: Boxes) -> np.ndarray:
    """Where each box lies against the four side planes and the near side of the view frustum,
    (N,) int8: OUTSIDE when wholly outside one of them (its corner furthest along the plane's
    inward normal is outside), INSIDE when wholly inside all, else STRADDLES."""
    rig = _rig((camera,))
    n = rig.planes[0]  # (5 planes, 3 axes)
    positive = (n > 0)[:, :, None]  # the corner a plane tests: the furthest along its normal
    px, py, pz = rig.px[0, 0], rig.py[0, 0], rig.pz[0, 0]
    low = np.stack([boxes.w - px, boxes.s - py, boxes.z0 - pz])  # (3, N) box corners relative to the camera
    high = np.stack([boxes.e - px, boxes.n - py, boxes.z1 - pz])
    far = np.where(positive, high, low) * n[:, :, None]  # (5, 3, N)
    near = np.where(positive, low, high) * n[:, :, None]
    outside = ((far[:, 0] + far[:, 1]) + far[:, 2] < 0.0).any(axis=0)
    straddles = ((near[:, 0] + near[:, 1]) + near[:, 2] < 0.0).any(axis=0)
    return np.where(outside, OUTSIDE, np.where(straddles, STRADDLES, INSIDE)).astype(np.int8)


def in_frustum(camera: Camera, bounds, z_range) -> bool:
    """`spheres_in_frustum` of the one box bounds x z_range."""
    return bool(spheres_in_frustum(camera, Boxes.of(bounds, z_range))[0])


def spheres_in_frustum(camera: Camera, boxes: Boxes) -> np.ndarray:
    """Conservative test (N,) bool of each box's bounding sphere against the four side planes and
    the near side of the view frustum."""
    return _spheres_seen(_rig((camera,)), boxes)[0]


def _spheres_seen(rig: _Rig, boxes: Boxes) -> np.ndarray:
    """spheres_in_frustum for every camera of `rig`: (C, N)."""
    ew, ns, tb = boxes.e - boxes.w, boxes.n - boxes.s, boxes.z1 - boxes.z0
    radius = 0.5 * np.sqrt(ew * ew + ns * ns + tb * tb)
    rx = (boxes.w + boxes.e) / 2.0 - rig.px
    ry = (boxes.s + boxes.n) / 2.0 - rig.py
    rz = (boxes.z0 + boxes.z1) / 2.0 - rig.pz
    seen = np.ones(rx.shape, bool)
    for a, b, c in rig.normals:
        seen &= ~(rx * a + ry * b + rz * c < -radius)
    return seen


def keys_in_frustum(spec: WorldSpec, camera: Camera, keys: list[ChunkKey],
                    z_range: Callable[[ChunkKey], tuple[float, float]]) -> np.ndarray:
    """`spheres_in_frustum` (N,) bool for chunks `keys`, each with its span z_range(key)."""
    if not keys:
        return np.zeros(0, bool)
    bounds = np.array([k.bounds(spec) for k in keys], dtype=np.float64).reshape(-1, 4)
    z = np.array([z_range(k) for k in keys], dtype=np.float64).reshape(-1, 2)
    return spheres_in_frustum(camera, Boxes(*bounds.T, *z.T))


VIEW_DEPTH = 1  # chunk_in_view's levels of children below a chunk whose box straddles the frustum


def chunk_in_view(spec: WorldSpec, camera: Camera, key: ChunkKey, z_range: Callable[[ChunkKey], tuple[float, float]],
                  depth: int = VIEW_DEPTH) -> bool:
    """Whether chunk `key` (height span z_range(key)) is in the camera's view: its box is, and if
    the box straddles a plane of the frustum, one of its children is (`depth` levels down, at most
    to the finest), each with its own span. Tighter than `in_frustum`'s bounding sphere, which
    passed 8-16 km chunks lying kilometres outside the view; and a tall box (a span bounded from
    a coarse ancestor) reaches into the view where its children, whose spans are known, do not."""
    spans = _span_lookup(z_range)
    xs, ys = np.array([key.x]), np.array([key.y])
    return bool(_in_view(spec, camera, key.level, xs, ys, spans(key.level, xs, ys), spans, depth)[0])


def _in_view(spec: WorldSpec, camera: Camera, level: int, xs: np.ndarray, ys: np.ndarray, z, spans,
             depth: int) -> np.ndarray:
    """chunk_in_view (N,) bool for the chunks (level, xs, ys) with spans z = (z0, z1)."""
    side = frustum_sides(camera, Boxes.of_keys(spec, level, xs, ys, *z))
    out = side != OUTSIDE
    deeper = np.flatnonzero(side == STRADDLES)
    if depth <= 0 or level >= spec.levels - 1 or not len(deeper):
        return out
    cx = (2 * xs[deeper, None] + np.array([0, 1, 0, 1])).ravel()  # children in ChunkKey.children order
    cy = (2 * ys[deeper, None] + np.array([0, 0, 1, 1])).ravel()
    kids = _in_view(spec, camera, level + 1, cx, cy, spans(level + 1, cx, cy), spans, depth - 1)
    out[deeper] = kids.reshape(-1, 4).any(axis=1)
    return out


def _span_lookup(z_range) -> Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(level, xs, ys) -> (z0, z1) float64 arrays, from a HeightSpans (its tuple lookup), any
    callable of a ChunkKey, or None (DEFAULT_Z_RANGE)."""
    if z_range is None:
        return lambda level, xs, ys: (np.full(len(xs), DEFAULT_Z_RANGE[0]), np.full(len(xs), DEFAULT_Z_RANGE[1]))
    one = z_range.span if isinstance(z_range, HeightSpans) else (lambda k: z_range(ChunkKey(*k)))

    def spans(level: int, xs: np.ndarray, ys: np.ndarray):
        z = np.array([one((level, x, y)) for x, y in zip(xs.tolist(), ys.tolist())], dtype=np.float64).reshape(-1, 2)
        return z[:, 0], z[:, 1]
    return spans


@dataclass(frozen=True)
class Selected:
    """A chunk of the selection: key, its largest sse over the current cameras, nearest distance,
    whether a current camera sees it, whether a look-ahead camera does, and whether the current
    cameras need it (false: a look-ahead camera refined an ancestor the current cameras would
    not have refined, so this chunk is a prefetch; the current view is whole without it).
    `priority` sorts most urgent first: seen now (needed before prefetched), then seen soon, then
    the rest; larger sse first within each."""

    key: ChunkKey
    sse: float
    distance: float
    visible: bool
    soon: bool = False
    needed: bool = True

    @property
    def priority(self) -> tuple:
        return (not self.visible, not self.needed, not self.soon, -min(self.sse, 1e12), self.distance, self.key.level,
                self.key.x, self.key.y)


def select(spec: WorldSpec, cameras: Iterable[Camera], level_error: Callable[[int], float],
           horizon_m: float = 20000.0, z_range: Callable[[ChunkKey], tuple[float, float]] | None = None,
           previous: frozenset[ChunkKey] | set[ChunkKey] = frozenset(), hysteresis: float = 0.2,
           ahead: Iterable[Camera] = ()) -> list[Selected]:
    """The chunks to show around `cameras` (a set of non-overlapping leaves covering the horizon
    square of every camera), most urgent first. level_error(L): the geometric error (m) a level-L
    chunk may have; z_range(key): its height span (default -200..3000 m; a HeightSpans is read
    without making ChunkKeys); previous: the last selection, for hysteresis; ahead: predicted
    cameras that refine too but rank after the current ones.

    The quadtree is walked a level at a time, every chunk of a level tested against every camera
    in numpy: a client's view costs a few array operations per level, not a Python loop per chunk
    and camera (the server selects for every client, and its event loop shares the interpreter)."""
    current = list(cameras)
    if not current:
        return []
    cameras = current + list(ahead)
    n_now = len(current)
    rig = _rig(tuple(cameras))
    spans = _span_lookup(z_range)
    refined_before = selection_ancestors(frozenset(previous))
    roots: dict[tuple[int, int], bool] = {}  # level-0 (x, y) -> within a current camera's horizon square
    e0 = spec.chunk_extent(0)
    for n, cam in enumerate(cameras):
        x, y, _ = cam.position
        for i in range(math.floor((x - horizon_m) / e0), math.floor((x + horizon_m) / e0) + 1):
            for j in range(math.floor((y - horizon_m) / e0), math.floor((y + horizon_m) / e0) + 1):
                roots[(i, j)] = roots.get((i, j), False) or n < n_now
    xs = np.array([k[0] for k in roots], dtype=np.int64)
    ys = np.array([k[1] for k in roots], dtype=np.int64)
    needed = np.array(list(roots.values()), dtype=bool)
    finest = spec.levels - 1
    out: list[Selected] = []
    for level in range(spec.levels):
        if not len(xs):
            break
        z = spans(level, xs, ys)
        boxes = Boxes.of_keys(spec, level, xs, ys, *z)
        err = level_error(level)
        before = np.array([(level, x, y) in refined_before for x, y in zip(xs.tolist(), ys.tolist())], dtype=bool)
        relax = np.where(before, 1.0 - hysteresis, 1.0 + hysteresis)
        d = _distances(rig, boxes)  # (C, N): every camera, current ones first
        sse = _sse(err, d, rig)
        seen = _spheres_seen(rig, boxes)
        over = sse > rig.max_sse * np.where(seen, 1.0, OUT_OF_VIEW_SSE_FACTOR) * relax
        refine, refine_now = over.any(axis=0), over[:n_now].any(axis=0)
        worst, nearest = np.maximum(sse[:n_now].max(axis=0), 0.0), d[:n_now].min(axis=0)
        visible, soon = seen[:n_now].any(axis=0), seen[n_now:].any(axis=0)
        split = refine if level < finest else np.zeros(len(xs), bool)  # refined: its children are walked next
        leaf = np.flatnonzero(~split)
        if len(leaf):  # whether a leaf is in view (its priority; what a view lacks without it) by its box
            lx, ly = xs[leaf], ys[leaf]
            lz = (z[0][leaf], z[1][leaf])
            in_view = np.zeros(len(leaf), bool)
            for cam in current:
                todo = np.flatnonzero(visible[leaf] & ~in_view)
                if len(todo):
                    in_view[todo] = _in_view(spec, cam, level, lx[todo], ly[todo], (lz[0][todo], lz[1][todo]),
                                             spans, VIEW_DEPTH)
            for x, y, w_, d_, v_, s_, n_ in zip(lx.tolist(), ly.tolist(), worst[leaf].tolist(), nearest[leaf].tolist(),
                                                in_view.tolist(), soon[leaf].tolist(), needed[leaf].tolist()):
                out.append(Selected(key=ChunkKey(level, x, y), sse=w_, distance=d_, visible=v_, soon=s_, needed=n_))
        parents = np.flatnonzero(split)
        xs = (2 * xs[parents, None] + np.array([0, 1, 0, 1])).ravel()  # children in ChunkKey.children order
        ys = (2 * ys[parents, None] + np.array([0, 0, 1, 1])).ravel()
        needed = np.repeat(needed[parents] & refine_now[parents], 4)
    out.sort(key=lambda s: s.priority)
    return out


def refine_distance(camera: Camera, geometric_error: float) -> float:
    """The distance (m) within which a chunk of `geometric_error` refines for `camera` (its sse
    reaches max_sse)."""
    return geometric_error * camera.height / (2.0 * _frustum(camera).tan_half_fov_y * camera.max_sse)


def moved(a: Camera, b: Camera, tolerance_m: float, turn_rad: float) -> bool:
    """Whether camera b differs from a by more than tolerance_m of position or turn_rad of
    orientation, or in anything else selection uses (field of view, viewport, max SSE)."""
    if (a.fov_x, a.width, a.height, a.max_sse) != (b.fov_x, b.width, b.height, b.max_sse):
        return True
    if math.dist(a.position, b.position) > tolerance_m:
        return True
    cos_turn = math.cos(turn_rad)
    return (sum(p * q for p, q in zip(a.forward, b.forward)) < cos_turn
            or sum(p * q for p, q in zip(a.up, b.up)) < cos_turn)


class HeightSpans:
    """Chunk height spans (world ENU z, metres) learned from exported chunks, as `z_range` for
    select(): exact for a known chunk; for an unknown one whose four children are known, their
    union padded by the chunk's geometric error (its samples are some of theirs); else its nearest
    known ancestor's span padded by twice that ancestor's geometric error and a margin (finer levels
    add detail, not new relief); else DEFAULT_Z_RANGE. Bounded: forgets everything past `capacity`
    chunks learned (and its resolved spans past `capacity` chunks looked up)."""

    def __init__(self, level_error: Callable[[int], float], capacity: int = 200_000):
        self.level_error = level_error
        self.capacity = capacity
        self._spans: dict[Key, tuple[float, float]] = {}
        # resolved spans, per level-0 root: a span learned under a root changes only the spans of
        # that root's chunks (the chunk, its parent, its descendants), so learning forgets one root
        self._resolved: dict[tuple[int, int], dict[Key, tuple[float, float]]] = {}
        self._n_resolved = 0  # entries in _resolved, bounded by capacity too

    def learn(self, key: ChunkKey, z_min: float, z_max: float) -> None:
        if len(self._spans) >= self.capacity:
            self._spans.clear()
            self._forget_resolved()
        k = _t(key)
        self._spans[k] = (float(z_min), float(z_max))
        self._n_resolved -= len(self._resolved.pop(_root_xy(k), ()))

    def _forget_resolved(self) -> None:
        self._resolved.clear()
        self._n_resolved = 0

    def knows(self, key: ChunkKey) -> bool:
        """Whether `key`'s own span was learned (not bounded from an ancestor's)."""
        return _t(key) in self._spans

    def __call__(self, key: ChunkKey) -> tuple[float, float]:
        return self.span(_t(key))

    def span(self, k: Key) -> tuple[float, float]:
        """The span of chunk k = (level, x, y)."""
        root = _root_xy(k)
        resolved = self._resolved.get(root)
        span = None if resolved is None else resolved.get(k)
        if span is None:
            if self._n_resolved >= self.capacity:
                self._forget_resolved()
            span = self._resolved.setdefault(root, {})[k] = self._resolve(k)
            self._n_resolved += 1
        return span

    def _resolve(self, k: Key) -> tuple[float, float]:
        known = self._spans.get(k)
        if known is not None:
            return known
        children = [self._spans.get(c) for c in _children(k)]
        if all(c is not None for c in children):
            pad = self.level_error(k[0])
            return min(c[0] for c in children) - pad, max(c[1] for c in children) + pad
        for a in _up(k):
            known = self._spans.get(a)
            if known is not None:
                pad = 2.0 * self.level_error(a[0]) + Z_MARGIN_M
                return known[0] - pad, known[1] + pad
        return DEFAULT_Z_RANGE


def _root_xy(k: Key) -> tuple[int, int]:
    """The (x, y) of k's level-0 ancestor (k itself at level 0)."""
    level, x, y = k
    return (x >> level, y >> level)


def predict(camera: Camera, velocity, seconds: float) -> Camera:
    """The camera moved by velocity (m/s, ENU (3,)) for `seconds`, same orientation."""
    pos = tuple(float(p + v * seconds) for p, v in zip(camera.position, velocity))
    return replace(camera, position=pos)


def resolved(key: ChunkKey, resident: set[ChunkKey] | frozenset[ChunkKey], max_level: int) -> bool:
    """Is key shown at its detail or finer: resident itself, or all its children resolved?"""
    if key in resident:
        return True
    if key.level >= max_level:
        return False
    return all(resolved(c, resident, max_level) for c in key.children())


def ancestors(key: ChunkKey):
    k = key
    while k.level > 0:
        k = k.parent()
        yield k


Key = tuple[int, int, int]  # (level, x, y): plan's set lookups use plain tuples, cheaper than ChunkKeys


def _t(key: ChunkKey) -> Key:
    return (key.level, key.x, key.y)


def _up(k: Key):
    """The proper ancestors of k, nearest first."""
    level, x, y = k
    for d in range(1, level + 1):
        yield (level - d, x >> d, y >> d)


def _ancestor_tuples(keys) -> set[Key]:
    """Every proper ancestor of `keys` (each walk up stops at an ancestor already found: its own
    ancestors are in the set then), in time proportional to the distinct ancestors."""
    out: set[Key] = set()
    for k in keys:
        for a in _up(k):
            if a in out:
                break
            out.add(a)
    return out


class _Cover:
    """Answers covered(key) for many keys against one `ready` set (its ancestors computed once)."""

    def __init__(self, ready, max_level: int):
        self.ready = {_t(k) for k in ready}
        self.inner = _ancestor_tuples(self.ready)
        self.max_level = max_level

    def add(self, key: ChunkKey) -> None:
        """One more ready key (coverage only grows: the ancestor walk stops at a known ancestor)."""
        k = _t(key)
        self.ready.add(k)
        for a in _up(k):
            if a in self.inner:
                break
            self.inner.add(a)

    def _down(self, k: Key) -> bool:
        if k in self.ready:
            return True
        if k[0] >= self.max_level or k not in self.inner:
            return False
        return all(self._down(c) for c in _children(k))

    def __call__(self, key: ChunkKey) -> bool:
        k = _t(key)
        if k in self.ready or any(a in self.ready for a in _up(k)):
            return True
        return k in self.inner and all(self._down(c) for c in _children(k))


def _children(k: Key) -> tuple[Key, Key, Key, Key]:
    level, x, y = k
    return ((level + 1, 2 * x, 2 * y), (level + 1, 2 * x + 1, 2 * y), (level + 1, 2 * x, 2 * y + 1),
            (level + 1, 2 * x + 1, 2 * y + 1))


def covered(key: ChunkKey, ready: set[ChunkKey], max_level: int) -> bool:
    """Is key's whole area covered by chunks in `ready` (itself, an ancestor, or descendants
    that tile it)?"""
    return _Cover(ready, max_level)(key)


def plan(required: list[Selected], delivered: set[ChunkKey], max_level: int) -> tuple[list[ChunkKey], list[ChunkKey]]:
    """(to_send, to_unload). to_send: the required chunks not yet delivered, most urgent first,
    coverage before refinement, as 3D Tiles clients load ancestors first: first the level-0 chunks
    of the visible areas that nothing delivered covers, both the hole fillers (the level-0
    ancestor of every required chunk whose area nothing delivered covers yet: one coarse chunk
    shows the whole area at once) and the visible required chunks of level 0 (the far field, its
    own filler); then the other visible chunks, the fillers of the others, the others.
    to_unload: delivered chunks no longer
    required whose area is either outside the selection or fully covered by delivered chunks of the
    selection (never a hole on the client).

    It runs after every chunk sent, so its lookups are sets of tuples, each ancestor set is
    built once per call, and no candidate is compared with every required chunk."""
    req_set = frozenset(s.key for s in required)
    done = {_t(k) for k in delivered}
    seen_fillers: set[ChunkKey] = set()
    visible_fillers, other_fillers = [], []
    for s in required:
        k = _t(s.key)
        if (k[0] == 0 or k in done or any(a in done for a in _up(k))
                or all(c in done for c in _children(k))):
            continue
        root = _root(s.key)
        if root not in seen_fillers:
            seen_fillers.add(root)
            (visible_fillers if s.visible else other_fillers).append(root)
    wanted = [s for s in required if s.key not in delivered]
    split = next((i for i, s in enumerate(wanted) if not s.visible), len(wanted))
    to_send = (visible_fillers + coverage_first([s.key for s in wanted[:split]]) + other_fillers
               + [s.key for s in wanted[split:]])
    overlapping = _overlap_test(req_set)
    cover = _Cover(delivered & req_set, max_level)
    to_unload = [key for key in sorted(delivered - req_set, key=lambda k: (k.level, k.x, k.y))
                 if not overlapping(key) or cover(key)]
    return to_send, to_unload


def coverage_first(keys: list[ChunkKey]) -> list[ChunkKey]:
    """`keys` with those of level 0 first (each shows a whole area where nothing else can), the
    order kept otherwise."""
    return [k for k in keys if k.level == 0] + [k for k in keys if k.level > 0]


def above_selection(keys: Iterable[ChunkKey], selected: Iterable[ChunkKey]) -> list[ChunkKey]:
    """The keys of `keys` that are ancestors of a selected key (coarser than the selection there)."""
    above = selection_ancestors(frozenset(selected))
    return [k for k in keys if _t(k) in above]


def _overlap_test(selected: Iterable[ChunkKey]) -> Callable[[ChunkKey], bool]:
    """A test of whether an unselected key's area overlaps a selected key: one is the other's
    ancestor (each ancestor set built once)."""
    sel_t = {_t(k) for k in selected}
    above = selection_ancestors(frozenset(selected))  # keys with a selected descendant
    return lambda key: _t(key) in above or any(a in sel_t for a in _up(_t(key)))


@lru_cache(maxsize=1 << 16)
def _root(key: ChunkKey) -> ChunkKey:
    """key's level-0 ancestor (remembered: the delivery asks for the roots of every selected key
    at every selection, and a ChunkKey costs more to make than to look up)."""
    shift = key.level
    return ChunkKey(0, key.x >> shift, key.y >> shift)


@lru_cache(maxsize=16)
def selection_ancestors(keys: frozenset[ChunkKey]) -> frozenset[Key]:
    """The (level, x, y) of every proper ancestor of `keys`. Remembered for the last few sets: a
    client's selection is walked up by the next selection (hysteresis), the plan, the delivery's
    indexes and its unload rule (a frozenset hashes once; a lookup compares it with the one kept)."""
    return frozenset(_ancestor_tuples({_t(k) for k in keys}))
