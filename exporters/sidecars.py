"""Chunk sidecars: heights, normals, classes, instances, ortho and annotations, as bytes.

Encodings (also in README.md, "Output files"):
- height.tif / dem.tif: float32 GeoTIFF of the DSM / DEM samples ((n+1) x (n+1), metres).
- normal.png: RGB8 per pixel, the DSM's unit normal in world ENU, channel = round((c + 1) * 127.5)
  for c in (east, north, up).
- semantic.png: 8-bit palette PNG whose pixel values are class ids; the palette is the
  segmentation palette (core.biomes.PALETTE).
- instances.png: RGBA8 PNG holding uint32 building ids little-endian (R = bits 0-7 ... A = 24-31);
  0 = no building. `decode_instances` inverts it.
- ortho.png: RGB8 albedo.
- annotations.json: key, bounds, resolution, class fractions, height statistics, buildings, trees
  (fine levels: id, trunk position on the ground, height, crown radius, kind, setting).
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from ..core.biomes import CLASSES, PALETTE
from ..core.chunk import Chunk
from ..core.heightfield import surface_normals
from ..core.spec import WorldSpec
from .geotiff import encode_height_geotiff, encode_pam


def encode_normals_png(normals: np.ndarray) -> bytes:
    return _png(np.round((normals + 1.0) * 127.5).clip(0, 255).astype(np.uint8), "RGB")


def decode_normals_png(data: bytes) -> np.ndarray:
    a = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    return a / 127.5 - 1.0


def encode_semantic_png(semantic: np.ndarray) -> bytes:
    img = Image.fromarray(np.ascontiguousarray(semantic, dtype=np.uint8), "P")
    flat = []
    for i in range(256):
        flat.extend(PALETTE.get(i, (0, 0, 0)))
    img.putpalette(flat)
    return _save(img)


def decode_layers(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Sidecar files back to arrays: dsm, dem ((n+1, n+1) float32 m), semantic ((n, n) uint8
    class ids), ortho ((n, n, 3) uint8 RGB) -- what a client streaming sidecars gets."""
    import tifffile

    return {"dsm": tifffile.imread(io.BytesIO(files["height.tif"])).astype(np.float32),
            "dem": tifffile.imread(io.BytesIO(files["dem.tif"])).astype(np.float32),
            "semantic": np.asarray(Image.open(io.BytesIO(files["semantic.png"])), dtype=np.uint8),
            "ortho": np.asarray(Image.open(io.BytesIO(files["ortho.png"])).convert("RGB"), dtype=np.uint8)}


def encode_instances_png(instances: np.ndarray) -> bytes:
    ids = np.ascontiguousarray(instances, dtype="<u4")
    return _png(ids.view(np.uint8).reshape(ids.shape + (4,)), "RGBA")


def decode_instances(data: bytes) -> np.ndarray:
    rgba = np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.uint8))
    return rgba.view("<u4").reshape(rgba.shape[:2]).astype(np.uint32)


def annotations(chunk: Chunk, spec: WorldSpec) -> dict:
    counts = np.bincount(chunk.semantic.ravel(), minlength=len(CLASSES))
    total = float(chunk.semantic.size)
    stats = {}
    for name, grid in (("dem", chunk.dem), ("dsm", chunk.dsm)):
        stats[name] = {"min": float(grid.min()), "max": float(grid.max()), "mean": float(grid.mean())}
    return {
        "format": "worldstream.annotations/1",
        "key": {"level": chunk.key.level, "x": chunk.key.x, "y": chunk.key.y},
        "bounds": {"west": chunk.bounds[0], "south": chunk.bounds[1], "east": chunk.bounds[2],
                   "north": chunk.bounds[3]},
        "resolution_m": chunk.resolution,
        "frame": "world ENU metres; arrays row 0 = north, column 0 = west",
        "origin": {"lat": spec.origin.lat, "lon": spec.origin.lon, "alt": spec.origin.alt},
        "classes": {str(k): v for k, v in CLASSES.items()},
        "class_fractions": {CLASSES[i]: counts[i] / total for i in CLASSES if counts[i]},
        "water_fraction": float(chunk.water.mean()),
        "height_stats": stats,
        "buildings": [b.to_dict() for b in chunk.buildings],
        "trees": [t.to_dict() for t in chunk.trees],
    }


def chunk_sidecars(chunk: Chunk, spec: WorldSpec) -> dict[str, bytes]:
    """All sidecar files of a chunk, name -> bytes."""
    west, _, east, north = chunk.bounds
    res = chunk.resolution
    layers = {"normal.png": surface_normals(chunk.dsm, res), "semantic.png": chunk.semantic,
              "instances.png": chunk.instances, "ortho.png": chunk.ortho}
    files = {
        "height.tif": encode_height_geotiff(chunk.dsm, west, north, res, spec.origin),
        "dem.tif": encode_height_geotiff(chunk.dem, west, north, res, spec.origin),
        "normal.png": encode_normals_png(layers["normal.png"]),
        "semantic.png": encode_semantic_png(chunk.semantic),
        "instances.png": encode_instances_png(chunk.instances),
        "ortho.png": _png(chunk.ortho, "RGB"),
        # compact: the C encoder (an indented dump runs in Python, 3 times slower: 3.5 s for the 104k
        # buildings of a city's level-0 chunk)
        "annotations.json": json.dumps(annotations(chunk, spec), separators=(",", ":")).encode(),
    }
    for name, layer in layers.items():  # where QGIS / GDAL place each PNG layer
        files[f"{name}.aux.xml"] = encode_pam(west, north, (east - west) / layer.shape[1], spec.origin)
    return files


def _png(array: np.ndarray, mode: str) -> bytes:
    return _save(Image.fromarray(np.ascontiguousarray(array), mode))


def _save(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
