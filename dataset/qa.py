"""Question-answer pairs in five families (spatial, morphology, counting, geometry, caption), each
computed from one frame's facts (facts.FrameFacts): the objects' annotations, the camera, the class
and depth images, and only the objects that count as visible there (visibility.py).

Objects are referred to by their box in the image: ``[left, top, right, bottom]`` in thousandths of
the image width and height (0..1000, the grounding convention of common VLMs), the box of their
visible pixels. Answer formats (docs/dataset.md):
- choice: one of the options the question lists (a word, or a letter A-D); exact match;
- count: a whole number; exact;
- number: a number with its unit ("12.5 m", "340 m2", "35 %"); right when within
  max(abs_tol, rel_tol * |answer|) of the true value;
- text: a caption, scored by ROUGE-L.
Each template has several phrasings, drawn by the frame's generator."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..core.settlements import ROOFS, TYPES
from ..core.vegetation import KINDS as TREE_KINDS
from .facts import (COVER_GROUPS, SLOPE, SLOPE_LIMITS, TERRAIN, TERRAIN_LIMITS, FrameFacts, GroundSample, angle_name,
                    classify, near_limit)
from .objects import BUILDING_NAMES, TREE_NAMES
from .visibility import Sighting

FAMILIES = ("spatial", "morphology", "counting", "geometry", "caption")
MAX_COUNT = 40  # counting questions are asked only up to this many objects
MIN_SEPARATION = 0.1  # left/right and image-direction questions: centres at least this share of the width apart
HIGHER_MARGIN_M = 1.5  # "which is higher": tops at least this far apart
NEAREST_MARGIN = 1.15  # "which is nearest": the second nearest at least 15 % farther
DIRECTION_MARGIN_DEG = 8.0  # image direction: at least this far from a sector border
SLOPE_MARGIN_DEG = 1.5
COVER_MARGIN = 0.03


@dataclass(frozen=True)
class QA:
    """One question about one frame. family: FAMILIES; kind: template name ("spatial.left_right");
    answer_type: choice | count | number | text; choices: the options (choice); value: the true
    number (count, number); unit: its unit; abs_tol, rel_tol: the tolerance (number); objects: world
    ids of the objects it is about."""

    family: str
    kind: str
    question: str
    answer: str
    answer_type: str
    choices: tuple[str, ...] = ()
    value: float | None = None
    unit: str = ""
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    objects: tuple[int, ...] = field(default=())
    points: tuple[tuple[float, float], ...] = field(default=())

    def to_dict(self) -> dict:
        return {"family": self.family, "kind": self.kind, "question": self.question, "answer": self.answer,
                "answer_type": self.answer_type, "choices": list(self.choices), "value": self.value,
                "unit": self.unit, "abs_tol": self.abs_tol, "rel_tol": self.rel_tol, "objects": list(self.objects),
                "points": [list(p) for p in self.points]}


def box_text(s: Sighting, width: int, height: int) -> str:
    """A sighting's box as [left, top, right, bottom] in thousandths of the image."""
    x0, y0, x1, y1 = s.box
    return (f"[{round(1000 * x0 / width)}, {round(1000 * y0 / height)}, {round(1000 * x1 / width)}, "
            f"{round(1000 * y1 / height)}]")


def ref(s: Sighting, f: FrameFacts) -> str:
    """'the building in box [...]' / 'the tree in box [...]' (never its type: that may be the question)."""
    return f"the {s.object.kind} in box {box_text(s, f.intr.width, f.intr.height)}"


def point_text(p: GroundSample, f: FrameFacts) -> str:
    """'point (u, v)' in thousandths of the image width and height."""
    return f"point ({round(1000 * p.u / f.intr.width)}, {round(1000 * p.v / f.intr.height)})"


def point_distance(p: GroundSample, f: FrameFacts) -> float:
    """Metres from the camera to a ground sample."""
    return float(np.linalg.norm(np.array([p.x, p.y, p.z]) - np.asarray(f.pose.position)))


def fmt(value: float, decimals: int) -> float:
    return round(float(value), decimals)


def number(value: float, unit: str) -> tuple[float, str]:
    """(rounded value, answer text): one decimal under 100, whole numbers above."""
    v = fmt(value, 1) if abs(value) < 100 else float(round(value))
    text = f"{v:.1f}" if abs(value) < 100 else f"{int(v)}"
    return v, f"{text} {unit}".strip()


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def letters(n: int) -> tuple[str, ...]:
    return tuple("ABCD"[:n])


# ------------------------------------------------------------------ spatial
def spatial(f: FrameFacts, rng: np.random.Generator) -> list[QA]:
    vis = list(f.visible)
    out: list[QA] = []
    w = f.intr.width
    pairs = [(a, b) for a, b in itertools.combinations(vis, 2)]
    order = rng.permutation(len(pairs)) if pairs else []
    pairs = [pairs[i] for i in order]
    lr = dirn = high = dist = 0
    for a, b in pairs:
        if rng.random() < 0.5:
            a, b = b, a
        du, dv = a.centre_uv[0] - b.centre_uv[0], a.centre_uv[1] - b.centre_uv[1]
        if lr < 2 and abs(du) >= MIN_SEPARATION * w:
            side = "left" if du < 0 else "right"
            q = pick(rng, ["In the image, is {a} to the left or to the right of {b}? Answer left or right.",
                           "Seen in this picture, does {a} lie left or right of {b}? Answer left or right.",
                           "Is {a} left or right of {b} in this view? Reply with left or right."])
            out.append(QA("spatial", "spatial.left_right", q.format(a=ref(a, f), b=ref(b, f)), side, "choice",
                          ("left", "right"), objects=(a.object.id, b.object.id)))
            lr += 1
            continue
        name, margin = angle_name(du, dv)
        if dirn < 2 and np.hypot(du, dv) >= 1.5 * MIN_SEPARATION * w and margin >= DIRECTION_MARGIN_DEG:
            opts = ("above", "upper right", "right", "lower right", "below", "lower left", "left", "upper left")
            q = pick(rng, ["Where in the image is {a} relative to {b}? Answer with one of: {o}.",
                           "In which image direction does {a} lie from {b}? Choose one of: {o}.",
                           "Relative to {b}, where is {a} in the picture? One of: {o}."])
            out.append(QA("spatial", "spatial.image_direction", q.format(a=ref(a, f), b=ref(b, f), o=", ".join(opts)),
                          name, "choice", opts, objects=(a.object.id, b.object.id)))
            dirn += 1
            continue
        if high < 2 and abs(a.object.top - b.object.top) >= HIGHER_MARGIN_M:
            answer = "A" if a.object.top > b.object.top else "B"
            q = pick(rng, ["Which reaches higher above sea level: (A) {a} or (B) {b}? Answer A or B.",
                           "Whose highest point is higher: (A) {a} or (B) {b}? Reply A or B.",
                           "Which top lies higher in the world: (A) {a} or (B) {b}? Answer with the letter."])
            out.append(QA("spatial", "spatial.higher", q.format(a=ref(a, f), b=ref(b, f)), answer, "choice",
                          letters(2), objects=(a.object.id, b.object.id)))
            high += 1
            continue
        if dist < 2:
            d = float(np.hypot(a.object.centre[0] - b.object.centre[0], a.object.centre[1] - b.object.centre[1]))
            v, text = number(d, "m")
            q = pick(rng, ["How far apart are {a} and {b}, centre to centre on the ground, in metres?",
                           "What is the horizontal distance in metres between {a} and {b}?",
                           "Estimate the ground distance between the centres of {a} and {b} (metres)."])
            out.append(QA("spatial", "spatial.distance", q.format(a=ref(a, f), b=ref(b, f)), text, "number", (), v, "m",
                          3.0, 0.15, (a.object.id, b.object.id)))
            dist += 1
    if len(vis) >= 3:
        k = int(min(len(vis), 4))
        chosen = [vis[i] for i in rng.choice(len(vis), k, replace=False)]
        ranked = sorted(chosen, key=lambda s: s.distance)
        if ranked[1].distance >= NEAREST_MARGIN * ranked[0].distance:
            options = "; ".join(f"({l}) {ref(s, f)}" for l, s in zip(letters(k), chosen))
            answer = letters(k)[chosen.index(ranked[0])]
            q = pick(rng, ["Which of these is nearest to the camera? {o}. Answer with the letter.",
                           "Of the following, which lies closest to the camera: {o}? Reply with a letter.",
                           "Nearest to the viewer: {o}? Give the letter."])
            out.append(QA("spatial", "spatial.nearest", q.format(o=options), answer, "choice", letters(k),
                          objects=tuple(s.object.id for s in chosen)))
    return out + ground_points(f, rng)


def ground_points(f: FrameFacts, rng: np.random.Generator) -> list[QA]:
    """Two ground points: which is nearer to the camera, and (another pair) which lies higher."""
    pts = list(f.samples)
    if len(pts) < 2:
        return []
    out = []
    i, j = (int(v) for v in rng.choice(len(pts), 2, replace=False))
    a, b = pts[i], pts[j]
    da, db = point_distance(a, f), point_distance(b, f)
    if max(da, db) >= NEAREST_MARGIN * min(da, db):
        q = pick(rng, ["Which ground point is nearer to the camera: (A) {a} or (B) {b}? Answer A or B.",
                       "Is (A) {a} or (B) {b} closer to the camera? Reply A or B.",
                       "Of (A) {a} and (B) {b}, which is nearer to the viewer? Give the letter."])
        out.append(QA("spatial", "spatial.point_nearer", q.format(a=point_text(a, f), b=point_text(b, f)),
                      "A" if da < db else "B", "choice", letters(2), points=((a.u, a.v), (b.u, b.v))))
    i, j = (int(v) for v in rng.choice(len(pts), 2, replace=False))
    a, b = pts[i], pts[j]
    if abs(a.z - b.z) >= HIGHER_MARGIN_M:
        q = pick(rng, ["Which ground point lies higher above sea level: (A) {a} or (B) {b}? Answer A or B.",
                       "Is the ground higher at (A) {a} or at (B) {b}? Reply A or B.",
                       "Which of (A) {a} and (B) {b} is at the greater elevation? Give the letter."])
        out.append(QA("spatial", "spatial.point_higher", q.format(a=point_text(a, f), b=point_text(b, f)),
                      "A" if a.z > b.z else "B", "choice", letters(2), points=((a.u, a.v), (b.u, b.v))))
    return out


# ------------------------------------------------------------------ morphology
def morphology(f: FrameFacts, rng: np.random.Generator) -> list[QA]:
    out: list[QA] = []
    if f.terrain is not None and not near_limit(f.median_slope, TERRAIN_LIMITS, 1.0):
        q = pick(rng, ["What kind of terrain does this view show? Answer flat, rolling, hilly or steep.",
                       "Describe the relief of the ground in this image as flat, rolling, hilly or steep.",
                       "Is the terrain here flat, rolling, hilly or steep?"])
        out.append(QA("morphology", "morphology.terrain", q, f.terrain, "choice", TERRAIN))
    probes = [s for s in f.samples if not near_limit(s.slope, SLOPE_LIMITS, SLOPE_MARGIN_DEG)]
    for i in (rng.choice(len(probes), min(2, len(probes)), replace=False) if probes else []):
        s = probes[int(i)]
        u, v = round(1000 * s.u / f.intr.width), round(1000 * s.v / f.intr.height)
        q = pick(rng, ["What is the slope of the ground at point ({u}, {v}) (thousandths of the image width and "
                       "height)? Answer flat (under 5 degrees), gentle (5-15), moderate (15-30) or steep (over 30).",
                       "Classify the ground slope at image point ({u}, {v}) (per mille of width, height) as flat (<5 deg), "
                       "gentle (5-15 deg), moderate (15-30 deg) or steep (>30 deg).",
                       "At ({u}, {v}) in thousandths of the image, is the ground flat (<5 deg), gentle (5-15 deg), "
                       "moderate (15-30 deg) or steep (>30 deg)?"])
        out.append(QA("morphology", "morphology.slope", q.format(u=u, v=v), classify(s.slope, SLOPE_LIMITS, SLOPE),
                      "choice", SLOPE))
    shares = [(g, s) for g, s in f.cover.items() if s >= 0.03]
    if len(shares) >= 2 and shares[0][1] - shares[1][1] >= COVER_MARGIN:
        opts = tuple(sorted(g for g, _ in shares))
        q = pick(rng, ["Which of these covers the largest part of the image: {o}?",
                       "What takes up most of this picture: {o}?",
                       "Which land cover dominates the view: {o}?"])
        out.append(QA("morphology", "morphology.cover_dominant", q.format(o=", ".join(opts)), shares[0][0], "choice",
                      opts))
    groups = [g for g in COVER_GROUPS if g != "sky"]
    present = [g for g in groups if f.cover.get(g, 0.0) >= 0.02]
    if present:
        for g in rng.choice(present, min(2, len(present)), replace=False):
            pct = 100.0 * f.cover.get(str(g), 0.0)
            v = float(round(pct))
            q = pick(rng, ["About what percentage of the image shows {g}?",
                           "Roughly how much of this view is {g}, in percent of the image?",
                           "What share of the picture is covered by {g} (percent)?"])
            out.append(QA("morphology", "morphology.cover_share", q.format(g=g), f"{int(v)} %", "number", (), v, "%",
                          5.0, 0.0))
    absent = [g for g in groups if g not in f.cover]
    for pool, answer in ((present, "yes"), (absent, "no")):
        if pool:
            g = str(pick(rng, pool))
            q = pick(rng, ["Does this image show any {g}? Answer yes or no.", "Is there {g} in this view? Yes or no?",
                           "Can you see {g} in this picture? Answer yes or no."])
            out.append(QA("morphology", "morphology.cover_present", q.format(g=g), answer, "choice", ("yes", "no")))
    buildings = [s for s in f.visible if s.object.kind == "building"]
    for s in [buildings[i] for i in (rng.choice(len(buildings), min(2, len(buildings)), replace=False)
                                      if buildings else [])]:
        q = pick(rng, ["What is the roof shape of {a}? Answer flat, gabled or hipped.",
                       "Is the roof of {a} flat, gabled or hipped?",
                       "Which roof does {a} have: flat, gabled or hipped?"])
        out.append(QA("morphology", "morphology.roof", q.format(a=ref(s, f)), s.object.roof, "choice", ROOFS,
                      objects=(s.object.id,)))
        names = tuple(BUILDING_NAMES[t] for t in TYPES)
        q = pick(rng, ["What type of building is {a}? Answer one of: {o}.",
                       "Which kind of building is {a}: {o}?",
                       "Classify {a} as one of: {o}."])
        out.append(QA("morphology", "morphology.building_type", q.format(a=ref(s, f), o=", ".join(names)),
                      s.object.name, "choice", names, objects=(s.object.id,)))
    return out


# ------------------------------------------------------------------ counting
REGIONS = {"image": (0.0, 0.0, 1.0, 1.0), "left half": (0.0, 0.0, 0.5, 1.0), "right half": (0.5, 0.0, 1.0, 1.0),
           "top half": (0.0, 0.0, 1.0, 0.5), "bottom half": (0.0, 0.5, 1.0, 1.0),
           "top-left quarter": (0.0, 0.0, 0.5, 0.5), "top-right quarter": (0.5, 0.0, 1.0, 0.5),
           "bottom-left quarter": (0.0, 0.5, 0.5, 1.0), "bottom-right quarter": (0.5, 0.5, 1.0, 1.0)}


def box_centre(s: Sighting) -> tuple[float, float]:
    """Centre (u, v) in pixels of the box of a sighting's visible pixels: what places it in a region."""
    x0, y0, x1, y1 = s.box
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0


def in_region(s: Sighting, region: str, width: int, height: int) -> bool:
    """Whether the centre of the sighting's box lies in the region (left and top edges inclusive)."""
    l, t, r, b = REGIONS[region]
    u, v = box_centre(s)
    return l * width <= u < r * width and t * height <= v < b * height


def counting(f: FrameFacts, rng: np.random.Generator) -> list[QA]:
    """Counts of visible objects, over the whole image or a part of it (an object is in a part when
    the centre of its visible pixels' box is). Asked when the frame shows some object at all;
    never over MAX_COUNT: where the whole image holds more, a half or quarter is asked about."""
    if not f.sightings:
        return []
    vis = f.visible
    out: list[QA] = []
    w, h = f.intr.width, f.intr.height
    t, r, k = str(pick(rng, TYPES)), str(pick(rng, ROOFS)), str(pick(rng, TREE_KINDS))
    kinds = [("counting.buildings", "buildings", lambda o: o.kind == "building"),
             ("counting.trees", "trees", lambda o: o.kind == "tree"),
             ("counting.building_type", _plural(BUILDING_NAMES[t]), lambda o: o.kind == "building" and o.category == t),
             ("counting.roof", f"buildings with a {r} roof", lambda o: o.kind == "building" and o.roof == r),
             ("counting.tree_kind", _plural(TREE_NAMES[k]), lambda o: o.kind == "tree" and o.category == k)]
    parts = [p for p in REGIONS if p != "image"]
    for kind, what, test in kinds:
        of_kind = [s for s in vis if test(s.object)]
        regions = ["image"] + [parts[i] for i in rng.permutation(len(parts))]
        asked = 0
        for region in regions:
            members = [s for s in of_kind if in_region(s, region, w, h)]
            if len(members) > MAX_COUNT:
                continue
            if region == "image":
                q = pick(rng, ["How many {w} are visible in this image?", "Count the {w} you can see in this view.",
                               "How many {w} does this picture show?"]).format(w=what)
            else:
                q = pick(rng, ["How many {w} are visible in the {p} of the image?",
                               "Count the {w} in the {p} of this view.",
                               "How many {w} can you see in the {p} of the picture?"]).format(w=what, p=region)
            out.append(QA("counting", kind, q, str(len(members)), "count", (), float(len(members)), "", 0.0, 0.0,
                          tuple(s.object.id for s in members)))
            asked += 1
            if asked == 2:
                break
    return out


def _plural(name: str) -> str:
    return name + ("es" if name.endswith("ch") else "s")


# ------------------------------------------------------------------ geometry
def geometry(f: FrameFacts, rng: np.random.Generator) -> list[QA]:
    out: list[QA] = []
    v, text = number(f.agl, "m")
    q = pick(rng, ["How high above the ground is the camera, in metres?",
                   "At what height above the ground was this picture taken (metres)?",
                   "Estimate the camera's height above the ground in metres."])
    out.append(QA("geometry", "geometry.camera_height", q, text, "number", (), v, "m", 2.0, 0.1))
    pts = list(f.samples)
    for p in [pts[int(i)] for i in (rng.choice(len(pts), min(2, len(pts)), replace=False) if pts else [])]:
        v, text = number(point_distance(p, f), "m")
        q = pick(rng, ["How far is the ground at {p} from the camera, in metres?",
                       "What is the distance in metres from the camera to the ground at {p}?",
                       "Estimate the distance from the camera to the ground seen at {p} (metres)."])
        out.append(QA("geometry", "geometry.point_distance", q.format(p=point_text(p, f)), text, "number", (), v,
                      "m", 2.0, 0.1, points=((p.u, p.v),)))
    vis = list(f.visible)
    buildings = [s for s in vis if s.object.kind == "building"]
    trees = [s for s in vis if s.object.kind == "tree"]
    for s in [buildings[i] for i in (rng.choice(len(buildings), min(2, len(buildings)), replace=False)
                                      if buildings else [])]:
        v, text = number(s.object.height, "m")
        q = pick(rng, ["How tall is {a}, from the ground to the top of its roof, in metres?",
                       "What is the height of {a} above the ground (metres, to the roof top)?",
                       "Estimate the height of {a} in metres, ground to roof top."])
        out.append(QA("geometry", "geometry.building_height", q.format(a=ref(s, f)), text, "number", (), v, "m", 1.0,
                      0.1, (s.object.id,)))
        area = float(round(s.object.area))
        q = pick(rng, ["What is the footprint area of {a}, in square metres?",
                       "How large is the ground plan of {a} (m2)?",
                       "Estimate the area {a} covers on the ground, in m2."])
        out.append(QA("geometry", "geometry.footprint_area", q.format(a=ref(s, f)), f"{int(area)} m2", "number", (),
                      area, "m2", 10.0, 0.15, (s.object.id,)))
    for s in [vis[i] for i in (rng.choice(len(vis), min(2, len(vis)), replace=False) if vis else [])]:
        v, text = number(s.distance, "m")
        q = pick(rng, ["How far is {a} from the camera, in metres?",
                       "What is the distance from the camera to {a} (metres)?",
                       "Estimate how many metres {a} is from the camera."])
        out.append(QA("geometry", "geometry.camera_distance", q.format(a=ref(s, f)), text, "number", (), v, "m", 2.0,
                      0.1, (s.object.id,)))
    for s in [trees[i] for i in (rng.choice(len(trees), min(1, len(trees)), replace=False) if trees else [])]:
        v, text = number(s.object.height, "m")
        q = pick(rng, ["How tall is {a}, in metres?", "What is the height of {a} in metres?",
                       "Estimate the height of {a} (metres)."])
        out.append(QA("geometry", "geometry.tree_height", q.format(a=ref(s, f)), text, "number", (), v, "m", 1.0, 0.15,
                      (s.object.id,)))
    return out


# ------------------------------------------------------------------ caption
def caption_text(f: FrameFacts, rng: np.random.Generator) -> str:
    """A description composed from the frame's facts."""
    look = "straight down" if f.pitch <= -80 else f"{abs(round(f.pitch))} degrees below the horizon"
    terrain = f"{f.terrain} terrain" if f.terrain else "the ground"
    opening = pick(rng, ["An aerial view from {h} m above the ground, looking {d} and {l}, over {t}.",
                         "A drone image taken {h} m above the ground, facing {d}, {l}, over {t}.",
                         "Seen from {h} m up, the camera faces {d}, {l}, over {t}."])
    parts = [opening.format(h=round(f.agl), d=f.heading, l=look, t=terrain)]
    cover = [(g, s) for g, s in f.cover.items() if s >= 0.05 and g != "sky"]
    if cover:
        parts.append("The image shows " + _join([f"{g} ({round(100 * s)} %)" for g, s in cover[:4]]) + ".")
    buildings = [s for s in f.visible if s.object.kind == "building"]
    trees = [s for s in f.visible if s.object.kind == "tree"]
    if buildings:
        kinds = _tally(BUILDING_NAMES[s.object.category] for s in buildings)
        roofs = _tally(s.object.roof for s in buildings)
        parts.append(f"{_count(len(buildings), 'building')} can be seen ({_join([_count(n, k) for k, n in kinds])}), "
                     f"mostly with {roofs[0][0]} roofs; the tallest is about {round(max(s.object.height for s in buildings))} m high.")
    else:
        parts.append("No buildings are visible.")
    if trees:
        kinds = _tally(TREE_NAMES[s.object.category] for s in trees)
        parts.append(f"{_count(len(trees), 'tree')} stand out ({_join([_count(n, k) for k, n in kinds])}).")
    if "sky" in f.cover and f.cover["sky"] >= 0.02:
        parts.append("The sky shows near the top.")
    return " ".join(parts)


def caption(f: FrameFacts, rng: np.random.Generator) -> list[QA]:
    q = pick(rng, ["Describe this aerial image.", "Write a short description of this drone view.",
                   "Give a caption for this UAV image, with the camera height, land cover and the objects in view."])
    return [QA("caption", "caption", q, caption_text(f, rng), "text")]


def _tally(items) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for i in items:
        counts[i] = counts.get(i, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun if n == 1 else _plural(noun)}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def frame_qa(f: FrameFacts, rng: np.random.Generator) -> list[QA]:
    """Every candidate question of a frame, family by family (balance.py thins them)."""
    return spatial(f, rng) + morphology(f, rng) + counting(f, rng) + geometry(f, rng) + caption(f, rng)
