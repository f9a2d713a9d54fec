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


def tiny_upscaler_pipeline(seed: int = 0):
    """A StableDiffusionUpscalePipeline with the x4 upscaler's layout (VAE downsampling 4x, 4 latent
    + 3 image channels into the UNet, noise level as class label, CLIP text encoder) at toy sizes."""
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=7, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4, num_class_embeds=100)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=4, scaling_factor=0.08333)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=60, hidden_size=8, intermediate_size=16,
                                                num_hidden_layers=1, num_attention_heads=2,
                                                max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                                                pad_token_id=1))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    low_res = DDPMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", beta_start=1e-4, beta_end=0.02)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, prediction_type="v_prediction", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionUpscalePipeline(vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                          unet=unet.eval(), low_res_scheduler=low_res, scheduler=scheduler,
                                          max_noise_level=100)


def write_tiny_upscaler(folder: Path, seed: int = 0) -> Path:
    tiny_upscaler_pipeline(seed).save_pretrained(folder)
    return folder
