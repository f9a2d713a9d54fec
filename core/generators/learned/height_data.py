"""Training pairs for the height model: (ortho, DEM, DSM) windows with the coarser level's heights.

Two sources under a data folder, found recursively:
- worldstream exports (`generate --format sidecars`): every chunk folder holding ortho.png,
  height.tif (the DSM) and dem.tif. The (n+1) x (n+1) height grids drop their last row and column,
  so height sample [i, j] is pixel [i, j]'s north-west corner, as the sampler's raster has it.
- pairs of your own: NAME_ortho.{tif,tiff,png,jpg} beside NAME_dsm.{tif,tiff} and optionally
  NAME_dem.{tif,tiff} (float metres, the ortho's size or one more sample each way). Without a DEM
  the DSM stands in for it (the card says so).
m/px comes from the ortho's GeoTIFF tag or the export's world.json (training_data.image_resolution),
else the default the caller gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .height_range import coarse_heights
from .training_data import IMAGE_SUFFIXES, TrainingDataError, image_resolution, read_pixels

HEIGHT_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class HeightPair:
    path: str
    ortho: np.ndarray  # (H, W, 3) float32 in [0, 1]
    heights: np.ndarray  # (2, H, W) float32 metres: DEM, DSM at each pixel's north-west corner
    metres_per_pixel: float
    source: str  # "worldstream" or "pair"; resolution source after a colon
    has_dem: bool


def _read_heights(path: Path, shape: tuple[int, int]) -> np.ndarray:
    import tifffile

    try:
        a = np.asarray(tifffile.imread(path), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001  (any unreadable file: say which)
        raise TrainingDataError(f"cannot read heights {path}: {exc}") from None
    a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
    h, w = shape
    if a.ndim != 2 or a.shape not in ((h, w), (h + 1, w + 1)):
        raise TrainingDataError(f"heights {path} are {a.shape}: expected {h} x {w} or {h + 1} x {w + 1} to match "
                                "its ortho")
    if not np.isfinite(a).all():
        raise TrainingDataError(f"heights {path} hold non-finite values (no-data); fill or crop them first")
    return a[:h, :w]


def _pair(path: str, ortho_path: Path, dsm_path: Path, dem_path: Path | None, default_mpp: float,
          kind: str) -> HeightPair:
    try:
        ortho = read_pixels(ortho_path)
    except Exception as exc:  # noqa: BLE001
        raise TrainingDataError(f"cannot read ortho {ortho_path}: {exc}") from None
    dsm = _read_heights(dsm_path, ortho.shape[:2])
    dem = _read_heights(dem_path, ortho.shape[:2]) if dem_path else dsm
    mpp, res_source = image_resolution(ortho_path, default_mpp)
    return HeightPair(path, ortho, np.stack([dem, dsm]), mpp, f"{kind}:{res_source}", dem_path is not None)


def find_pairs(folder: Path) -> list[tuple[Path, Path, Path | None, str]]:
    """(ortho, dsm, dem or None, kind) for every pair under `folder`, sorted by ortho path."""
    found = []
    for ortho in sorted(folder.rglob("ortho.png")):
        if (ortho.parent / "height.tif").is_file():
            dem = ortho.parent / "dem.tif"
            found.append((ortho, ortho.parent / "height.tif", dem if dem.is_file() else None, "worldstream"))
    for ortho in sorted(p for p in folder.rglob("*_ortho.*") if p.suffix.lower() in IMAGE_SUFFIXES):
        stem = ortho.name[:-len("_ortho" + ortho.suffix)]

        def sibling(tag: str) -> Path | None:
            return next((ortho.parent / f"{stem}_{tag}{s}" for s in HEIGHT_SUFFIXES + tuple(x.upper() for x in
                         HEIGHT_SUFFIXES) if (ortho.parent / f"{stem}_{tag}{s}").is_file()), None)

        dsm = sibling("dsm")
        if dsm is None:
            raise TrainingDataError(f"{ortho} has no {stem}_dsm.tif beside it")
        found.append((ortho, dsm, sibling("dem"), "pair"))
    return found


def load_height_pairs(folder: str | Path, default_mpp: float, min_size: int) -> list[HeightPair]:
    """Every pair under `folder` at least `min_size` px on its short side."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingDataError(f"training data folder {folder} does not exist")
    pairs = []
    for ortho, dsm, dem, kind in find_pairs(folder):
        pair = _pair(str(ortho), ortho, dsm, dem, default_mpp, kind)
        if min(pair.ortho.shape[:2]) >= min_size:
            pairs.append(pair)
    if not pairs:
        raise TrainingDataError(f"no (ortho, heights) pair of at least {min_size} x {min_size} px under {folder}: "
                                "expected worldstream chunk folders (ortho.png, height.tif, dem.tif: `worldstream "
                                "generate --format sidecars`) or NAME_ortho.tif + NAME_dsm.tif [+ NAME_dem.tif]")
    return pairs


class HeightPairSampler:
    """Random (ortho, heights, coarser heights, m/px) windows. Windows start on even samples, so
    their coarser heights are the pair's own coarse grid (`coarse_heights` of the whole pair). No
    flips or rotations: an ortho's shading has a sun direction that the heights must agree with."""

    def __init__(self, pairs: list[HeightPair], window: int, seed: int = 0):
        if window % 2:
            raise TrainingDataError(f"window must be even, got {window}")
        self.window = window
        self.pairs = [p for p in pairs if min(p.ortho.shape[:2]) >= window]
        if not self.pairs:
            raise TrainingDataError(f"no training pair is at least {window} px on its short side")
        self.coarse = [coarse_heights(torch.from_numpy(p.heights)).numpy() for p in self.pairs]
        self.rng = np.random.default_rng(seed)

    @property
    def resolutions(self) -> list[float]:
        return sorted({p.metres_per_pixel for p in self.pairs})

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(n, 3, w, w) ortho in [-1, 1], (n, 2, w, w) and (n, 2, w/2, w/2) metres, (n,) m/px; float32."""
        w, m = self.window, self.window // 2
        ortho = np.empty((n, 3, w, w), dtype=np.float32)
        heights = np.empty((n, 2, w, w), dtype=np.float32)
        coarse = np.empty((n, 2, m, m), dtype=np.float32)
        mpp = np.empty((n,), dtype=np.float32)
        for k in range(n):
            i = self.rng.integers(len(self.pairs))
            pair = self.pairs[i]
            r = 2 * self.rng.integers((pair.ortho.shape[0] - w) // 2 + 1)
            c = 2 * self.rng.integers((pair.ortho.shape[1] - w) // 2 + 1)
            ortho[k] = pair.ortho[r:r + w, c:c + w].transpose(2, 0, 1) * 2.0 - 1.0
            heights[k] = pair.heights[:, r:r + w, c:c + w]
            coarse[k] = self.coarse[i][:, r // 2:r // 2 + m, c // 2:c // 2 + m]
            mpp[k] = pair.metres_per_pixel
        return ortho, heights, coarse, mpp
