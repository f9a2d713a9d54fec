"""A facade model folder in diffusers format, saved and loaded locally; nothing is ever downloaded.

    FACADES/model_index.json    written last (a folder without it is refused); names the parts and
                                holds the scheme ("facades": views, cross-view attention, tau, prompt)
    FACADES/unet/  UNet2DConditionModel     FACADES/vae/  AutoencoderKL     FACADES/view_embedding/
    FACADES/text_encoder/, tokenizer/  CLIP  FACADES/scheduler/  DDIMScheduler  FACADES/README.md  model card

In a models folder for `--backend learned` it sits at MODELS/facades/, beside the other stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import GeneratorError
from .facade_model import FacadeNet, ViewEmbedding
from .height_storage import quiet_loading, save_parts
from .storage import INDEX, ModelFolderError, read_part_index

FACADE_CLASS = "WorldstreamFacades"
PARTS = {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
         "text_encoder": ("transformers", "CLIPTextModel"), "tokenizer": ("transformers", "CLIPTokenizer"),
         "scheduler": ("diffusers", "DDIMScheduler"),
         "view_embedding": ("worldstream.core.generators.learned.facade_model", "ViewEmbedding")}


def scheme(net: FacadeNet) -> dict[str, Any]:
    """What, besides the weights, decides a facade model's output (in the index, pinned by the digest)."""
    return {"views": net.views, "view_size": net.view_size, "cross_view_attention": net.cross_view, "tau": net.tau,
            "prompt": net.prompt}


def save_facades(folder: str | Path, net: FacadeNet, card: dict[str, Any]) -> Path:
    """Write the model to `folder` (replacing its parts, keeping anything else); the index last."""
    return save_parts(folder, net, PARTS, {"_class_name": FACADE_CLASS, "facades": scheme(net), "training": card},
                      model_card(net, card))


def load_facades(folder: str | Path) -> tuple[FacadeNet, dict[str, Any]]:
    """(model on the CPU in float32, training card) from a folder `save_facades` wrote."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet_loading()
    folder = Path(folder)
    index = read_part_index(folder, FACADE_CLASS, PARTS, "facade", "worldstream train facades")
    s = index.get("facades")
    try:
        cross_view, tau, prompt = bool(s["cross_view_attention"]), float(s["tau"]), str(s["prompt"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelFolderError(f"{folder / INDEX} has no valid 'facades' scheme: {exc}") from None
    try:
        kw = dict(local_files_only=True)
        net = FacadeNet(
            unet=UNet2DConditionModel.from_pretrained(folder / "unet", low_cpu_mem_usage=False, **kw).eval(),
            vae=AutoencoderKL.from_pretrained(folder / "vae", low_cpu_mem_usage=False, **kw).eval(),
            text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", **kw).eval(),
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer", **kw),
            scheduler=DDIMScheduler.from_pretrained(folder / "scheduler", **kw),
            view_embedding=ViewEmbedding.from_pretrained(folder / "view_embedding", low_cpu_mem_usage=False,
                                                         **kw).eval(),
            cross_view=cross_view, tau=tau, prompt=prompt)
    except (OSError, ValueError, TypeError, GeneratorError) as exc:
        raise ModelFolderError(f"could not load the facade model in {folder}: {exc}") from None
    if net.views != int(s.get("views", -1)) or net.view_size != int(s.get("view_size", -1)):
        raise ModelFolderError(f"{folder}: its parts give {net.views} views of {net.view_size} px, its index says "
                               f"{s.get('views')} of {s.get('view_size')}")
    return net, index.get("training", {})


def model_card(net: FacadeNet, card: dict[str, Any]) -> str:
    params = sum(p.numel() for p in net.unet.parameters())
    lines = ["---", "library_name: diffusers", "tags: [worldstream, multi-view, inpainting, facades]", "---",
             "# worldstream facade model p(x_l | x_o, x_h)", "",
             f"Paints the vertical faces of {net.views} views ({net.view_size} x {net.view_size} px, "
             f"{360 / net.views:g} deg apart) on a circle around a building, from the views' other pixels; sample with",
             "DDIM, eta = 0 (see `scheduler/`); `render.bake` carries the views onto the facade atlas.", "",
             "## Model",
             f"- UNet parameters: {params:,}; VAE {net.factor}x, {net.latent_channels} latent channels",
             f"- cross-view local attention (views i - 1, i, i + 1): {'on' if net.cross_view else 'off'}",
             f"- vertical faces: |n . z_up| < {net.tau:g}; prompt: {net.prompt!r}", "", "## Training"]
    for key in ("data", "blocks", "vae_steps", "steps", "batch_size", "learning_rate", "vae", "text_encoder",
                "final_loss", "wall_seconds", "device", "seed"):
        if key in card:
            lines.append(f"- {key.replace('_', ' ')}: {card[key]}")
    lines += ["", "## Limits", "Trained with `worldstream train facades` on the data named above only.", ""]
    return "\n".join(lines)
