"""`worldstream plan`: chunk counts are those `generate` would export, and the totals are the
measured per-chunk figures times the counts."""

import re
import subprocess
import sys

import pytest

from worldstream.core import WorldSpec
from worldstream.exporters.estimate import LevelSample, estimate, sample_keys, wall_hours
from worldstream.core import keys_in_radius


def test_estimates_multiply_the_measured_medians_by_the_counts():
    spec = WorldSpec(seed=1)
    samples = {5: LevelSample(5, (2.0, 1.0, 9.0), (100, 300, 200)), 6: LevelSample(6, (0.5,), (50,))}
    rows = estimate(spec, {5: 360, 6: 7200}, samples)
    assert [(r.level, r.chunks, r.seconds_per_chunk, r.bytes_per_chunk) for r in rows] == [(5, 360, 2.0, 200), (6, 7200, 0.5, 50)]
    assert rows[0].cpu_hours == pytest.approx(0.2) and rows[1].gigabytes == pytest.approx(3.6e-4)
    assert wall_hours(rows, 4) == pytest.approx((0.2 + 1.0) / 4)
    with pytest.raises(ValueError, match="no chunk measured"):
        estimate(spec, {5: 3}, {5: LevelSample(5, (), ())})


def test_samples_spread_over_the_keys():
    keys = keys_in_radius(WorldSpec(seed=1), 0.0, 0.0, 2000.0, 6)
    picked = sample_keys(keys, 3)
    assert len(picked) == 3 and len(set(picked)) == 3 and picked[0] != keys[0] and set(picked) <= set(keys)
    assert sample_keys(keys[:2], 5) == keys[:2]


def test_plan_command_counts_what_generate_would_export():
    r = subprocess.run([sys.executable, "-m", "worldstream", "plan", "--seed", "3", "--radius", "600", "--levels", "5:6",
                        "--format", "glb", "--sample", "1", "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {int(m[0]): (int(m[1]), float(m[2]), float(m[3])) for m in
            re.findall(r"^\s+(\d+)\s+\S+\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+[0-9.]+\s+[0-9.]+$", r.stdout, re.M)}
    spec = WorldSpec(seed=3)
    assert {k: v[0] for k, v in rows.items()} == {5: len(keys_in_radius(spec, 0, 0, 600, 5)),
                                                  6: len(keys_in_radius(spec, 0, 0, 600, 6))}
    assert all(s > 0 and mb > 0.01 for _, s, mb in rows.values())
    assert "1.44 km^2" in r.stdout and "with 2 worker processes" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "worldstream", "plan", "--levels", "5:9"], capture_output=True, text=True)
    assert bad.returncode != 0 and "goes past this world's levels" in bad.stderr
