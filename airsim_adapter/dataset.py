"""Datasets recorded along a mission (layout in docs/airsim.md): per frame the images as AirSim
returned them, the vehicle and camera poses in AirSim NED and world ENU, and ground truth from the
world itself (surface and ground height under the vehicle, height above ground, the classes the
camera sees). Every file is written atomically; `dataset.json`, written last once everything
else is synced to disk, marks it complete."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..core import frames
from ..core.biomes import CLASSES, PALETTE
from ..exporters.atomic import fsync_paths, write_file_atomic
from ..render.camera import Intrinsics, Pose
from ..render.renderer import NO_HIT_DEPTH
from .structs import rotation_matrix

MANIFEST = "dataset.json"
FRAMES_DIR = "frames"
IMAGES_DIR = "images"
FAR_M = 20000.0  # depth beyond this is sky (AirSim reports a huge depth where nothing is hit)


def camera_to_world(position_ned, orientation_ned, home_enu) -> np.ndarray:
    """(4, 4) float64: camera frame (x forward, y right, z down, AirSim's) -> world ENU."""
    ned_to_enu_axes = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    m = np.eye(4)
    m[:3, :3] = ned_to_enu_axes @ rotation_matrix(orientation_ned)
    m[:3, 3] = frames.airsim_to_enu(position_ned, home_enu)
    return m


def unproject(depth: np.ndarray, intr: Intrinsics, orientation_ned, camera_enu, planar: bool) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 depth in metres -> ((H*W, 3) world ENU points, (H*W,) bool hit); planar:
    DepthPlanar (distance along the optical axis), else DepthPerspective (along the ray)."""
    rays = intr.rays().reshape(-1, 3) @ Pose.from_airsim(camera_enu, orientation_ned).rotation.T  # forward part 1
    d = depth.reshape(-1).astype(np.float64)
    hit = np.isfinite(d) & (d < min(FAR_M, NO_HIT_DEPTH * 0.99))
    step = rays if planar else rays / np.linalg.norm(rays, axis=1, keepdims=True)
    return np.asarray(camera_enu) + step * np.where(hit, d, 0.0)[:, None], hit


def class_fractions(class_ids: np.ndarray, sky: int) -> dict[str, float]:
    """(N,) uint8 class ids of the hit pixels and the count of sky pixels -> {class name: share of
    all pixels}, largest first."""
    ids, counts = np.unique(class_ids, return_counts=True)
    return class_shares(dict(zip(ids.tolist(), counts.tolist())), sky)


def class_shares(counts: dict[int, int], sky: int) -> dict[str, float]:
    """{class id: pixels} and the count of sky pixels -> {class name: share of all pixels}, largest first."""
    total = sum(counts.values()) + sky
    if total == 0:
        return {}
    out = {CLASSES.get(int(i), f"class_{int(i)}"): c / total for i, c in counts.items() if c}
    if sky:
        out["sky"] = sky / total
    return {k: round(float(v), 6) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


_PALETTE_CODES = np.array(sorted((r << 16) | (g << 8) | b for r, g, b in PALETTE.values()), np.int32)
_PALETTE_IDS = [next(cid for cid, (r, g, b) in PALETTE.items() if (r << 16) | (g << 8) | b == code)
                for code in _PALETTE_CODES.tolist()]


def segmentation_classes(rgb: np.ndarray) -> tuple[dict[int, int], int] | None:
    """(H, W, 3) uint8 segmentation in the world's class palette (`worldstream sim`'s) -> ({class id:
    pixels} of the pixels that show a surface, count of sky pixels: black), for class_shares; None
    when some colour is not a class colour (AirSim in Unreal colours meshes, not classes)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return None
    code = ((rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]).reshape(-1)
    slot = np.minimum(np.searchsorted(_PALETTE_CODES, code), len(_PALETTE_CODES) - 1)
    if not np.array_equal(_PALETTE_CODES[slot], code):
        return None
    per_slot = np.bincount(slot, minlength=len(_PALETTE_CODES)).tolist()
    counts = {cid: n for cid, n in zip(_PALETTE_IDS, per_slot) if n}
    sky = counts.pop(0, 0)  # class 0 ("none") is what the renderer leaves where nothing is hit: sky
    return counts, sky


def image_files(index: int, images: dict[str, object]) -> tuple[dict[str, str], dict[str, bytes]]:
    """images: type name -> PNG bytes (scene, segmentation) or (H, W) float32 (depth) ->
    (file names, {relative path: bytes}). Depth is stored as .npy (float32 metres)."""
    names, blobs = {}, {}
    for kind, data in images.items():
        if isinstance(data, np.ndarray):
            buf = io.BytesIO()
            np.save(buf, data.astype(np.float32), allow_pickle=False)
            rel = f"{IMAGES_DIR}/{index:06d}_{kind}.npy"
            blobs[rel] = buf.getvalue()
        else:
            rel = f"{IMAGES_DIR}/{index:06d}_{kind}.png"
            blobs[rel] = bytes(data)
        names[kind] = rel
    return names, blobs


class DatasetWriter:
    """Writes frames as they come (images, then the frame's record) and the manifest at the end.

    Every file is written atomically (a temporary file renamed into place) but not synced one by
    one: after the writing process dies, every file present is whole, and a frame's record exists
    only if its images do. Durability comes at the end: `finish` fsyncs every file written and
    their folders, and only then writes (and fsyncs) `dataset.json`. So after an OS crash or power
    loss a dataset with `dataset.json` is entirely on disk; one without it is incomplete (recent
    files may be missing or empty) and `load_dataset` refuses it."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        (self.root / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
        stale = self.root / MANIFEST
        if stale.exists():
            stale.unlink()  # a rerun into the same folder is incomplete until it finishes
        self.count = 0
        self._unsynced: list[Path] = []

    def _write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        write_file_atomic(path, data, durable=False)
        self._unsynced.append(path)

    def write_images(self, blobs: dict[str, bytes]) -> None:
        for rel, data in blobs.items():
            self._write(rel, data)

    def write_record(self, record: dict) -> None:
        """A frame's record, once its images are written."""
        self._write(f"{FRAMES_DIR}/{record['index']:06d}.json", (json.dumps(record, indent=1) + "\n").encode())
        self.count += 1

    def write_frame(self, record: dict, blobs: dict[str, bytes]) -> None:
        self.write_images(blobs)
        self.write_record(record)

    def write_json(self, name: str, doc: dict) -> None:
        self._write(name, (json.dumps(doc, indent=1) + "\n").encode())

    def sync(self) -> None:
        """Make everything written so far durable: the files, then the folders holding them."""
        folders = {p.parent for p in self._unsynced}
        fsync_paths(self._unsynced)
        fsync_paths(sorted(folders))
        self._unsynced = []

    def finish(self, manifest: dict) -> None:
        self.sync()
        write_file_atomic(self.root / MANIFEST, (json.dumps(dict(manifest, frames=self.count, complete=True), indent=1)
                                                 + "\n").encode())
        fsync_paths([self.root])


def load_dataset(root: Path | str) -> tuple[dict, list[dict]]:
    """(manifest, frame records in order); raises ValueError if the dataset is incomplete."""
    root = Path(root)
    path = root / MANIFEST
    if not path.exists():
        raise ValueError(f"{root}: no {MANIFEST}, so the recording did not finish")
    manifest = json.loads(path.read_text())
    # by index, not by listing: a rerun into the same folder may have left later frames of an older run
    records = [json.loads((root / FRAMES_DIR / f"{i:06d}.json").read_text()) for i in range(manifest["frames"])]
    return manifest, records
