"""Tiny models built in code for the learned-backend tests (thousands of parameters, CPU)."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worldstream.core import ChunkKey, World, WorldSpec
from worldstream.core.generators.learned.model import ResolutionGuidedDenoiser
from worldstream.core.generators.learned.training import TrainConfig

TINY = dict(sample_size=16, scale_factor=2, condition_channels=4, block_out_channels=(4, 8), layers_per_block=1,
            norm_num_groups=2, resolution_embedding_dim=8)


def tiny_denoiser(seed: int = 0, **overrides) -> ResolutionGuidedDenoiser:
    torch.manual_seed(seed)
    return ResolutionGuidedDenoiser(**{**TINY, **overrides}).eval()


def tiny_config(**overrides) -> TrainConfig:
    base = dict(sample_size=16, block_out_channels=(8, 16), condition_channels=4, norm_num_groups=4,
                resolution_embedding_dim=8, batch_size=8, learning_rate=2e-3, log_every=5, checkpoint_every=20,
                steps=40)
    return TrainConfig(**{**base, **overrides})


def write_training_images(folder: Path, seed: int = 3) -> Path:
    """Procedural orthos of a few chunks at three levels, as plain PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    world = World(WorldSpec(seed=seed, chunk_size=64))
    for level in (4, 5, 6):
        for x in range(2):
            Image.fromarray(world.chunk(ChunkKey(level, x, 0)).ortho).save(folder / f"l{level}_{x}.png")
    return folder


def image_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()
