"""The build: determinism across processes, resuming after a kill, the file formats, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from worldstream.dataset import BuildSettings, DatasetError, build
from worldstream.dataset.scenes import read_centres

from .conftest import SPEC, load_scene, read_items, settings_of

SPLIT_FILES = ("train.jsonl", "val.jsonl", "test.jsonl")


def test_the_same_arguments_give_byte_identical_jsonl_in_another_process(dataset, resumed):
    # `dataset` was built by the CLI in one process, `resumed` by another killed mid-way and this one
    for name in SPLIT_FILES + ("card.json",):
        assert (dataset / name).read_bytes() == (resumed["out"] / name).read_bytes(), name
    for i in (0, 1):
        rel = f"scenes/scene_{i:04d}/scene.json"
        assert (dataset / rel).read_bytes() == (resumed["out"] / rel).read_bytes()
    assert sum(len((dataset / n).read_bytes()) for n in SPLIT_FILES) > 10000


def test_an_interrupted_build_resumes_keeping_finished_scenes(resumed):
    out = resumed["out"]
    assert resumed["interrupted"], "the first run finished before it could be killed"
    assert "1/1 this run" in resumed["log"]  # only the unfinished scene was built
    after = (out / "scenes" / "scene_0000" / "scene.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (resumed["first"].st_ino, resumed["first"].st_mtime_ns)
    assert not [p for p in out.rglob("*.tmp-*")]  # the killed run's leftovers are gone
    assert json.loads((out / "dataset.json").read_text())["complete"] is True


def test_a_rerun_with_other_settings_is_refused(resumed, centres_file):
    s = settings_of(centres_file)
    other = BuildSettings(seed=s.seed, scenes=s.scenes, views=s.views + 1, width=s.width, height=s.height,
                          centres=s.centres, spec=SPEC)
    with pytest.raises(DatasetError, match="other settings"):
        build(other, resumed["out"])


def test_records_are_single_turn_chat_with_their_image_and_metadata(dataset):
    items = read_items(dataset)
    ids = [it["id"] for it in items]
    assert len(ids) == len(set(ids))
    families = set()
    for it in items:
        user, assistant = it["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        image, text = user["content"]
        assert image["type"] == "image" and image["image"] == it["images"][0] and text["type"] == "text"
        assert (dataset / image["image"]).is_file()
        meta = it["meta"]
        assert meta["answer_type"] in ("choice", "count", "number", "text")
        if meta["answer_type"] == "choice":
            assert assistant["content"][0]["text"] in meta["choices"]
        if meta["answer_type"] == "number":
            assert meta["unit"] and (meta["abs_tol"] > 0 or meta["rel_tol"] > 0)
        families.add(meta["family"])
    assert families == {"spatial", "morphology", "counting", "geometry", "caption"}
    card = json.loads((dataset / "card.json").read_text())
    assert card["qa_pairs"] == len(items) and sum(card["per_family"].values()) == len(items)
    assert set(card["answer_distributions"]) == {it["meta"]["kind"] for it in items}
    splits = card["scene_splits"]
    assert sorted(splits) == ["test", "train"]  # split by scene: no scene's items in two splits
    for split in ("train", "test"):
        rows = [json.loads(x) for x in (dataset / f"{split}.jsonl").read_text().splitlines()]
        assert {r["meta"]["scene"] for r in rows} == {i for i, s in enumerate(splits) if s == split}
    assert (dataset / "examples.jpg").stat().st_size > 10000 and (dataset / "README.md").read_text().startswith("#")


def test_frames_hold_calibrated_layers_and_georeferenced_cameras(dataset):
    scene = load_scene(dataset, 0)
    k = np.array(scene["intrinsics"]["K"])
    assert k[0, 0] == pytest.approx(80.0) and k[0, 2] == 80.0 and k[1, 2] == 60.0  # 160 px, 90 deg
    for frame in scene["frames"]:
        folder = dataset / "scenes" / "scene_0000"
        rgb = np.array(Image.open(folder / frame["files"]["rgb"]))
        classes = np.array(Image.open(folder / frame["files"]["classes"]))
        normals = np.array(Image.open(folder / frame["files"]["normals"]))
        import tifffile

        depth = tifffile.imread(folder / frame["files"]["depth"])
        assert rgb.shape == (120, 160, 3) and classes.shape == (120, 160) and normals.shape == (120, 160, 3)
        assert depth.dtype == np.float32 and depth.shape == (120, 160)
        cam = frame["camera"]
        c2w = np.array(cam["camera_to_world"])
        assert np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-6)
        assert np.allclose(c2w[:3, 3], cam["position_enu"], atol=1e-3)
        # the centre pixel's depth along the optical axis (z of the OpenCV camera) lands on the ground
        d = float(depth[60, 80])
        hit = c2w[:3, :3] @ (np.linalg.inv(k) @ np.array([80.0, 60.0, 1.0]) * d) + c2w[:3, 3]
        assert hit[2] < cam["position_enu"][2] - 10
        geo = cam["geodetic"]
        x, y, _ = cam["position_enu"]  # the world's anchor is 47.3769 N, 8.5417 E; a degree of latitude is ~111.2 km
        assert geo["lat"] == pytest.approx(47.3769 + y / 111_200, abs=2e-4)
        assert geo["lon"] == pytest.approx(8.5417 + x / (111_320 * np.cos(np.radians(47.3769))), abs=2e-4)
        assert -85.0 <= cam["pitch_deg"] <= -35.0 and abs(cam["roll_deg"]) <= 6.0
        assert 30.0 - 1e-6 <= frame["stop"]["agl"] <= 150.0 + 1e-6


def test_bad_input_says_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="at least 1"):
        BuildSettings(seed=7, scenes=0, spec=SPEC)
    with pytest.raises(DatasetError, match="seed"):
        BuildSettings(seed=8, scenes=1, spec=SPEC)
    bad = tmp_path / "c.json"
    bad.write_text('{"x": 1}')
    with pytest.raises(DatasetError, match=r"JSON list of \[x, y\]"):
        read_centres(bad)
    from worldstream.cli import main

    assert main(["dataset", "eval", "--data", str(tmp_path), "--pred", str(bad)]) == 2
