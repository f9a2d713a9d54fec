"""One small dataset built once per session in another process (the CLI), and a second build of the
same arguments interrupted after its first scene and resumed in this process. A world with 8 m/px at
level 0 and four levels (1 m/px at the finest, as the default world) keeps chunk generation short."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worldstream.core import WorldSpec

CENTRES = [[3000.0, -3000.0], [2750.0, -3150.0]]  # a hillside town of seed 7
ARGS = ["--seed", "7", "--scenes", "2", "--views", "3", "--size", "160x120", "--base-resolution", "8",
        "--num-levels", "4"]
SPEC = WorldSpec(seed=7, base_resolution=8.0, levels=4)


def build_command(centres: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "worldstream", "dataset", "build", *ARGS, "--centers", str(centres), "--out", str(out)]


def settings_of(centres: Path):
    from worldstream.dataset import BuildSettings
    from worldstream.dataset.scenes import read_centres

    return BuildSettings(seed=7, scenes=2, views=3, width=160, height=120, centres=read_centres(centres), spec=SPEC)


@pytest.fixture(scope="session")
def centres_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("centres") / "centres.json"
    path.write_text(json.dumps(CENTRES))
    return path


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, centres_file) -> Path:
    """A dataset folder written by `worldstream dataset build` in another process."""
    out = tmp_path_factory.mktemp("dataset") / "a"
    r = subprocess.run(build_command(centres_file, out), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="session")
def resumed(tmp_path_factory, centres_file) -> dict:
    """The same build killed (SIGKILL) in another process once its first scene folder exists, then
    resumed here: {"out", "interrupted", "first": stat of scene 0's scene.json before the resume, "log"}."""
    from worldstream.dataset import build

    out = tmp_path_factory.mktemp("dataset") / "b"
    p = subprocess.Popen(build_command(centres_file, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "scenes" / "scene_0000" / "scene.json"
    deadline = time.monotonic() + 600
    while not first.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.kill()
    p.wait()
    interrupted = not (out / "dataset.json").exists()
    before = first.stat()
    log = io.StringIO()
    build(settings_of(centres_file), out, log=log)
    return {"out": out, "interrupted": interrupted, "first": before, "log": log.getvalue()}


def load_scene(root: Path, index: int) -> dict:
    return json.loads((root / "scenes" / f"scene_{index:04d}" / "scene.json").read_text())


def read_items(root: Path) -> list[dict]:
    return [json.loads(line) for split in ("train", "val", "test") for line in
            (root / f"{split}.jsonl").read_text().splitlines() if line.strip()]
