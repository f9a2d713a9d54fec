"""LOD selection: the 3D Tiles SSE rule, coverage without holes, hysteresis, priorities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worldstream.core import ChunkKey, WorldSpec
from worldstream.exporters.tiles import ROOT_LEVELS, implicit_root_error
from worldstream.unreal_bridge import lod
from worldstream.unreal_bridge.protocol import CameraView

SPEC = WorldSpec(seed=7)


def level_error(level: int) -> float:
    return implicit_root_error(SPEC) / (1 << (level + ROOT_LEVELS))


def cam(x=0.0, y=0.0, z=120.0, forward=(1.0, 0.0, -0.3), **kw) -> lod.Camera:
    f = np.asarray(forward) / np.linalg.norm(forward)
    right = np.cross(f, [0, 0, 1.0])
    up = np.cross(right / np.linalg.norm(right), f)
    return lod.Camera(position=(x, y, z), forward=tuple(f), up=tuple(up), fov_x=math.radians(90), width=1920,
                      height=1080, **kw)


def area(keys) -> float:
    return sum(SPEC.chunk_extent(k.level) ** 2 for k in keys)


def test_selection_tiles_the_horizon_without_overlaps_and_refines_near_the_camera():
    c = cam()
    sel = lod.select(SPEC, [c], level_error, horizon_m=20000)
    keys = [s.key for s in sel]
    assert len(keys) == len(set(keys))
    for a in keys:  # no chunk overlaps another
        for anc in lod.ancestors(a):
            assert anc not in keys
    roots = {ChunkKey(0, i, j) for i in range(-2, 2) for j in range(-2, 2)}
    assert area(keys) == pytest.approx(area(roots))
    under = [s for s in sel if s.key.bounds(SPEC)[0] <= 0 < s.key.bounds(SPEC)[2] and s.key.bounds(SPEC)[1] <= 0 < s.key.bounds(SPEC)[3]]
    assert under[0].key.level == SPEC.levels - 1  # the finest level under the drone
    assert max(s.key.level for s in sel if s.distance > 10000) <= 2  # coarse towards the horizon
    # every leaf satisfies the rule, or is the finest level
    for s in sel:
        assert s.sse <= c.max_sse * lod.OUT_OF_VIEW_SSE_FACTOR * 1.2 or s.key.level == SPEC.levels - 1
    # the most urgent chunk is visible and fine
    assert sel[0].visible and sel[0].key.level >= SPEC.levels - 2


def test_behind_the_camera_stays_coarser_but_covered():
    # at max_sse 16 this world's chunks refine only around the camera itself (their measured
    # errors are small), the same ahead and behind; the frustum rule shows at a stricter max_sse
    sel = lod.select(SPEC, [cam(forward=(1.0, 0.0, -0.1), max_sse=2.0)], level_error)
    ahead = [s.key.level for s in sel if s.visible and 200 < s.distance < 2000]
    behind = [s.key.level for s in sel if not s.visible and 200 < s.distance < 2000]
    assert ahead and behind and np.mean(ahead) > np.mean(behind)


def test_hysteresis_stops_flicker_at_a_threshold():
    def keys(x, previous=frozenset()):
        return frozenset(s.key for s in lod.select(SPEC, [cam(x=x)], level_error, horizon_m=3000, previous=previous))

    x = next(x for x in np.arange(0.0, 2000.0, 4.0) if keys(x) != keys(x + 4.0))  # a refinement threshold
    current = keys(x)
    seen = {current}
    for step in range(6):  # oscillate across the threshold, feeding the last selection back
        current = keys(x + (4.0 if step % 2 == 0 else 0.0), previous=current)
        seen.add(current)
    assert len(seen) == 1  # without hysteresis it would flip at every step


def test_plan_keeps_parents_until_all_children_arrive():
    parent = ChunkKey(5, 0, 0)
    kids = parent.children()
    required = [lod.Selected(k, 20.0, 10.0, True) for k in kids]
    send, unload = lod.plan(required, delivered={parent}, max_level=6)
    assert send == list(kids) and unload == []  # nothing may disappear yet
    send, unload = lod.plan(required, delivered={parent, *kids[:3]}, max_level=6)
    assert send == [kids[3]] and unload == []
    send, unload = lod.plan(required, delivered={parent, *kids}, max_level=6)
    assert send == [] and unload == [parent]
    # coarsening: children go once the parent is back
    send, unload = lod.plan([lod.Selected(parent, 1.0, 10.0, True)], delivered=set(kids), max_level=6)
    assert send == [parent] and unload == []
    send, unload = lod.plan([lod.Selected(parent, 1.0, 10.0, True)], delivered={parent, *kids}, max_level=6)
    assert sorted(unload) == sorted(kids)
    # far away and no longer wanted: unloaded at once
    far = ChunkKey(5, 100, 100)
    assert lod.plan(required, delivered={far}, max_level=6)[1] == [far]


def test_plan_sends_the_visible_level_0_chunks_before_refinements():
    far = ChunkKey(0, 3, 0)  # a visible level-0 leaf: the far field, ranked last by its small sse
    near = [ChunkKey(5, 0, 0), ChunkKey(5, 1, 0)]
    required = ([lod.Selected(k, 20.0, 10.0, True) for k in near] + [lod.Selected(far, 1.0, 9000.0, True)]
                + [lod.Selected(ChunkKey(0, -1, 0), 0.5, 9000.0, False)])
    send, _ = lod.plan(required, delivered=set(), max_level=6)
    assert send == [ChunkKey(0, 0, 0), far, *near, ChunkKey(0, -1, 0)]


def test_plan_fills_uncovered_areas_with_their_level_0_chunk_first():
    root = ChunkKey(0, 0, 0)
    fine = [ChunkKey(5, 0, 0), ChunkKey(5, 1, 0)]
    behind = ChunkKey(3, -1, 0)  # under another root, not in view
    required = [lod.Selected(k, 20.0, 10.0, True) for k in fine] + [lod.Selected(behind, 2.0, 900.0, False)]
    send, unload = lod.plan(required, delivered=set(), max_level=6)
    assert send == [root, *fine, ChunkKey(0, -1, 0), behind] and unload == []
    send, unload = lod.plan(required, delivered={root, ChunkKey(0, -1, 0)}, max_level=6)
    assert send == [*fine, behind] and unload == []  # the fillers stay while they cover holes
    send, unload = lod.plan(required, delivered={root, ChunkKey(0, -1, 0), behind}, max_level=6)
    assert send == fine and unload == []  # behind covers only part of its root: the root stays
    send, unload = lod.plan(required[2:], delivered={ChunkKey(0, -1, 0), *behind.children()}, max_level=6)
    assert send == [behind] and unload == []  # the children cover it: no filler needed


def test_cameras_from_protocol_views_in_enu_and_airsim():
    east = lod.camera_from_view(CameraView(id="a", frame="enu", position=(1.0, 2.0, 3.0),
                                           orientation=(1.0, 0.0, 0.0, 0.0), fov_deg=90.0, viewport=(640, 480)))
    np.testing.assert_allclose(east.forward, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(east.up, [0, 0, 1], atol=1e-12)
    # AirSim: identity looks north; a 90 degree yaw (about NED z, down) looks east
    q = (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4))
    a = lod.camera_from_view(CameraView(id="b", frame="airsim", position=(10.0, 20.0, -30.0), orientation=q,
                                        fov_deg=90.0, viewport=(256, 144), player_start=(100.0, 200.0, 5.0)))
    np.testing.assert_allclose(a.position, [120.0, 210.0, 35.0])
    np.testing.assert_allclose(a.forward, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(a.up, [0, 0, 1], atol=1e-12)
    assert a.fov_y == pytest.approx(2 * math.atan(math.tan(math.pi / 4) * 144 / 256))


def test_sse_matches_the_3d_tiles_formula():
    c = cam()
    assert lod.screen_space_error(2.0, 100.0, c) == pytest.approx(2.0 * 1080 / (2 * 100.0 * math.tan(c.fov_y / 2)))
    assert lod.screen_space_error(2.0, 0.0, c) == math.inf


def test_look_ahead_refines_where_the_camera_is_going_and_ranks_it_after_what_it_sees():
    now = cam(x=0.0, forward=(0.0, 1.0, -0.3))  # looks north while it flies east
    later = lod.predict(now, (150.0, 0.0, 0.0), 8.0)
    assert later.position == (1200.0, 0.0, 120.0) and later.forward == now.forward
    plain = lod.select(SPEC, [now], level_error, horizon_m=3000)
    with_ahead = lod.select(SPEC, [now], level_error, horizon_m=3000, ahead=[later])
    finest = SPEC.levels - 1
    near_later = lambda sel: {s.key for s in sel if s.key.level == finest and s.key.bounds(SPEC)[0] >= 1000}  # noqa: E731
    assert len(near_later(with_ahead)) > len(near_later(plain))
    # chunks only the predicted camera sees come after every chunk the current camera sees
    ranks = [(s.visible, s.soon) for s in with_ahead]
    first_soon_only = next(i for i, (v, s) in enumerate(ranks) if s and not v)
    assert all(v for v, _ in ranks[:first_soon_only]) and not any(v for v, _ in ranks[first_soon_only:])
    # what the current camera needs is exactly what it selects alone; the rest is prefetched,
    # and in view it ranks after every needed chunk in view
    assert {s.key for s in with_ahead if s.needed} == {s.key for s in plain} & {s.key for s in with_ahead}
    assert any(not s.needed for s in with_ahead) and all(s.needed for s in plain)
    in_view = [s.needed for s in with_ahead if s.visible]
    assert in_view == sorted(in_view, reverse=True)


def test_resolved_means_resident_at_the_key_or_finer_everywhere():
    k = ChunkKey(4, 3, -2)
    kids = k.children()
    assert lod.resolved(k, {k}, SPEC.levels - 1)
    assert lod.resolved(k, set(kids), SPEC.levels - 1)
    assert not lod.resolved(k, set(kids[:3]), SPEC.levels - 1)
    assert lod.resolved(k, set(kids[:3]) | set(kids[3].children()), SPEC.levels - 1)
    assert not lod.resolved(k, {k.parent()}, SPEC.levels - 1)  # coarser does not count


def test_a_chunk_is_in_view_exactly_when_one_of_its_children_is_with_their_own_spans():
    spans = lod.HeightSpans(level_error)
    rng = np.random.default_rng(5)
    for k in [ChunkKey(6, x, y) for x in range(-8, 8) for y in range(-8, 8)]:
        lo = float(rng.uniform(0, 300))
        spans.learn(k, lo, lo + float(rng.uniform(1, 60)))
    c = cam(0.0, 0.0, 150.0, forward=(1.0, 0.3, -0.5))
    coarse = [ChunkKey(3, x, y) for x in (-1, 0) for y in (-1, 0)] + [ChunkKey(4, x, y) for x in range(-2, 2) for y in range(-2, 2)]
    seen = 0
    for key in coarse:
        got = lod.chunk_in_view(SPEC, c, key, spans, depth=9)
        assert got == any(lod.chunk_in_view(SPEC, c, child, spans, depth=9) for child in key.children())
        assert not got or lod.in_frustum(c, key.bounds(SPEC), spans(key))  # never more than the sphere
        seen += got
    assert 0 < seen < len(coarse)


def _frustum_planes(camera: lod.Camera) -> list[np.ndarray]:
    """Inward normals of the near side and the four side planes, all through the camera (numpy)."""
    f, up = np.asarray(camera.forward), np.asarray(camera.up)
    right = np.cross(f, up)
    hx, hy = camera.fov_x / 2.0, camera.fov_y / 2.0
    return [f, -math.cos(hx) * right + math.sin(hx) * f, math.cos(hx) * right + math.sin(hx) * f,
            -math.cos(hy) * up + math.sin(hy) * f, math.cos(hy) * up + math.sin(hy) * f]


def test_leaves_beside_the_view_are_not_in_view_and_leaves_in_it_are():
    c = cam(0.0, 0.0, 120.0, forward=(1.0, 0.0, -0.3))
    z = (0.0, 50.0)
    sel = lod.select(SPEC, [c], level_error, z_range=lambda key: z)
    sphere_only = [s for s in sel if not s.visible and lod.in_frustum(c, s.key.bounds(SPEC), z)]
    assert sphere_only  # bounding spheres reach into the view from beside it
    planes = _frustum_planes(c)
    rng = np.random.default_rng(2)
    for s in sel:
        w, so, e, n = s.key.bounds(SPEC)
        pts = np.stack([rng.uniform(w, e, 400), rng.uniform(so, n, 400), rng.uniform(*z, 400)], 1) - np.asarray(c.position)
        if any(all(pt @ p > 0 for p in planes) for pt in pts):  # conservative: a leaf holding a point in view is in view
            assert s.visible, s.key


def test_height_spans_bound_an_unknown_chunk_by_its_four_known_children():
    spans = lod.HeightSpans(level_error)
    parent = ChunkKey(2, 1, 1)
    spans.learn(ChunkKey(0, 0, 0), -50.0, 900.0)  # a far looser bound from the ancestor
    for i, k in enumerate(parent.children()[:3]):
        spans.learn(k, 100.0 + i, 120.0 + i)
    assert spans(parent)[0] < -50.0  # three children known: still the ancestor's padded bound
    spans.learn(parent.children()[3], 95.0, 150.0)
    pad = level_error(parent.level)
    assert spans(parent) == (95.0 - pad, 150.0 + pad)


def test_height_spans_are_exact_when_known_and_bound_unknown_descendants():
    spans = lod.HeightSpans(level_error, capacity=3)
    key = ChunkKey(1, 0, 0)
    assert spans(key.children()[0]) == lod.DEFAULT_Z_RANGE
    spans.learn(key, 40.0, 90.0)
    assert spans(key) == (40.0, 90.0)
    lo, hi = spans(key.children()[2].children()[1])
    assert lo < 40.0 < 90.0 < hi and hi - lo < 200.0
    for k in key.children()[:3]:
        spans.learn(k, 0.0, 1.0)
    assert spans(key) == lod.DEFAULT_Z_RANGE  # over capacity: forgotten, never unbounded


def _in_frustum_reference(camera: lod.Camera, bounds, z_range) -> bool:
    """The bounding-sphere test written with numpy 3-vectors, one box at a time (an independent form)."""
    w, s, e, n = bounds
    centre = np.array([(w + e) / 2.0, (s + n) / 2.0, (z_range[0] + z_range[1]) / 2.0])
    radius = 0.5 * math.sqrt((e - w) ** 2 + (n - s) ** 2 + (z_range[1] - z_range[0]) ** 2)
    f, up = np.asarray(camera.forward), np.asarray(camera.up)
    right = np.cross(f, up)
    rel = centre - np.asarray(camera.position)
    if np.dot(rel, f) < -radius:
        return False
    hx, hy = camera.fov_x / 2.0, camera.fov_y / 2.0
    planes = (-math.cos(hx) * right + math.sin(hx) * f, math.cos(hx) * right + math.sin(hx) * f,
              -math.cos(hy) * up + math.sin(hy) * f, math.cos(hy) * up + math.sin(hy) * f)
    return all(np.dot(rel, p) >= -radius for p in planes)


def test_in_frustum_agrees_with_the_vector_form():
    rng = np.random.default_rng(3)
    agree = inside = 0
    for i in range(8):
        f = rng.normal(size=3)
        c = cam(*rng.uniform(-3000, 3000, 2), float(rng.uniform(20, 900)), forward=tuple(f / np.linalg.norm(f)))
        for _ in range(500):
            w, s = rng.uniform(-20000, 20000, 2)
            bounds = (w, s, w + rng.uniform(1, 5000), s + rng.uniform(1, 5000))
            z0 = rng.uniform(-200, 1000)
            z = (z0, z0 + rng.uniform(0, 2000))
            got = lod.in_frustum(c, bounds, z)
            agree += got == _in_frustum_reference(c, bounds, z)
            inside += got
    assert agree == 4000 and 0 < inside < 4000


def _reference_plan(required, delivered, max_level):
    """plan as first written: every candidate compared with every required chunk, ancestor sets
    rebuilt per candidate (slow, plainly right): the fast plan must give the same answer."""
    def overlaps(a, b):
        if a.level > b.level:
            a, b = b, a
        shift = b.level - a.level
        return (b.x >> shift) == a.x and (b.y >> shift) == a.y

    def covered(key, ready):
        if key in ready or any(a in ready for a in lod.ancestors(key)):
            return True
        inner = {a for k in ready if k.level > key.level for a in lod.ancestors(k)}

        def down(k):
            if k in ready:
                return True
            if k.level >= max_level or k not in inner:
                return False
            return all(down(c) for c in k.children())
        return key in inner and all(down(c) for c in key.children())

    req = [s.key for s in required]
    req_set = set(req)
    seen, vis, other = set(), [], []
    for s in required:
        k = s.key
        if (k.level == 0 or k in delivered or any(a in delivered for a in lod.ancestors(k))
                or all(c in delivered for c in k.children())):
            continue
        root = ChunkKey(0, k.x >> k.level, k.y >> k.level)
        if root not in seen:
            seen.add(root)
            (vis if s.visible else other).append(root)
    wanted = [s for s in required if s.key not in delivered]
    split = next((i for i, s in enumerate(wanted) if not s.visible), len(wanted))
    seen_now = [s.key for s in wanted[:split]]
    roots_now = [k for k in seen_now if k.level == 0]  # coverage first: the far field's own fillers
    to_send = vis + roots_now + [k for k in seen_now if k not in roots_now] + other + [s.key for s in wanted[split:]]
    ready = delivered & req_set
    gone = [k for k in sorted(delivered - req_set, key=lambda k: (k.level, k.x, k.y))
            if not [r for r in req if overlaps(r, k)] or covered(k, ready)]
    return to_send, gone


@pytest.mark.parametrize("seed", range(6))
def test_plan_matches_the_plain_reference_and_is_fast(seed):
    import random
    import time

    rng = random.Random(seed)
    max_level = SPEC.levels - 1
    a = lod.select(SPEC, [cam(rng.uniform(-5000, 5000), rng.uniform(-5000, 5000), rng.uniform(60, 600))],
                   level_error, horizon_m=12000)
    b = lod.select(SPEC, [cam(rng.uniform(-5000, 5000), rng.uniform(-5000, 5000), rng.uniform(60, 600))],
                   level_error, horizon_m=12000)
    pool = [s.key for s in a + b]
    pool += [k.parent() for k in pool if k.level > 0] + [c for k in pool[:40] for c in k.children()]
    for fraction in (0.0, 0.3, 0.7, 1.0):
        delivered = {k for k in pool if rng.random() < fraction}
        assert lod.plan(b, delivered, max_level) == _reference_plan(b, delivered, max_level)
    delivered = {s.key for s in a} | {s.key for s in b[: len(b) // 2]}

    def best_of_3(fn):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = fn(b, delivered, max_level)
            times.append(time.perf_counter() - t0)
        return out, min(times)

    (fast, t_fast), (slow, t_slow) = best_of_3(lod.plan), best_of_3(_reference_plan)
    assert fast == slow and (t_fast < t_slow or t_slow < 2e-3), (t_fast, t_slow)


def test_each_selected_chunk_carries_the_per_chunk_rules_over_all_cameras():
    """select() tests a whole level against every camera at once; each leaf's figures are those the
    per-chunk functions give it: nearest distance and largest sse over the current cameras, in view
    by its box (and children), seen by a look-ahead camera; refined chunks exceed their limit."""
    spans = lod.HeightSpans(level_error)
    rng = np.random.default_rng(11)
    for k in [ChunkKey(5, x, y) for x in range(-6, 6) for y in range(-6, 6)]:
        lo = float(rng.uniform(0, 200))
        spans.learn(k, lo, lo + float(rng.uniform(1, 80)))
    current = [cam(0.0, 0.0, 150.0, forward=(1.0, 0.3, -0.5), max_sse=8.0), cam(900.0, -400.0, 60.0, forward=(-1.0, 0.2, -0.2))]
    ahead = [lod.predict(current[0], (60.0, 0.0, 0.0), 2.0)]
    sel = lod.select(SPEC, current, level_error, horizon_m=8000, z_range=spans, ahead=ahead)
    assert len(sel) > 50 and any(s.visible for s in sel) and any(not s.visible for s in sel)
    for s in sel:
        b, z, err = s.key.bounds(SPEC), spans(s.key), level_error(s.key.level)
        d = [lod.box_distance(c, b, z) for c in current]
        plain = [math.dist(c.position, (min(max(c.position[0], b[0]), b[2]), min(max(c.position[1], b[1]), b[3]),
                                        min(max(c.position[2], z[0]), z[1]))) for c in current]
        assert d == pytest.approx(plain, rel=1e-12, abs=1e-9)  # the nearest point of the box, independently
        assert s.distance == min(d) and s.sse == max(lod.screen_space_error(err, x, c) for x, c in zip(d, current))
        seen = [lod.in_frustum(c, b, z) for c in current]
        assert s.visible == (any(seen) and any(lod.chunk_in_view(SPEC, c, s.key, spans) for c in current))
        assert s.soon == any(lod.in_frustum(c, b, z) for c in ahead)
        if s.key.level > 0:  # its parent was refined: over the limit for some camera
            p = s.key.parent()
            pb, pz, perr = p.bounds(SPEC), spans(p), level_error(p.level)
            assert any(lod.screen_space_error(perr, lod.box_distance(c, pb, pz), c)
                       > c.max_sse * (1.0 if lod.in_frustum(c, pb, pz) else lod.OUT_OF_VIEW_SSE_FACTOR) * 1.2
                       for c in current + ahead), s.key


def test_height_spans_answer_anew_after_learning():
    """Spans are remembered once resolved; learning a chunk changes the answers for the chunk, its
    parent (four children known) and its descendants (a nearer known ancestor)."""
    spans = lod.HeightSpans(level_error)
    parent = ChunkKey(3, 5, -2)
    grandchild = parent.children()[1].children()[2]
    assert spans(parent) == spans(grandchild) == lod.DEFAULT_Z_RANGE
    spans.learn(ChunkKey(0, 0, -1), 10.0, 500.0)  # the level-0 ancestor
    assert spans(grandchild)[1] < lod.DEFAULT_Z_RANGE[1] and spans(parent)[1] < lod.DEFAULT_Z_RANGE[1]
    for i, k in enumerate(parent.children()):
        spans.learn(k, 100.0 + i, 110.0 + i)
    pad = level_error(parent.level)
    assert spans(parent) == (100.0 - pad, 113.0 + pad)
    lo, hi = spans(grandchild)  # now bounded by its parent (known), not the level-0 chunk
    assert 100.0 < hi < 140.0
    spans.learn(grandchild, 101.0, 102.0)
    assert spans(grandchild) == (101.0, 102.0)
    other = ChunkKey(3, -40, 40)  # under another level-0 chunk: untouched by all this
    assert spans(other) == lod.DEFAULT_Z_RANGE
