"""Tree models built in code and the per-tree transforms that place them.

A model is a unit tree of one kind (core.vegetation.KINDS): trunk and crown in ENU units where the
crown radius is 1 horizontally and the tree height is 1 vertically; an instance scales it by
(radius, radius, height), turns it about the vertical and moves it onto the ground. The crown is
the surface `core.vegetation.crown_height` puts in the DSM (cone; half ellipsoid on top), with
its vertices on that surface, so meshes, depth renders and the DSM agree up to: the facets' sagitta
(the mesh lies inside), and on slopes the DSM hanging each crown sample from the ground under that
sample while the model hangs it from the trunk's foot (slope x radius: 1.6 m at a 30 % slope and
the largest crowns). Exporters write the instances with EXT_mesh_gpu_instancing or,
for clients without it, merge them into plain triangles (`merged`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.vegetation import BROADLEAF_CROWN_DEPTH, CONIFER_CROWN_BASE, KINDS, Tree

SEGMENTS = 6  # facets around a trunk or crown: trees are the most numerous triangles in a view
TRUNK_RADIUS = 0.09  # of the crown radius
CROWN_UNDERSIDE = 1.3  # a broadleaf crown's bottom half hangs deeper than its top half (relative depth)
COLOURS = {"trunk": (92, 70, 52), "conifer": (36, 62, 42), "broadleaf": (62, 92, 46)}  # sRGB albedo


@dataclass(frozen=True, eq=False)
class Part:
    """One material of a model: positions, normals (V, 3) float32 unit-model ENU; triangles
    (T, 3) uint32, counter-clockwise from outside; material: "trunk" or the crown kind."""

    material: str
    positions: np.ndarray
    normals: np.ndarray
    triangles: np.ndarray


@dataclass(frozen=True, eq=False)
class TreeInstances:
    """The trees of one kind in a chunk: model parts; translation (N, 3) float32 ENU relative
    to the chunk origin (trunk foot); turn (N, 2) float64 (cos, sin) of the turn about up;
    scale (N, 3) float32 (radius, radius, height) in metres; row (N,) uint32 index into the chunk
    mesh's tree list."""

    kind: str
    parts: tuple[Part, ...]
    translation: np.ndarray
    turn: np.ndarray
    scale: np.ndarray
    row: np.ndarray

    def merged(self) -> list[tuple[Part, np.ndarray]]:
        """Each part with every instance applied: [(part in chunk ENU, (V,) uint32 tree row)]."""
        out = []
        c, s = self.turn[:, 0], self.turn[:, 1]
        for p in self.parts:
            v = len(p.positions)
            scaled = p.positions[None, :, :] * self.scale[:, None, :]  # (N, V, 3)
            x = scaled[..., 0] * c[:, None] - scaled[..., 1] * s[:, None]
            y = scaled[..., 0] * s[:, None] + scaled[..., 1] * c[:, None]
            pos = np.stack([x, y, scaled[..., 2]], -1) + self.translation[:, None, :]
            # normals take the inverse scale, then the turn
            n = p.normals[None, :, :] / self.scale[:, None, :]
            n = n / np.linalg.norm(n, axis=-1, keepdims=True)
            nx = n[..., 0] * c[:, None] - n[..., 1] * s[:, None]
            ny = n[..., 0] * s[:, None] + n[..., 1] * c[:, None]
            nrm = np.stack([nx, ny, n[..., 2]], -1)
            tris = (p.triangles[None, :, :].astype(np.int64) + (np.arange(len(self.row)) * v)[:, None, None])
            out.append((Part(p.material, pos.reshape(-1, 3).astype(np.float32), nrm.reshape(-1, 3).astype(np.float32),
                             tris.reshape(-1, 3).astype(np.uint32)), np.repeat(self.row, v)))
        return out


def _ring(radius: float, z: float, segments: int = SEGMENTS) -> np.ndarray:
    a = np.arange(segments) * (2 * np.pi / segments)
    return np.stack([np.cos(a) * radius, np.sin(a) * radius, np.full(segments, z)], 1)


def _trunk(top: float) -> Part:
    bottom, upper = _ring(TRUNK_RADIUS, -0.02), _ring(TRUNK_RADIUS, top)
    pos = np.concatenate([bottom, upper])
    nrm = np.concatenate([bottom, bottom]) * [1, 1, 0]
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    i = np.arange(SEGMENTS)
    j = (i + 1) % SEGMENTS
    tris = np.concatenate([np.stack([i, j, j + SEGMENTS], 1), np.stack([i, j + SEGMENTS, i + SEGMENTS], 1)])
    return Part("trunk", pos.astype(np.float32), nrm.astype(np.float32), tris.astype(np.uint32))


def _cone(segments: int = SEGMENTS, underside: bool = True) -> Part:
    base = CONIFER_CROWN_BASE
    ring = _ring(1.0, base, segments)
    i = np.arange(segments)
    j = (i + 1) % segments
    # side: one apex vertex per facet, so each facet gets its own normal
    mid = (i + 0.5) * (2 * np.pi / segments)
    slope = 1.0 - base  # rise over unit radius
    side_n = np.stack([np.cos(mid) * slope, np.sin(mid) * slope, np.ones(segments)], 1)
    side_n /= np.linalg.norm(side_n, axis=1, keepdims=True)
    apex = np.tile([0.0, 0.0, 1.0], (segments, 1))
    pos = np.concatenate([ring[i], ring[j], apex, ring, [[0.0, 0.0, base]]])
    nrm = np.concatenate([side_n, side_n, side_n, np.tile([0.0, 0.0, -1.0], (segments + 1, 1))])
    side = np.stack([i, i + segments, i + 2 * segments], 1)
    centre = 4 * segments
    under = np.stack([np.full(segments, centre), 3 * segments + j, 3 * segments + i], 1)
    tris = np.concatenate([side, under]) if underside else side
    return Part("conifer", pos.astype(np.float32), nrm.astype(np.float32), tris.astype(np.uint32))


def _dome(rings: int = 2, segments: int = SEGMENTS) -> Part:
    """A closed crown: its top half is the DSM's half ellipsoid, a deeper half closes it below."""
    depth = BROADLEAF_CROWN_DEPTH
    centre = 1.0 - depth
    lat = np.linspace(-np.pi / 2, np.pi / 2, 2 * rings + 1)[1:-1]
    a = np.arange(segments) * (2 * np.pi / segments)
    def vertical(t):
        return depth * (1.0 if t >= 0 else CROWN_UNDERSIDE)
    ring_pos = [np.stack([np.cos(a) * np.cos(t), np.sin(a) * np.cos(t), np.full(segments, centre + vertical(t) * np.sin(t))], 1)
                for t in lat]
    pos = np.concatenate(ring_pos + [[[0.0, 0.0, centre - depth * CROWN_UNDERSIDE]], [[0.0, 0.0, 1.0]]])
    unit = pos - [0.0, 0.0, centre]
    semi = np.where(unit[:, 2:3] >= 0, depth, depth * CROWN_UNDERSIDE)
    nrm = unit / np.concatenate([np.ones((len(pos), 2)), semi * semi], axis=1)  # gradient of each half-ellipsoid
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    i = np.arange(segments)
    j = (i + 1) % segments
    tris = []
    for r in range(len(lat) - 1):
        lo, hi = r * segments, (r + 1) * segments
        tris += [np.stack([lo + i, lo + j, hi + j], 1), np.stack([lo + i, hi + j, hi + i], 1)]
    bottom, top = len(pos) - 2, len(pos) - 1
    last = (len(lat) - 1) * segments
    tris += [np.stack([np.full(segments, bottom), j, i], 1), np.stack([last + i, last + j, np.full(segments, top)], 1)]
    return Part("broadleaf", pos.astype(np.float32), nrm.astype(np.float32), np.concatenate(tris).astype(np.uint32))


MODELS: dict[str, tuple[Part, ...]] = {
    "conifer": (_trunk(CONIFER_CROWN_BASE + 0.05), _cone()),
    "broadleaf": (_trunk(1.0 - BROADLEAF_CROWN_DEPTH * (1.0 + CROWN_UNDERSIDE) + 0.05), _dome()),
}
# What a renderer may draw for a tree seen from afar: the crown alone, FAR_SEGMENTS facets around
# (its outline departs from MODELS' by at most FAR_DEPARTURE crown radii), no underside, no trunk.
FAR_SEGMENTS = 3
FAR_DEPARTURE = float(np.cos(np.pi / SEGMENTS) - np.cos(np.pi / FAR_SEGMENTS))
FAR_MODELS: dict[str, tuple[Part, ...]] = {
    "conifer": (_cone(FAR_SEGMENTS, underside=False),),
    "broadleaf": (_dome(1, FAR_SEGMENTS),),
}


def _turns(steps: int = 8) -> np.ndarray:
    """(steps, 2) float64 (cos, sin) of k * 60 deg / steps, k = 0..steps-1, from square roots and
    products only (IEEE-exact on every CPU, unlike vectorised sin/cos). The models have 6-fold
    symmetry, so turns of 0..60 deg give every distinct look."""
    c, s = 0.5, np.sqrt(0.75)  # 60 deg
    for _ in range(int(np.log2(steps))):  # halve down to 60 deg / steps
        c, s = np.sqrt((1.0 + c) * 0.5), np.sqrt((1.0 - c) * 0.5)
    out, cc, ss = [], 1.0, 0.0
    for _ in range(steps):
        out.append((cc, ss))
        cc, ss = cc * c - ss * s, ss * c + cc * s
    return np.array(out, np.float64)


TURNS = _turns()


def turn_of(tree_id: np.ndarray) -> np.ndarray:
    """A tree's turn about the vertical: (N, 2) float64 (cos, sin), chosen by its id."""
    return TURNS[(np.asarray(tree_id, np.int64) >> 5) % len(TURNS)]


def tree_instances(trees: tuple[Tree, ...], origin: tuple[float, float]) -> tuple[TreeInstances, ...]:
    """Per kind, the instances of `trees` relative to `origin` (east, north); rows index `trees`."""
    out = []
    for kind in KINDS:
        rows = np.array([i for i, t in enumerate(trees) if t.kind == kind], np.int64)
        if not len(rows):
            continue
        sel = [trees[i] for i in rows]
        translation = np.array([[t.x - origin[0], t.y - origin[1], t.ground] for t in sel], np.float64)
        scale = np.array([[t.crown_radius, t.crown_radius, t.height] for t in sel], np.float32)
        out.append(TreeInstances(kind, MODELS[kind], translation.astype(np.float32),
                                 turn_of(np.array([t.id for t in sel], np.int64)), scale, rows.astype(np.uint32)))
    return tuple(out)
