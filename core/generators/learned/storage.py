"""A cascade model folder in diffusers format, saved and loaded locally; nothing is ever downloaded.

    MODELS/model_index.json        written last: a folder without it is incomplete and refused
    MODELS/denoiser/               config.json + diffusion_pytorch_model.safetensors
    MODELS/scheduler/              scheduler_config.json (DDIM)
    MODELS/README.md               model card: what the model was trained on, and how
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from diffusers import DDIMScheduler

from ...errors import GeneratorError
from .model import ResolutionGuidedDenoiser

INDEX = "model_index.json"
CASCADE_CLASS = "WorldstreamCascade"


class ModelFolderError(GeneratorError):
    """A models folder is missing, incomplete or not a worldstream cascade."""


def save_cascade(folder: str | Path, denoiser: ResolutionGuidedDenoiser, scheduler: DDIMScheduler,
                 card: dict[str, Any]) -> Path:
    """Write the model to `folder` (replacing the model parts there, keeping anything else) and
    return it. Parts are written beside their final names and renamed into place; the index last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = folder / INDEX
    index.unlink(missing_ok=True)  # the folder is incomplete until the new index lands
    for name, part in (("denoiser", denoiser), ("scheduler", scheduler)):
        tmp = folder / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        part.save_pretrained(tmp)
        shutil.rmtree(folder / name, ignore_errors=True)
        tmp.rename(folder / name)
    (folder / "README.md").write_text(model_card(denoiser, card))
    body = {"_class_name": CASCADE_CLASS, "_worldstream_version": 1,
            "denoiser": ["worldstream.core.generators.learned.model", "ResolutionGuidedDenoiser"],
            "scheduler": ["diffusers", "DDIMScheduler"], "training": card}
    tmp = folder / f".{INDEX}.partial"
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    tmp.rename(index)
    return folder


def read_index(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"models folder {folder} does not exist (expected a folder written by "
                               "`worldstream train cascade`, or a diffusers upscaler folder)")
    index = folder / INDEX
    if not index.is_file():
        raise ModelFolderError(f"{folder} has no {INDEX}: not a diffusers model folder, or an interrupted save")
    try:
        return json.loads(index.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{index} is not valid JSON: {exc}") from None


def read_part_index(folder: Path, class_name: str, parts, what: str, command: str) -> dict[str, Any]:
    """The index of a `what` model folder (e.g. "height"), refused unless `command` wrote it for
    class_name with every one of its `parts` folders."""
    index = read_index(folder)
    if index.get("_class_name") != class_name:
        raise ModelFolderError(f"{folder} holds a {index.get('_class_name')!r}, not a {class_name} (written by "
                               f"`{command}`)")
    missing = [name for name in parts if not (folder / name).is_dir()]
    if missing:
        raise ModelFolderError(f"{what} model {folder} lacks its part(s) {missing}")
    return index


def load_cascade(folder: str | Path) -> tuple[ResolutionGuidedDenoiser, DDIMScheduler, dict[str, Any]]:
    """(denoiser on the CPU in float32, scheduler, training card) from a folder `save_cascade` wrote."""
    folder = Path(folder)
    index = read_index(folder)
    if index.get("_class_name") != CASCADE_CLASS:
        raise ModelFolderError(f"{folder} holds a {index.get('_class_name')!r}, not a {CASCADE_CLASS}")
    try:
        denoiser = ResolutionGuidedDenoiser.from_pretrained(folder / "denoiser", local_files_only=True,
                                                             low_cpu_mem_usage=False)
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"could not load the cascade in {folder}: {exc}") from None
    return denoiser.eval(), scheduler, index.get("training", {})


def model_parts(index: dict[str, Any]) -> list[str]:
    """The component folders a diffusers model_index.json names (entries of the form [library, class])."""
    return sorted(k for k, v in index.items()
                  if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None)


HEIGHT_PART = "height"  # MODELS/height/: the height model's own folder (height_storage.py)
FACADE_PART = "facades"  # MODELS/facades/: the facade model's own folder (facade_storage.py)
STAGES = ("ortho", "height", "facades")


def model_stages(folder: str | Path) -> tuple[str, ...]:
    """The learned stages a models folder holds, in STAGES order: "ortho" when MODELS/model_index.json
    exists (a cascade or an upscaler), "height" when MODELS/height/model_index.json does, "facades"
    when MODELS/facades/model_index.json does. A folder with none is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        read_index(folder)  # raises: the folder does not exist
    found = tuple(s for s, index in (("ortho", folder / INDEX), ("height", folder / HEIGHT_PART / INDEX),
                                     ("facades", folder / FACADE_PART / INDEX)) if index.is_file())
    if not found:
        raise ModelFolderError(f"{folder} holds no model: expected {INDEX} (an ortho cascade written by `worldstream "
                               f"train cascade`, or a diffusers upscaler), {HEIGHT_PART}/{INDEX} (a height model "
                               f"written by `worldstream train height`) and/or {FACADE_PART}/{INDEX} (a facade model "
                               "written by `worldstream train facades`)")
    return found


def _digest_parts(h: "hashlib._Hash", root: Path, folder: Path) -> None:
    for part in model_parts(read_index(folder)):
        for path in sorted((folder / part).rglob("*")):
            if path.is_file():
                h.update(str(path.relative_to(root)).encode() + b"\0")
                h.update(path.read_bytes())


def models_digest(folder: str | Path) -> str:
    """SHA-256 (hex) over the model parts' files (names and bytes) of every stage the folder holds,
    and the height and facade models' schemes: what a world spec pins, so a world never silently changes when
    the weights at a path do. A folder with only an ortho model digests as it always has."""
    folder = Path(folder)
    h = hashlib.sha256()
    stages = model_stages(folder)
    if "ortho" in stages:
        _digest_parts(h, folder, folder)
    if "height" in stages:
        height = folder / HEIGHT_PART
        h.update(b"height scheme\0" + json.dumps(read_index(height).get("height"), sort_keys=True).encode())
        _digest_parts(h, folder, height)
    if "facades" in stages:
        facades = folder / FACADE_PART
        h.update(b"facade scheme\0" + json.dumps(read_index(facades).get("facades"), sort_keys=True).encode())
        _digest_parts(h, folder, facades)
    return h.hexdigest()


def model_card(denoiser: ResolutionGuidedDenoiser, card: dict[str, Any]) -> str:
    cfg = denoiser.config
    params = sum(p.numel() for p in denoiser.parameters())
    lines = [
        "---",
        "library_name: diffusers",
        "tags: [worldstream, super-resolution, remote-sensing, scale-space-cascade]",
        "---",
        "# worldstream resolution-guided cascade denoiser",
        "",
        "One conditional DDPM noise predictor shared by every level of a worldstream world: it generates",
        f"a {cfg.sample_size} x {cfg.sample_size} px window at a target resolution (m/px, given as an embedding)",
        f"from the window {cfg.scale_factor}x coarser. Sample with DDIM, eta = 0 (see `scheduler/`).",
        "",
        "## Model",
        f"- parameters: {params:,}",
        f"- scale factor per step: {cfg.scale_factor}; channels: {cfg.channels} (sRGB scaled to [-1, 1])",
        f"- UNet block channels: {list(cfg.block_out_channels)}; layers per block: {cfg.layers_per_block}; "
        f"attention: {cfg.attention}",
        "",
        "## Training",
    ]
    for key in ("data", "images", "image_resolutions", "target_resolutions", "degradation", "steps",
                "batch_size", "learning_rate", "loss", "p2_gamma", "final_loss", "wall_seconds", "device", "seed"):
        if key in card:
            lines.append(f"- {key.replace('_', ' ')}: {card[key]}")
    lines += ["", "## Limits",
              "Trained with `worldstream train cascade` on the data named above only; it knows nothing else.",
              "Outputs are ortho imagery; heights and classes of a worldstream chunk still come from the",
              "procedural generator.", ""]
    return "\n".join(lines)
