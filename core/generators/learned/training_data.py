"""Training pairs for the cascade, made on the fly from a folder of georeferenced or plain images.

An image's resolution (m/px) comes from, in order: a GeoTIFF's ModelPixelScale tag; a worldstream
export (chunks/{level}/{x}/{y}/ortho.png under a world.json); else the default the caller gives.
Each pair is a random crop at a random octave of the image (target resolution = the image's m/px
times 2**octave, "random target resolutions"), and its condition made by high-order degradation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import WorldstreamError
from .degradation import Degradation, degrade

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
METRES_PER_DEGREE = 111_320.0  # at the equator; GeoTIFFs in degrees are rare for imagery and get this


class TrainingDataError(WorldstreamError, ValueError):
    """The training folder holds no usable image, or an image cannot be read."""


@dataclass(frozen=True, eq=False)
class TrainingImage:
    path: str
    pixels: np.ndarray  # (H, W, 3) float32 in [0, 1]
    metres_per_pixel: float
    resolution_source: str  # "geotiff", "worldstream" or "default"


def image_resolution(path: Path, default_mpp: float) -> tuple[float, str]:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(33550)  # ModelPixelScaleTag
            if tag is not None and tag.value[0] > 0:
                sx = float(tag.value[0])
                return (sx * METRES_PER_DEGREE if sx < 1e-2 else sx), "geotiff"
    parts = path.parts
    if len(parts) >= 5 and parts[-5] == "chunks" and path.name == "ortho.png":
        world = path.parents[4] / "world.json"
        if world.is_file():
            spec = json.loads(world.read_text())
            return float(spec["base_resolution"]) / 2.0 ** int(parts[-4]), "worldstream"
    return default_mpp, "default"


def read_pixels(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile
        arr = tifffile.imread(path)
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = arr.transpose(1, 2, 0)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        arr = arr[..., :3]
        scale = 255.0 if arr.dtype == np.uint8 else (65535.0 if arr.dtype == np.uint16 else 1.0)
        return np.clip(arr.astype(np.float32) / scale, 0.0, 1.0)
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_images(folder: str | Path, default_mpp: float, min_size: int) -> list[TrainingImage]:
    """Every image under `folder` (recursively, sorted) at least `min_size` px on its short side."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingDataError(f"training data folder {folder} does not exist")
    images = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        try:
            pixels = read_pixels(path)
        except Exception as exc:  # noqa: BLE001  (any unreadable file: say which)
            raise TrainingDataError(f"cannot read training image {path}: {exc}") from None
        if min(pixels.shape[:2]) < min_size:
            continue
        mpp, source = image_resolution(path, default_mpp)
        images.append(TrainingImage(str(path), pixels, mpp, source))
    if not images:
        raise TrainingDataError(f"no image of at least {min_size} x {min_size} px ({', '.join(IMAGE_SUFFIXES)}) "
                                f"under {folder}")
    return images


def _halve(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    img = img[:h, :w]
    return (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) * 0.25


class PairSampler:
    """Random (high-resolution crop, degraded condition, target m/px) triples.

    octaves: how many times an image may be halved to make coarser targets (0: native only).
    """

    def __init__(self, images: list[TrainingImage], window: int, scale_factor: int, octaves: int = 2,
                 degradation: Degradation = Degradation(), seed: int = 0):
        self.window, self.scale_factor, self.degradation = window, scale_factor, degradation
        self.rng = np.random.default_rng(seed)
        self.pyramid: list[tuple[np.ndarray, float]] = []
        for im in images:
            img, mpp = im.pixels, im.metres_per_pixel
            for _ in range(octaves + 1):
                if min(img.shape[:2]) < window:
                    break
                self.pyramid.append((img, mpp))
                img, mpp = _halve(img), mpp * 2.0
        if not self.pyramid:
            raise TrainingDataError(f"no training image is at least {window} px on its short side")

    @property
    def target_resolutions(self) -> list[float]:
        return sorted({mpp for _, mpp in self.pyramid})

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, 3, w, w) and (n, 3, w/f, w/f) float32 in [-1, 1], and (n,) float32 m/px."""
        w, f = self.window, self.scale_factor
        hr = np.empty((n, 3, w, w), dtype=np.float32)
        lr = np.empty((n, 3, w // f, w // f), dtype=np.float32)
        mpp = np.empty((n,), dtype=np.float32)
        for k in range(n):
            img, res = self.pyramid[self.rng.integers(len(self.pyramid))]
            r = self.rng.integers(img.shape[0] - w + 1)
            c = self.rng.integers(img.shape[1] - w + 1)
            crop = img[r:r + w, c:c + w]
            if self.rng.random() < 0.5:  # aerial imagery has no preferred orientation
                crop = crop[:, ::-1]
            crop = np.rot90(crop, self.rng.integers(4))
            crop = np.ascontiguousarray(crop)
            hr[k] = crop.transpose(2, 0, 1) * 2.0 - 1.0
            lr[k] = degrade(crop, f, self.rng, self.degradation).transpose(2, 0, 1) * 2.0 - 1.0
            mpp[k] = res
        return hr, lr, mpp
