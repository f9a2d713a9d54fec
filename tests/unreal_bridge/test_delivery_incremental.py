"""Delivery's incremental bookkeeping against the plain rule: after every selection and every chunk
sent, its queue, delivered set and unloads equal those of a reference that re-plans from scratch
with `lod.plan` at each event (what Delivery did before), along flights that turn, stop, fail
chunks and teleport."""

import math
import random

import pytest

from worldstream.core import WorldSpec
from worldstream.exporters.tiles import implicit_root_error, level_geometric_error
from worldstream.unreal_bridge import lod
from worldstream.unreal_bridge.session import Delivery

SPEC = WorldSpec(seed=7)
ROOT = implicit_root_error(SPEC)


class ReferenceDelivery:
    """The plain rule: lod.plan from scratch at every event (less the keys that failed since the
    selection), the hold rule over all unloadable keys."""

    def __init__(self, max_level: int, hold_s: float):
        self.max_level, self.hold_s = max_level, hold_s
        self.covered_since, self.selection, self.previous = {}, [], frozenset()
        self.delivered, self.pending, self.failed = set(), [], set()

    def _plan(self, now: float) -> list:
        pending, unloadable = lod.plan(self.selection, self.delivered, self.max_level)
        self.pending = [k for k in pending if k not in self.failed]
        covered = lod.above_selection(unloadable, self.previous)
        held = {k: self.covered_since.get(k, now) for k in covered}
        gone = [k for k in unloadable if k not in held or now - held[k] >= self.hold_s]
        self.covered_since = {k: t for k, t in held.items() if now - t < self.hold_s}
        self.delivered.difference_update(gone)
        return gone

    def on_selection(self, selection, now):
        self.selection, self.previous, self.failed = selection, frozenset(s.key for s in selection), set()
        return self._plan(now)

    def on_failed(self, key):
        self.failed.add(key)
        self.pending = [k for k in self.pending if k != key]

    def on_sent(self, key, now):
        self.delivered.add(key)
        return self._plan(now)


def camera(x, y, z, yaw_deg, pitch_deg=-20.0) -> lod.Camera:
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    f = (math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch))
    u = (-math.sin(pitch) * math.cos(yaw), -math.sin(pitch) * math.sin(yaw), math.cos(pitch))
    return lod.Camera((x, y, z), f, u, math.radians(90.0), 1920, 1080, 16.0)


@pytest.mark.parametrize("seed,hold_s", [(0, 15.0), (1, 0.0), (2, 2.0), (3, 15.0)])
def test_incremental_delivery_equals_replanning_from_scratch(seed, hold_s):
    rng = random.Random(seed)
    fast = Delivery(SPEC.levels - 1, hold_s=hold_s)
    ref = ReferenceDelivery(SPEC.levels - 1, hold_s)
    x, y, z, yaw, speed = 0.0, 0.0, 300.0, 0.0, 60.0
    unloads = failures = 0
    for i in range(240):
        t = i / 10.0
        if rng.random() < 0.02:  # a teleport
            x, y = rng.uniform(-20000, 20000), rng.uniform(-20000, 20000)
        yaw += rng.uniform(-8, 8)
        step = speed * 0.1 * rng.choice([0.0, 1.0, 1.0, 3.0])
        x, y = x + step * math.cos(math.radians(yaw)), y + step * math.sin(math.radians(yaw))
        z = max(40.0, z + rng.uniform(-20, 20))
        cam = camera(x, y, z, yaw)
        selection = lod.select(SPEC, [cam], lambda level: level_geometric_error(ROOT, level), 20000.0, None,
                               fast.previous, ahead=[lod.predict(cam, (step * 10, 0.0, 0.0), 2.0)])
        assert fast.on_selection(selection, t) == ref.on_selection(selection, t)
        assert fast.pending == ref.pending and fast.delivered == ref.delivered
        for _ in range(rng.choice([0, 1, 3, 8])):
            if not fast.pending:
                break
            key = fast.pending[min(len(fast.pending) - 1, rng.choice([0, 0, 0, 1, 4]))]  # out of order too
            now = t + rng.uniform(0.0, 0.09)
            if rng.random() < 0.1:  # generation failed: not asked again until the next selection
                fast.on_failed(key)
                ref.on_failed(key)
                failures += 1
                assert fast.pending == ref.pending and key not in fast.pending
                continue
            gone = fast.on_sent(key, now)
            assert gone == ref.on_sent(key, now)
            unloads += len(gone)
            assert fast.pending == ref.pending and fast.delivered == ref.delivered
            assert fast.covered_since == ref.covered_since
    assert unloads > 0 and failures > 0 and fast.delivered
