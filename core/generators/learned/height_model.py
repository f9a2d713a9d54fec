"""The height model p(x_h | x_o): InstructCV-like latent diffusion built from diffusers components.

    ortho (B, 3, n, n) in [-1, 1] --VAE encoder--> (B, L, n/f, n/f) latent (its mean, times the VAE's scaling)
    heights (B, 2, n, n) metres --HeightRange--> y in [-1, 1] --space-to-depth f--> (B, 2 f^2, n/f, n/f)
    UNet2DConditionModel input: [noisy height latent, ortho latent, reference latent] along channels
    cross-attention: the CLIP text encoder's embedding of the task prompt
    class embedding ("projection"): sinusoids of log2(m/px) and log2(window scale in metres)

The two height channels are the DEM and the DSM. The "height latent" is the normalised heights
rearranged f x f pixels to channels (pixel_unshuffle) onto the VAE's latent grid: exactly
invertible, so metres come back without an autoencoder's reconstruction error, and the ortho and
height latents lie on the same grid. The reference latent is the coarser level's surface under
the window (HeightRange's `ref`) in the window's own scale, rearranged the same way. Both are
additions to InstructCV, which encodes its target image with the VAE and knows no metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from ...errors import GeneratorError
from .height_range import HeightRange, upsample_corners
from .model import resolution_embedding

PROMPT = "predict the heights of prominent features"
HEIGHT_CHANNELS = ("dem", "dsm")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_text_encoder(hidden_size: int = 32, seed: int = 0) -> tuple[Any, Any]:
    """(CLIPTextModel, CLIPTokenizer) built in code, nothing downloaded: a one-layer CLIP text
    transformer over a vocabulary of single letters (the prompt is spelt out). For a fixed task
    prompt its output is one constant embedding; a real CLIP from a local folder can replace it."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in LETTERS:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    torch.manual_seed(seed)
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden_size,
                                           intermediate_size=2 * hidden_size, num_hidden_layers=1,
                                           num_attention_heads=2, max_position_embeddings=77, bos_token_id=0,
                                           eos_token_id=1, pad_token_id=1))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    return encoder.eval(), tokenizer


def fresh_vae(block_out_channels: tuple[int, ...] = (32, 32, 32), latent_channels: int = 4,
              norm_num_groups: int = 8) -> AutoencoderKL:
    """An untrained AutoencoderKL downsampling 2 ** (len(block_out_channels) - 1) times; the height
    trainer tunes its encoder with the noise-prediction loss (only the encoder is ever used)."""
    k = len(block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                         block_out_channels=tuple(block_out_channels), down_block_types=("DownEncoderBlock2D",) * k,
                         up_block_types=("UpDecoderBlock2D",) * k, layers_per_block=1,
                         norm_num_groups=norm_num_groups)


def encode_prompt(tokenizer: Any, text_encoder: Any, prompt: str, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """(1, tokens, hidden) CLIP text embedding of `prompt`, padded to the tokenizer's length."""
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        emb = text_encoder(ids.to(text_encoder.device))[0]
    return emb.to(device=device, dtype=dtype)


def vae_latent(vae: AutoencoderKL, image: torch.Tensor) -> torch.Tensor:
    """(B, 3, n, n) in [-1, 1] -> (B, L, n/f, n/f): the VAE posterior's mean, times its scaling."""
    x = image.to(device=vae.device, dtype=vae.dtype)
    return vae.encode(x).latent_dist.mode() * float(vae.config.scaling_factor)


def vae_factor(vae: AutoencoderKL) -> int:
    """Output pixels per latent pixel of the VAE."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def height_unet(window: int, factor: int, latent_channels: int, cross_attention_dim: int,
                block_out_channels: tuple[int, ...] = (64, 128), layers_per_block: int = 1,
                norm_num_groups: int = 8, embedding_dim: int = 32) -> UNet2DConditionModel:
    """The noise predictor over (2 f^2 + latent_channels + 2 f^2) channels at window / f pixels; the
    last block cross-attends to the prompt."""
    hc = len(HEIGHT_CHANNELS) * factor * factor
    k = len(block_out_channels)
    down = tuple("CrossAttnDownBlock2D" if i == k - 1 else "DownBlock2D" for i in range(k))
    up = tuple("CrossAttnUpBlock2D" if i == 0 else "UpBlock2D" for i in range(k))
    return UNet2DConditionModel(
        sample_size=window // factor, in_channels=2 * hc + latent_channels, out_channels=hc,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block, down_block_types=down,
        up_block_types=up, cross_attention_dim=cross_attention_dim, attention_head_dim=max(1, block_out_channels[-1] // 16),
        norm_num_groups=norm_num_groups, class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * embedding_dim)


@dataclass
class HeightNet:
    """The parts of a height model and the scheme that ties them together (see the module doc).

    embedding_dim: sinusoids per scalar in the class embedding (the UNet's projection input is twice it).
    """

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler: DDIMScheduler
    height_range: HeightRange
    prompt: str = PROMPT
    embedding_dim: int = 32

    def __post_init__(self) -> None:
        f, lat = self.factor, int(self.vae.config.latent_channels)
        hc = len(HEIGHT_CHANNELS) * f * f
        if int(self.unet.config.in_channels) != 2 * hc + lat or int(self.unet.config.out_channels) != hc:
            raise GeneratorError(f"the height UNet takes {self.unet.config.in_channels} channels and predicts "
                                 f"{self.unet.config.out_channels}: with this VAE ({lat} latent channels, {f}x) it "
                                 f"must take {2 * hc + lat} and predict {hc}")
        if int(self.unet.config.cross_attention_dim) != int(self.text_encoder.config.hidden_size):
            raise GeneratorError(f"the height UNet cross-attends to {self.unet.config.cross_attention_dim} "
                                 f"features, the text encoder gives {self.text_encoder.config.hidden_size}")
        if int(self.unet.config.projection_class_embeddings_input_dim or -1) != 2 * self.embedding_dim:
            raise GeneratorError(f"the height UNet's class projection takes "
                                 f"{self.unet.config.projection_class_embeddings_input_dim} values, expected "
                                 f"{2 * self.embedding_dim}")

    @property
    def factor(self) -> int:
        return vae_factor(self.vae)

    @property
    def window(self) -> int:
        """The native window side in pixels."""
        return int(self.unet.config.sample_size) * self.factor

    @property
    def latent_channels(self) -> int:
        """Channels of the (noisy) height latent."""
        return len(HEIGHT_CHANNELS) * self.factor ** 2

    def encode_prompt(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(1, tokens, cross_attention_dim) text embedding of the task prompt."""
        return encode_prompt(self.tokenizer, self.text_encoder, self.prompt, device, dtype)

    def encode_ortho(self, ortho: torch.Tensor) -> torch.Tensor:
        """(B, 3, n, n) in [-1, 1] -> (B, L, n/f, n/f): the VAE posterior's mean, scaled."""
        return vae_latent(self.vae, ortho)

    def class_input(self, metres_per_pixel: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """(B,) m/px and (B,) window scales in metres -> (B, 2 embedding_dim) float32."""
        d = self.embedding_dim
        return torch.cat([resolution_embedding(metres_per_pixel, d), resolution_embedding(scale, d)], dim=1)

    def reference_latent(self, coarse: torch.Tensor) -> torch.Tensor:
        """coarse (B, 2, n/2, n/2) metres -> (B, 2 f^2, n/f, n/f): the coarser surface, centred on
        its window mean, in the window's scale."""
        ref = upsample_corners(coarse)
        centred = (ref - coarse.to(torch.float32).mean(dim=(-3, -2, -1), keepdim=True)) / self.height_range.scale(coarse)
        return F.pixel_unshuffle(centred, self.factor)

    def to_latent(self, normalised: torch.Tensor) -> torch.Tensor:
        """(B, 2, n, n) -> (B, 2 f^2, n/f, n/f)."""
        return F.pixel_unshuffle(normalised, self.factor)

    def from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, 2 f^2, n/f, n/f) -> (B, 2, n, n)."""
        return F.pixel_shuffle(latent, self.factor)

    def predict_noise(self, noisy: torch.Tensor, t: torch.Tensor | int, ortho_latent: torch.Tensor,
                      reference: torch.Tensor, text: torch.Tensor, class_input: torch.Tensor) -> torch.Tensor:
        """noisy (B, 2 f^2, m, m), ortho_latent (B, L, m, m), reference (B, 2 f^2, m, m), text (B, T, D),
        class_input (B, 2 embedding_dim) -> predicted noise (B, 2 f^2, m, m) in the UNet's dtype."""
        dtype = self.unet.dtype
        x = torch.cat([noisy.to(dtype), ortho_latent.to(dtype), reference.to(dtype)], dim=1)
        return self.unet(x, t, encoder_hidden_states=text.to(dtype), class_labels=class_input.to(dtype)).sample
