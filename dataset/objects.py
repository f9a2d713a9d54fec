"""The objects a view can show, from the world's own annotations: buildings (core.settlements.Building)
and trees (core.vegetation.Tree) as `SceneObject`s holding the 3D facts the questions ask about, and
the vertices of the solid each one is drawn as (for its silhouette in a camera).

All coordinates are world ENU metres (float64). Ids are the world-stable ids the renderer writes into
the instance image (trees have bit 31 set)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..core.settlements import Building
from ..core.vegetation import Tree
from ..exporters.tree_mesh import MODELS as TREE_MODELS, turn_of

BUILDING_NAMES = {"house": "house", "row_house": "row house", "apartment": "apartment block",
                  "industrial": "industrial building", "centre": "town-centre building"}
TREE_NAMES = {"conifer": "conifer", "broadleaf": "broadleaf tree"}
_TREE_UNIT = {kind: np.concatenate([p.positions for p in parts]).astype(np.float64)
              for kind, parts in TREE_MODELS.items()}  # the unit model's vertices per kind (radius 1, height 1)


@dataclass(frozen=True)
class SceneObject:
    """kind: "building" or "tree"; id: world-stable instance id; category: building type
    (core.settlements.TYPES) or tree kind (core.vegetation.KINDS); centre: (3,) its centre, the
    footprint centroid (or trunk) at half its height above the ground; ground: bare-earth height
    under it (the lowest footprint corner's for buildings); top: its highest point (roof ridge,
    crown top); roof: roof kind (flat, gabled, hipped) or "" for trees; footprint: corners
    counter-clockwise (buildings) or () (trees); area: footprint area (m^2; trees: crown disc);
    eaves: where a building's walls end (= top for flat roofs and for trees); crown_radius: m (trees;
    0 for buildings)."""

    kind: str
    id: int
    category: str
    centre: tuple[float, float, float]
    ground: float
    top: float
    roof: str
    footprint: tuple[tuple[float, float], ...]
    area: float
    eaves: float
    crown_radius: float = 0.0

    @property
    def height(self) -> float:
        """Metres from the ground to the highest point."""
        return self.top - self.ground

    @property
    def name(self) -> str:
        """What a question calls it: 'house', 'conifer', ..."""
        return (BUILDING_NAMES if self.kind == "building" else TREE_NAMES)[self.category]

    def vertices(self) -> np.ndarray:
        """(K, 3) float64 corners of the solid it is drawn as: a building's walls from the ground to
        the eaves plus its ridge line (a convex solid, so its silhouette is the hull of these), a
        tree's model vertices scaled and turned as the exporter places them."""
        if self.kind == "tree":
            unit = _TREE_UNIT[self.category]
            c, s = turn_of(np.array([self.id]))[0]
            r, h = self.crown_radius, self.top - self.ground
            x, y = unit[:, 0] * r, unit[:, 1] * r
            return np.stack([x * c - y * s + self.centre[0], x * s + y * c + self.centre[1],
                             unit[:, 2] * h + self.ground], axis=1)
        fp = np.asarray(self.footprint, np.float64)
        eaves = self.top if self.roof == "flat" else min(self.top, self.eaves)
        low = np.column_stack([fp, np.full(len(fp), self.ground)])
        high = np.column_stack([fp, np.full(len(fp), eaves)])
        ridge = _ridge_line(fp, self.top)
        return np.concatenate([low, high, ridge])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "id": self.id, "category": self.category, "centre": [round(c, 3) for c in self.centre],
                "ground": round(self.ground, 3), "top": round(self.top, 3), "height": round(self.height, 3),
                "roof": self.roof, "footprint": [[round(x, 3), round(y, 3)] for x, y in self.footprint],
                "area": round(self.area, 2), "eaves": round(self.eaves, 3), "crown_radius": round(self.crown_radius, 3)}


def _ridge_line(fp: np.ndarray, z: float) -> np.ndarray:
    """(2, 3): the midpoints of the footprint's two short sides at height z (the ridge of a gabled
    roof; a hipped roof's ridge lies within it, a flat roof's at the eaves)."""
    a, b = fp[1] - fp[0], fp[2] - fp[1]
    if np.hypot(*a) >= np.hypot(*b):  # sides 0-1 and 2-3 are the long ones: the ridge joins the short sides' midpoints
        ends = [(fp[1] + fp[2]) / 2, (fp[3] + fp[0]) / 2]
    else:
        ends = [(fp[0] + fp[1]) / 2, (fp[2] + fp[3]) / 2]
    return np.column_stack([np.array(ends), np.full(2, z)])


def polygon_area(corners) -> float:
    """Area (m^2) of a simple polygon from its (N, 2) corners (shoelace)."""
    p = np.asarray(corners, np.float64)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def corner_points(buildings: Iterable[Building]) -> np.ndarray:
    """(K, 2) float64: every footprint corner of the buildings, in order."""
    return np.array([c for b in buildings for c in b.footprint], np.float64).reshape(-1, 2)


def building_objects(buildings: Iterable[Building], corner_ground: np.ndarray) -> list[SceneObject]:
    """SceneObjects of buildings, given the bare-earth height (K,) at each of their corner_points."""
    buildings = list(buildings)
    z = np.asarray(corner_ground, np.float64)
    out, i = [], 0
    for b in buildings:
        n = len(b.footprint)
        g = float(max(z[i:i + n].min(), b.base))
        i += n
        fp = np.asarray(b.footprint, np.float64)
        cx, cy = (float(v) for v in fp.mean(axis=0))
        top = float(b.ridge)
        out.append(SceneObject("building", int(b.id), b.type, (cx, cy, (g + top) / 2.0), g, top, b.roof_kind,
                               tuple((float(x), float(y)) for x, y in fp), polygon_area(fp), float(b.roof)))
    return out


def tree_objects(trees: Iterable[Tree]) -> list[SceneObject]:
    """SceneObjects of trees (their annotation holds their ground height)."""
    return [SceneObject("tree", int(t.id), t.kind, (float(t.x), float(t.y), float(t.ground) + float(t.height) / 2.0),
                        float(t.ground), float(t.ground) + float(t.height), "", (),
                        float(np.pi * t.crown_radius ** 2), float(t.ground) + float(t.height), float(t.crown_radius))
            for t in trees]
