"""The facade model p(x_l | x_o, x_h): AnimateDiff-like multi-view latent diffusion from diffusers components.

A block is N views (default 8, 360 / N degrees apart) on a circle around a building, rendered
unlit from the coarse mesh. Per view, the UNet2DConditionModel takes 9 channels (with a 4-channel VAE):

    [noisy latent (L), VAE(masked render) (L), mask (1)]    at (view / f) x (view / f)

- masked render: the view with its vertical faces (|n . z_up| < tau) set to mid-grey; mask: those
  pixels, averaged over each f x f latent cell. The latent is the AutoencoderKL posterior's mean
  times the VAE's scaling; the decoder turns the denoised latent back into the view.
- view embedding: a learnable vector per view index (`ViewEmbedding`), added to the features after
  the UNet's input convolution (a forward hook on `conv_in`), so a view knows where it stands.
- cross-view local attention (`CrossViewAttnProcessor`): every self-attention layer of the UNet lets
  view i attend to the tokens of views i - 1, i and i + 1 (circularly), through that layer's own
  query / key / value projections: no parameters are added. Without it, each view attends to itself.
- cross-attention: the CLIP text encoder's embedding of a fixed task prompt (as the height model).
A batch holds whole blocks, views consecutive: (B * N, C, h, w).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ...errors import GeneratorError
from .height_model import encode_prompt, vae_factor, vae_latent

PROMPT = "paint the facades of the buildings"


class ViewEmbedding(ModelMixin, ConfigMixin):
    """A learnable (num_views, channels) table: the vector of each view index, zero at the start
    (so a fresh model starts as one without it)."""

    @register_to_config
    def __init__(self, num_views: int = 8, channels: int = 32):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(num_views, channels))

    def forward(self, view_index: torch.Tensor) -> torch.Tensor:
        """(B,) int64 -> (B, channels, 1, 1)."""
        return self.table[view_index][:, :, None, None]


class CrossViewAttnProcessor:
    """A diffusers attention processor: self-attention over a view and its two circular neighbours
    (keys and values from the concatenated tokens of views i - 1, i, i + 1, through the layer's own
    to_k / to_v), plain attention for cross-attention to the text. `cross_view=False` (or one view):
    each view attends to itself only. The batch must hold whole blocks of `views` consecutive views."""

    def __init__(self, views: int, cross_view: bool = True):
        self.views, self.cross_view = views, cross_view

    def neighbours(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B * N, L, C) -> (B * N, 3 L, C): each view's tokens after its predecessor's, then its successor's."""
        bn, length, c = tokens.shape
        if bn % self.views:
            raise GeneratorError(f"a cross-view batch holds whole blocks of {self.views} views, got {bn} images")
        v = tokens.reshape(bn // self.views, self.views, length, c)
        ring = torch.cat([torch.roll(v, 1, dims=1), v, torch.roll(v, -1, dims=1)], dim=2)
        return ring.reshape(bn, 3 * length, c)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs
                 ) -> torch.Tensor:
        if attention_mask is not None:
            raise GeneratorError("the facade model's attention takes no attention mask")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        ndim = hidden_states.ndim
        if ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            context = self.neighbours(hidden_states) if self.cross_view and self.views > 1 else hidden_states
        else:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        key, value = attn.to_k(context), attn.to_v(context)
        batch, head_dim = query.shape[0], key.shape[-1] // attn.heads
        q, k, v = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def facade_unet(view_size: int, factor: int, latent_channels: int, cross_attention_dim: int,
                block_out_channels: tuple[int, ...] = (32, 64), layers_per_block: int = 1,
                norm_num_groups: int = 8) -> UNet2DConditionModel:
    """The noise predictor over (2 L + 1) channels at view_size / f pixels; the deeper blocks hold
    the (self- and cross-) attention layers."""
    k = len(block_out_channels)
    down = tuple("DownBlock2D" if i == 0 and k > 1 else "CrossAttnDownBlock2D" for i in range(k))
    up = tuple("UpBlock2D" if i == k - 1 and k > 1 else "CrossAttnUpBlock2D" for i in range(k))
    return UNet2DConditionModel(
        sample_size=view_size // factor, in_channels=2 * latent_channels + 1, out_channels=latent_channels,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block, down_block_types=down,
        up_block_types=up, cross_attention_dim=cross_attention_dim,
        attention_head_dim=max(1, block_out_channels[-1] // 16), norm_num_groups=norm_num_groups)


@dataclass
class FacadeNet:
    """The parts of a facade model and the settings that tie them together (see the module doc).
    tau: |n . z_up| below which a face is vertical (masked and painted)."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler: DDIMScheduler
    view_embedding: ViewEmbedding
    cross_view: bool = True
    tau: float = 0.25
    prompt: str = PROMPT

    def __post_init__(self) -> None:
        lat = int(self.vae.config.latent_channels)
        if int(self.unet.config.in_channels) != 2 * lat + 1 or int(self.unet.config.out_channels) != lat:
            raise GeneratorError(f"the facade UNet takes {self.unet.config.in_channels} channels and predicts "
                                 f"{self.unet.config.out_channels}: with this VAE ({lat} latent channels) it must "
                                 f"take {2 * lat + 1} ([noisy latent, VAE(masked render), mask]) and predict {lat}")
        if int(self.unet.config.cross_attention_dim) != int(self.text_encoder.config.hidden_size):
            raise GeneratorError(f"the facade UNet cross-attends to {self.unet.config.cross_attention_dim} features, "
                                 f"the text encoder gives {self.text_encoder.config.hidden_size}")
        if int(self.view_embedding.config.channels) != int(self.unet.config.block_out_channels[0]):
            raise GeneratorError(f"the view embedding has {self.view_embedding.config.channels} channels, the UNet's "
                                 f"input convolution gives {self.unet.config.block_out_channels[0]}")
        if not 0.0 < self.tau < 1.0:
            raise GeneratorError(f"tau must be in (0, 1), got {self.tau}")
        self.unet.set_attn_processor(CrossViewAttnProcessor(self.views, self.cross_view))

    @property
    def views(self) -> int:
        return int(self.view_embedding.config.num_views)

    @property
    def factor(self) -> int:
        return vae_factor(self.vae)

    @property
    def view_size(self) -> int:
        return int(self.unet.config.sample_size) * self.factor

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def encode_prompt(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(1, tokens, cross_attention_dim) text embedding of the task prompt."""
        return encode_prompt(self.tokenizer, self.text_encoder, self.prompt, device, dtype)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, n, n) in [-1, 1] -> (B, L, n/f, n/f): the VAE posterior's mean, scaled."""
        return vae_latent(self.vae, image)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, L, n/f, n/f) -> (B, 3, n, n) in [-1, 1] (clamped)."""
        z = latent.to(device=self.vae.device, dtype=self.vae.dtype) / float(self.vae.config.scaling_factor)
        return self.vae.decode(z).sample.clamp(-1.0, 1.0)

    def condition(self, views: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """views (B * N, 3, n, n) in [-1, 1], mask (B * N, 1, n, n) {0, 1} -> (VAE(masked render)
        (B * N, L, n/f, n/f), mask on the latent grid (B * N, 1, n/f, n/f))."""
        masked = views * (1.0 - mask)  # vertical faces to mid-grey (0 in [-1, 1])
        return self.encode(masked), F.avg_pool2d(mask.to(torch.float32), self.factor)

    def view_index(self, images: int, device: torch.device) -> torch.Tensor:
        """(B * N,) the view index of each image of a batch of whole blocks."""
        if images % self.views:
            raise GeneratorError(f"a facade batch holds whole blocks of {self.views} views, got {images} images")
        return torch.arange(images, device=device) % self.views

    def predict_noise(self, noisy: torch.Tensor, t: torch.Tensor | int, masked_latent: torch.Tensor,
                      mask_latent: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """noisy (B * N, L, m, m), masked_latent (B * N, L, m, m), mask_latent (B * N, 1, m, m), text
        (B * N, T, D) -> predicted noise (B * N, L, m, m) in the UNet's dtype."""
        dtype = self.unet.dtype
        x = torch.cat([noisy.to(dtype), masked_latent.to(dtype), mask_latent.to(dtype)], dim=1)
        emb = self.view_embedding(self.view_index(x.shape[0], x.device)).to(dtype)
        hook = self.unet.conv_in.register_forward_hook(lambda module, args, out: out + emb)
        try:
            return self.unet(x, t, encoder_hidden_states=text.to(dtype)).sample
        finally:
            hook.remove()
