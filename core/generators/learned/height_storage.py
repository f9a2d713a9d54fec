"""A height model folder in diffusers format, saved and loaded locally; nothing is ever downloaded.

    HEIGHT/model_index.json     written last (a folder without it is refused); names the parts and
                                holds the scheme ("height": range, prompt, channels, embedding size)
    HEIGHT/unet/                UNet2DConditionModel          HEIGHT/vae/        AutoencoderKL
    HEIGHT/text_encoder/        CLIPTextModel                 HEIGHT/tokenizer/  CLIPTokenizer
    HEIGHT/scheduler/           DDIMScheduler                 HEIGHT/README.md   model card

In a models folder for `--backend learned` it sits at MODELS/height/, beside (or without) the
ortho cascade at MODELS/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ...errors import GeneratorError
from .height_model import HEIGHT_CHANNELS, HeightNet
from .height_range import HeightRange
from .storage import INDEX, ModelFolderError, read_part_index

HEIGHT_CLASS = "WorldstreamHeight"
PARTS = {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
         "text_encoder": ("transformers", "CLIPTextModel"), "tokenizer": ("transformers", "CLIPTokenizer"),
         "scheduler": ("diffusers", "DDIMScheduler")}


def scheme(net: HeightNet) -> dict[str, Any]:
    """What, besides the weights, decides a height model's output (recorded in the index, pinned
    by the models digest)."""
    return {"range": net.height_range.as_dict(), "prompt": net.prompt, "channels": list(HEIGHT_CHANNELS),
            "embedding_dim": net.embedding_dim}


def quiet_loading() -> None:
    """No progress bars from diffusers / transformers: they would interleave with worldstream's output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def save_height(folder: str | Path, net: HeightNet, card: dict[str, Any]) -> Path:
    """Write the model to `folder` (replacing its parts, keeping anything else); the index last."""
    return save_parts(folder, net, PARTS, {"_class_name": HEIGHT_CLASS, "height": scheme(net), "training": card},
                      model_card(net, card))


def save_parts(folder: str | Path, net: Any, parts: dict[str, tuple[str, str]], index: dict[str, Any],
               card: str) -> Path:
    """Write the `parts` of `net` (attribute name -> (library, class)) to `folder` in diffusers format,
    each beside its final name and renamed into place, then README.md (`card`) and model_index.json
    (`index` plus the parts) last; anything else in the folder is kept."""
    quiet_loading()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INDEX
    path.unlink(missing_ok=True)  # incomplete until the new index lands
    for name in parts:
        tmp = folder / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        getattr(net, name).save_pretrained(tmp)
        shutil.rmtree(folder / name, ignore_errors=True)
        tmp.rename(folder / name)
    (folder / "README.md").write_text(card)
    body = {"_worldstream_version": 1, **{k: list(v) for k, v in parts.items()}, **index}
    tmp = folder / f".{INDEX}.partial"
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    tmp.rename(path)
    return folder


def load_height(folder: str | Path) -> tuple[HeightNet, dict[str, Any]]:
    """(model on the CPU in float32, training card) from a folder `save_height` wrote."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet_loading()
    folder = Path(folder)
    index = read_part_index(folder, HEIGHT_CLASS, PARTS, "height", "worldstream train height")
    s = index.get("height")
    try:
        rng = HeightRange(**s["range"])
        prompt, dim = str(s["prompt"]), int(s["embedding_dim"])
        if list(s["channels"]) != list(HEIGHT_CHANNELS):
            raise ValueError(f"channels {s['channels']} != {list(HEIGHT_CHANNELS)}")
    except (TypeError, KeyError, ValueError, GeneratorError) as exc:
        raise ModelFolderError(f"{folder / INDEX} has no valid 'height' scheme: {exc}") from None
    try:
        kw = dict(local_files_only=True)
        net = HeightNet(
            unet=UNet2DConditionModel.from_pretrained(folder / "unet", low_cpu_mem_usage=False, **kw).eval(),
            vae=AutoencoderKL.from_pretrained(folder / "vae", low_cpu_mem_usage=False, **kw).eval(),
            text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", **kw).eval(),
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer", **kw),
            scheduler=DDIMScheduler.from_pretrained(folder / "scheduler", **kw),
            height_range=rng, prompt=prompt, embedding_dim=dim)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFolderError(f"could not load the height model in {folder}: {exc}") from None
    return net, index.get("training", {})


def model_card(net: HeightNet, card: dict[str, Any]) -> str:
    params = sum(p.numel() for p in net.unet.parameters())
    lines = ["---", "library_name: diffusers", "tags: [worldstream, height-estimation, remote-sensing, dsm]", "---",
             "# worldstream height model p(x_h | x_o)", "",
             f"Predicts DEM and DSM (metres) on a {net.window} x {net.window} px window from the ortho and the",
             "coarser level's heights under it; sample with DDIM, eta = 0 (see `scheduler/`).", "",
             "## Model",
             f"- UNet parameters: {params:,}; VAE {net.factor}x, {net.vae.config.latent_channels} latent channels",
             f"- prompt: {net.prompt!r}",
             f"- height range: window scale = {net.height_range.min_scale:g} m + {net.height_range.relief_gain:g} x "
             "the coarser window's relief", "", "## Training"]
    for key in ("data", "pairs", "resolutions", "steps", "batch_size", "learning_rate", "vae", "text_encoder",
                "final_loss", "clipped_fraction", "wall_seconds", "device", "seed"):
        if key in card:
            lines.append(f"- {key.replace('_', ' ')}: {card[key]}")
    lines += ["", "## Limits", "Trained with `worldstream train height` on the data named above only.", ""]
    return "\n".join(lines)
