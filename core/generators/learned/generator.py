"""The `learned` generator: the learned stages a models folder holds, the procedural world for the rest.

Stages (`storage.model_stages`): "ortho" when MODELS/model_index.json is a cascade (`worldstream
train cascade`) or a diffusers StableDiffusionUpscalePipeline; "height" when MODELS/height/ holds
a height model (`worldstream train height`); "facades" when MODELS/facades/ holds a facade model
(`worldstream train facades`). A missing stage stays procedural.
- Ortho: levels below `first_level` (by default the first level with a level `scale_factor` times
  coarser) are the procedural world's ortho, the cascade's root; every later level is sampled
  from the level above.
- Heights (DEM and DSM): levels below `height_first_level` (default: the ortho's first learned
  level, or 1 when the ortho is procedural) are the procedural world's; every later level is
  sampled from the level above and that level's ortho (learned or procedural), on its own window
  grid and noise field.
- Facades: at levels from `facade_first_level` (default 0) that have building models, every
  building the chunk's mesh draws (from the learned ortho and heights where they are learned) is
  rendered unlit from 8 views around it, the model paints the views' vertical faces, and the
  painted views ride in `Chunk.facade_views`: the exporters bake them onto the facade atlas.
Classes, instances, water, canopy, the building records and `heights_at` stay procedural.
Parameters (WorldSpec.generator_params): `models` (required), `stages` (the CLI records the
folder's stages; if given they must match), `steps` (DDIM steps of both stages, default 20),
`window` / `height_window` (window side in output pixels, default each model's native size),
`first_level`, `height_first_level`, `models_sha256` (if given, the folder's
`storage.models_digest` must match: the CLI pins it, so a world is never silently regenerated
with other weights); for an upscaler folder also `noise_level` (default 20), `prompt` (default "")
and `guidance_scale` (default 1: none). Any other parameter goes to the procedural generator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from ...chunk import Chunk
from ...errors import GeneratorError
from ...hashing import salt
from ...keys import ChunkKey
from ...spec import WorldSpec
from .. import register
from ..procedural import ProceduralGenerator
from .cascade import Cascade, RootSource, WindowModel
from ....exporters.chunk_mesh import MeshOptions
from .facade_sampling import chunk_facade_views
from .sampling import DDIMWindowModel
from .storage import (CASCADE_CLASS, FACADE_PART, HEIGHT_PART, ModelFolderError, load_cascade, model_stages,
                      models_digest, read_index)
from .tiling import Tiling

UPSCALER_PARAMS = ("noise_level", "prompt", "guidance_scale")
LEARNED_PARAMS = ("models", "models_sha256", "stages", "steps", "window", "first_level", "height_window",
                  "height_first_level", "facade_first_level") + UPSCALER_PARAMS
HEIGHT_NOISE_TAG = 0x68676874  # "hght": the height cascade's noise field is not the ortho's


def to_unit(ortho: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB -> (3, H, W) float32 in [-1, 1]."""
    return (ortho.astype(np.float32).transpose(2, 0, 1) * (2.0 / 255.0) - 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [-1, 1] -> (H, W, 3) uint8 sRGB (rounded, clipped)."""
    return np.clip(np.rint((image.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def chunk_raster_origin(key: ChunkKey, chunk_size: int) -> tuple[int, int]:
    """Global raster (row, col) of the chunk's north-west pixel at its level (rows grow south)."""
    return -(key.y + 1) * chunk_size, key.x * chunk_size


def ortho_layer(chunk: Chunk) -> np.ndarray:
    """(3, n, n) float32 in [-1, 1]: a chunk's ortho as the cascade's raster."""
    return to_unit(chunk.ortho)


def height_layer(chunk: Chunk) -> np.ndarray:
    """(2, n, n) float32 metres: a chunk's DEM and DSM samples at its pixels' north-west corners
    (the height raster; the last row and column are the next chunk's first)."""
    n = chunk.size
    return np.stack([chunk.dem[:n, :n], chunk.dsm[:n, :n]])


class ProceduralRaster:
    """A layer of the procedural world (`layer`: chunk -> (C, n, n) float32) as a global raster,
    assembled from its chunks (cached by the World's own chunk LRU, shared by every raster made
    from the same `world`). The cascades' roots and guides."""

    def __init__(self, world, layer: Callable[[Chunk], np.ndarray] = ortho_layer):
        self.world, self.layer = world, layer
        self.n = world.spec.chunk_size

    @classmethod
    def of(cls, procedural: ProceduralGenerator, layer: Callable[[Chunk], np.ndarray] = ortho_layer,
           cache_chunks: int = 16) -> "ProceduralRaster":
        from ...world import World

        world = World(procedural.spec, cache_chunks=cache_chunks)
        world.generator = procedural  # share the caller's generator rather than build a second
        return cls(world, layer)

    def _layer(self, key: ChunkKey) -> np.ndarray:
        return self.layer(self.world.chunk(key))

    def __call__(self, level: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        n = self.n
        out = None
        # raster row R is pixel row -R - 1 north of the equator line, in chunk y = (-R - 1) // n
        for y in range((-(row0 + height - 1) - 1) // n, (-row0 - 1) // n + 1):
            for x in range(col0 // n, (col0 + width - 1) // n + 1):
                key = ChunkKey(level, x, y)
                r0, c0 = chunk_raster_origin(key, n)
                rl, rh = max(r0, row0), min(r0 + n, row0 + height)
                cl, ch = max(c0, col0), min(c0 + n, col0 + width)
                layer = self._layer(key)
                if out is None:
                    out = np.empty((layer.shape[0], height, width), dtype=np.float32)
                out[:, rl - row0:rh - row0, cl - col0:ch - col0] = layer[:, rl - r0:rh - r0, cl - c0:ch - c0]
        return out


def ProceduralOrtho(procedural: ProceduralGenerator, cache_chunks: int = 16) -> ProceduralRaster:
    """The ortho cascade's root: the procedural world's ortho as a raster."""
    return ProceduralRaster.of(procedural, ortho_layer, cache_chunks)


def raster_heights_at(region: RootSource, res: float, x, y, level: int, tile: int = 64
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(DEM, DSM) float64 at world points (x, y: array-like metres, one shape), bilinear between the
    samples of a height raster (`region`: 2 channels; sample north index k is raster row -k). Points
    are gathered by `tile` x `tile` sample tiles, one region each."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    u, v = x.reshape(-1) / res, y.reshape(-1) / res
    c0, r0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - c0, v - r0
    out = np.empty((2, u.size), dtype=np.float64)
    tiles = np.stack([c0 // tile, r0 // tile], axis=1)
    for ti, tj in np.unique(tiles, axis=0):
        sel = np.flatnonzero((tiles[:, 0] == ti) & (tiles[:, 1] == tj))
        grid = region(level, -(tj * tile + tile), ti * tile, tile + 1, tile + 1).astype(np.float64)
        rows, cols = tj * tile + tile - r0[sel], c0[sel] - ti * tile  # of samples (r0, c0); north is row - 1
        a, b = grid[:, rows, cols], grid[:, rows, cols + 1]
        c, d = grid[:, rows - 1, cols], grid[:, rows - 1, cols + 1]
        wu, wv = fu[sel], fv[sel]
        out[:, sel] = (a * (1 - wu) + b * wu) * (1 - wv) + (c * (1 - wu) + d * wu) * wv
    return out[0].reshape(x.shape), out[1].reshape(x.shape)


def _int_param(params: dict, name: str, default: int, lo: int) -> int:
    v = params.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise GeneratorError(f"learned parameter {name!r} must be an integer >= {lo}, got {v!r}")
    return v


def open_window_model(folder: str, params: dict) -> tuple[WindowModel, int]:
    """(window model, its native window side in output pixels) for a models folder:
    a worldstream cascade, or a diffusers upscaler pipeline (chosen by model_index.json)."""
    steps = _int_param(params, "steps", 20, 1)
    kind = read_index(folder).get("_class_name")
    if kind == CASCADE_CLASS:
        stray = sorted(set(UPSCALER_PARAMS) & set(params))
        if stray:
            raise GeneratorError(f"learned parameters {stray} apply to upscaler folders only; {folder} is a "
                                 f"{CASCADE_CLASS}")
        denoiser, scheduler, _ = load_cascade(folder)
        return DDIMWindowModel(denoiser, scheduler, steps=steps), denoiser.config.sample_size
    from .upscaler import UPSCALER_CLASS, load_upscaler

    if kind != UPSCALER_CLASS:
        raise ModelFolderError(f"{folder} holds a {kind!r}: expected a {CASCADE_CLASS} (written by `worldstream "
                               f"train cascade`) or a diffusers {UPSCALER_CLASS}")
    prompt = params.get("prompt", "")
    if not isinstance(prompt, str):
        raise GeneratorError(f"learned parameter 'prompt' must be a string, got {prompt!r}")
    guidance = params.get("guidance_scale", 1.0)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
        raise GeneratorError(f"learned parameter 'guidance_scale' must be a number >= 1, got {guidance!r}")
    model = load_upscaler(folder, steps=steps, noise_level=_int_param(params, "noise_level", 20, 0),
                          prompt=prompt, guidance_scale=float(guidance))
    return model, model.window


def window_param(params: dict, name: str, native: int, multiple: int) -> Tiling:
    """The tiling of a window model from the `name` parameter (default its native window)."""
    window = _int_param(params, name, native, 4)
    if window % multiple:
        raise GeneratorError(f"learned parameter {name!r} must be a multiple of {multiple} for this model (its "
                             f"UNet's downsamplings and the half-window stride must land on whole pixels), got {window}")
    return Tiling(window)


@register("learned")
class LearnedGenerator:
    """Learned stages from the models folder, procedural for the rest (see the module doc).

    stages: the learned stages, some of ("ortho", "height", "facades"); cascade / heights: their
    cascades (None for a procedural stage); first_level / height_first_level: the first level
    each learned stage generates."""

    def __init__(self, spec: WorldSpec):
        self.spec = spec
        params = spec.params
        if "batch_size" in params:
            raise GeneratorError("learned parameter 'batch_size' was removed: windows are sampled one per model "
                                 "call so that their bytes never depend on batching; drop it from the spec")
        models = params.get("models")
        if not isinstance(models, str) or not models:
            raise GeneratorError("the learned generator needs generator_params.models: the folder of a model "
                                 "trained by `worldstream train cascade` or of a diffusers upscaler pipeline, "
                                 "and/or a height model in its height/, a facade model in its facades/ (CLI: "
                                 "--backend learned --models DIR)")
        procedural_spec = dataclasses.replace(
            spec, generator="procedural",
            generator_params={k: v for k, v in params.items() if k not in LEARNED_PARAMS})
        self.procedural = ProceduralGenerator(procedural_spec)
        self.stages = model_stages(models)
        recorded = params.get("stages")
        if recorded is not None and (not isinstance(recorded, list) or tuple(recorded) != self.stages):
            raise GeneratorError(f"this world's learned stages are {recorded!r} but {models} holds {list(self.stages)}")
        pinned = params.get("models_sha256")
        if pinned is not None and pinned != models_digest(models):
            raise GeneratorError(f"the model in {models} is not the one this world was made with "
                                 f"(models_sha256 {pinned} != {models_digest(models)})")
        from ...world import World

        world = World(procedural_spec, cache_chunks=16)
        world.generator = self.procedural  # the rasters share the generator and one chunk cache
        ortho = ProceduralRaster(world, ortho_layer)
        self.cascade = self.heights = None
        self.first_level = self.height_first_level = spec.levels  # a procedural stage: never
        if "ortho" in self.stages:
            self.model, native_window = open_window_model(models, params)
            step = self.model.scale_factor.bit_length() - 1
            self.first_level = _int_param(params, "first_level", step, step)
            self.cascade = Cascade(self.model, window_param(params, "window", native_window, self.model.window_multiple),
                                   spec.seed, ortho, self.first_level, spec.resolution)
            ortho = self.cascade.region
        else:
            stray = sorted({"window", "first_level", *UPSCALER_PARAMS} & set(params))
            if stray:
                raise GeneratorError(f"learned parameters {stray} apply to an ortho model; {models} holds only "
                                     f"{list(self.stages)}")
        if "height" in self.stages:
            from .height_sampling import HeightWindowModel
            from .height_storage import load_height

            net, _ = load_height(Path(models) / HEIGHT_PART)
            model = HeightWindowModel(net, steps=_int_param(params, "steps", 20, 1))
            default_first = 1 if self.cascade is None else self.first_level
            self.height_first_level = _int_param(params, "height_first_level", default_first, 1)
            tiling = window_param(params, "height_window", model.window, model.window_multiple)
            self.heights = Cascade(model, tiling, salt(spec.seed, HEIGHT_NOISE_TAG), ProceduralRaster(world, height_layer),
                                   self.height_first_level, spec.resolution, guide=ortho)
        else:
            stray = sorted({"height_window", "height_first_level"} & set(params))
            if stray:
                raise GeneratorError(f"learned parameters {stray} apply to a height model; {models} has no "
                                     f"{HEIGHT_PART}/")
        self.painter = self._renderer = None
        self.facade_first_level = spec.levels
        if "facades" in self.stages:
            from .facade_sampling import FacadePainter
            from .facade_storage import load_facades

            net, _ = load_facades(Path(models) / FACADE_PART)
            self.painter = FacadePainter(net, steps=_int_param(params, "steps", 20, 1))
            self.facade_first_level = _int_param(params, "facade_first_level", 0, 0)
        elif "facade_first_level" in params:
            raise GeneratorError(f"learned parameter 'facade_first_level' applies to a facade model; {models} has no "
                                 f"{FACADE_PART}/")

    def chunk(self, key: ChunkKey) -> Chunk:
        base = self.procedural.chunk(key)
        n = self.spec.chunk_size
        row0, col0 = chunk_raster_origin(key, n)
        learned = {}
        if self.cascade is not None and key.level >= self.first_level:
            learned["ortho"] = to_uint8(self.cascade.region(key.level, row0, col0, n, n))
        if self.heights is not None and key.level >= self.height_first_level:
            heights = self.heights.region(key.level, row0, col0, n + 1, n + 1)  # the shared-border grid
            learned["dem"], learned["dsm"] = heights[0], heights[1]
        chunk = dataclasses.replace(base, **learned) if learned else base
        if (self.painter is not None and key.level >= self.facade_first_level and chunk.buildings
                and MeshOptions().has_buildings(chunk.resolution)):  # levels whose meshes draw building models
            views = chunk_facade_views(self.painter, self.renderer(), chunk, self.spec)
            if views:
                chunk = dataclasses.replace(chunk, facade_views=views)
        return chunk

    def renderer(self):
        """The unlit renderer of the facade stage's views (its own GL thread), made on first use."""
        if self._renderer is None:
            from ....render import Renderer

            self._renderer = Renderer(lit=False)
        return self._renderer

    def heights_at(self, x, y, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground (DEM) and surface (DSM) at world points, bilinear between the level's samples as
        the chunk mesh interpolates them: the learned heights' where they are learned."""
        if self.heights is None or level < self.height_first_level:
            return self.procedural.heights_at(x, y, level)
        return raster_heights_at(self.heights.region, self.spec.resolution(level), x, y, level)

    def trees_at(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        return self.procedural.trees_at(x, y)
