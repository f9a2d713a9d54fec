"""The `learned` generator: chunk imagery from the diffusion cascade, the rest from the procedural world.

Levels below `first_level` (by default the first level with a level `scale_factor` times coarser)
are the procedural world's ortho: the cascade's root. Every later level's ortho is sampled by the
cascade from the level above; DEM, DSM, classes, instances and buildings stay the procedural
generator's until the lifting stage (ortho -> heights) is learned too. Parameters
(WorldSpec.generator_params): `models` (required: a folder written by `worldstream train cascade`,
or a diffusers StableDiffusionUpscalePipeline folder such as the SD x4 upscaler), `steps` (DDIM
steps, default 20), `window` (window side in output pixels, default the model's native size),
`first_level`, `models_sha256` (if given, the
folder's `storage.models_digest` must match: the CLI pins it, so a world is never silently
regenerated with other weights); for an upscaler folder also `noise_level` (default 20), `prompt`
(default "") and `guidance_scale` (default 1: none). Any other parameter goes to the procedural
generator.
"""

from __future__ import annotations

import dataclasses
import numpy as np

from ...chunk import Chunk
from ...errors import GeneratorError
from ...keys import ChunkKey
from ...spec import WorldSpec
from .. import register
from ..procedural import ProceduralGenerator
from .cascade import Cascade, WindowModel
from .sampling import DDIMWindowModel
from .storage import CASCADE_CLASS, ModelFolderError, load_cascade, models_digest, read_index
from .tiling import Tiling

UPSCALER_PARAMS = ("noise_level", "prompt", "guidance_scale")
LEARNED_PARAMS = ("models", "models_sha256", "steps", "window", "first_level") + UPSCALER_PARAMS


def to_unit(ortho: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB -> (3, H, W) float32 in [-1, 1]."""
    return (ortho.astype(np.float32).transpose(2, 0, 1) * (2.0 / 255.0) - 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [-1, 1] -> (H, W, 3) uint8 sRGB (rounded, clipped)."""
    return np.clip(np.rint((image.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def chunk_raster_origin(key: ChunkKey, chunk_size: int) -> tuple[int, int]:
    """Global raster (row, col) of the chunk's north-west pixel at its level (rows grow south)."""
    return -(key.y + 1) * chunk_size, key.x * chunk_size


class ProceduralOrtho:
    """The cascade's root: the procedural world's ortho as a raster, assembled from its chunks
    (cached by the World's own chunk LRU)."""

    def __init__(self, procedural: ProceduralGenerator, cache_chunks: int = 16):
        from ...world import World

        self.world = World(procedural.spec, cache_chunks=cache_chunks)
        self.world.generator = procedural  # share the caller's generator rather than build a second
        self.n = procedural.spec.chunk_size

    def _ortho(self, key: ChunkKey) -> np.ndarray:
        return to_unit(self.world.chunk(key).ortho)

    def __call__(self, level: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        n = self.n
        out = np.empty((3, height, width), dtype=np.float32)
        # raster row R is pixel row -R - 1 north of the equator line, in chunk y = (-R - 1) // n
        for y in range((-(row0 + height - 1) - 1) // n, (-row0 - 1) // n + 1):
            for x in range(col0 // n, (col0 + width - 1) // n + 1):
                key = ChunkKey(level, x, y)
                r0, c0 = chunk_raster_origin(key, n)
                rl, rh = max(r0, row0), min(r0 + n, row0 + height)
                cl, ch = max(c0, col0), min(c0 + n, col0 + width)
                out[:, rl - row0:rh - row0, cl - col0:ch - col0] = self._ortho(key)[:, rl - r0:rh - r0, cl - c0:ch - c0]
        return out


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


@register("learned")
class LearnedGenerator:
    def __init__(self, spec: WorldSpec):
        self.spec = spec
        params = spec.params
        if "batch_size" in params:
            raise GeneratorError("learned parameter 'batch_size' was removed: windows are sampled one per model "
                                 "call so that their bytes never depend on batching; drop it from the spec")
        models = params.get("models")
        if not isinstance(models, str) or not models:
            raise GeneratorError("the learned generator needs generator_params.models: the folder of a model "
                                 "trained by `worldstream train cascade` or of a diffusers upscaler pipeline "
                                 "(CLI: --backend learned --models DIR)")
        procedural_spec = dataclasses.replace(
            spec, generator="procedural",
            generator_params={k: v for k, v in params.items() if k not in LEARNED_PARAMS})
        self.procedural = ProceduralGenerator(procedural_spec)
        pinned = params.get("models_sha256")
        if pinned is not None and pinned != models_digest(models):
            raise GeneratorError(f"the model in {models} is not the one this world was made with "
                                 f"(models_sha256 {pinned} != {models_digest(models)})")
        self.model, native_window = open_window_model(models, params)
        step = self.model.scale_factor.bit_length() - 1
        self.first_level = _int_param(params, "first_level", step, step)
        window = _int_param(params, "window", native_window, 4)
        if window % self.model.window_multiple:
            raise GeneratorError(f"learned parameter 'window' must be a multiple of {self.model.window_multiple} for "
                                 f"this model (its UNet's downsamplings and the half-window stride must land on whole "
                                 f"pixels), got {window}")
        tiling = Tiling(window)
        self.cascade = Cascade(self.model, tiling, spec.seed, ProceduralOrtho(self.procedural), self.first_level,
                               spec.resolution)

    def chunk(self, key: ChunkKey) -> Chunk:
        base = self.procedural.chunk(key)
        if key.level < self.first_level:
            return base
        n = self.spec.chunk_size
        row0, col0 = chunk_raster_origin(key, n)
        ortho = to_uint8(self.cascade.region(key.level, row0, col0, n, n))
        return dataclasses.replace(base, ortho=ortho)

    def heights_at(self, x, y, level: int) -> tuple[np.ndarray, np.ndarray]:
        return self.procedural.heights_at(x, y, level)

    def trees_at(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        return self.procedural.trees_at(x, y)
