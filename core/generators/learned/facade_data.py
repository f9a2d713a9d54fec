"""The facade model's data: multi-view renders of blocks whose facades are known.

A block folder (anywhere under the data folder) holds

    block.json   {"views": N, "size": S, "building": id, "key": "L/X/Y", "seed": world seed}
    views.png    (S, N * S, 3) the N unlit views side by side, view k at columns [k S, (k + 1) S)
    mask.png     (S, N * S) 255 where the surface is vertical (|n . z_up| < tau), else 0

`prepare_blocks` renders them from a world (the procedural facades are the truth: the exporters'
facade atlas seen through `render.multiview`); `load_blocks` reads them; `BlockSampler` draws
training batches of whole blocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .training_loop import TrainingError

MIN_MASKED = 0.02  # a block whose views show less vertical surface than this is not worth training on


@dataclass(frozen=True, eq=False)
class Block:
    """views (N, S, S, 3) uint8; mask (N, S, S) bool; source: its folder."""

    views: np.ndarray
    mask: np.ndarray
    source: str


def write_block(folder: Path, views: np.ndarray, mask: np.ndarray, meta: dict) -> None:
    """One block folder from views (N, S, S, 3) uint8 and mask (N, S, S) bool."""
    folder.mkdir(parents=True, exist_ok=True)
    n, s = views.shape[:2]
    Image.fromarray(np.concatenate(list(views), axis=1)).save(folder / "views.png")
    Image.fromarray(np.concatenate(list(mask), axis=1).astype(np.uint8) * 255).save(folder / "mask.png")
    (folder / "block.json").write_text(json.dumps({"views": int(n), "size": int(s), **meta}, sort_keys=True))


def prepare_blocks(spec, keys, out: str | Path, views: int = 8, size: int = 64, tau: float = 0.25,
                   max_blocks: int | None = None) -> int:
    """Render the blocks (one per building its mesh draws) of the chunks `keys` of the world `spec`
    into block folders under `out`; returns how many were written. Blocks whose views show under
    MIN_MASKED vertical surface are skipped."""
    from ....exporters.chunk_mesh import chunk_mesh
    from ....render import Renderer, RenderChunk
    from ....render.multiview import render_ring, vertical_mask
    from ...world import World

    out = Path(out)
    world = World(spec, cache_chunks=0)
    renderer = Renderer(lit=False)
    count = 0
    try:
        for key in keys:
            chunk = world.chunk(key)
            mesh = chunk_mesh(chunk, spec)
            if not mesh.buildings:
                continue
            rc = RenderChunk.from_mesh(chunk, mesh)
            for b in mesh.buildings:
                frames = render_ring(renderer, rc, b, views, size)
                mask = np.stack([vertical_mask(f, tau) for f in frames])
                if mask.mean() < MIN_MASKED:
                    continue
                write_block(out / f"{key.level}_{key.x}_{key.y}_{b.id}", np.stack([f.scene for f in frames]), mask,
                            {"building": int(b.id), "key": f"{key.level}/{key.x}/{key.y}", "seed": spec.seed})
                count += 1
                if max_blocks is not None and count >= max_blocks:
                    return count
    finally:
        renderer.close()
    return count


def load_blocks(data: str | Path) -> list[Block]:
    """Every block folder under `data` (sorted by path); all must have one view count and size."""
    data = Path(data)
    if not data.is_dir():
        raise TrainingError(f"facade data folder {data} does not exist")
    blocks, shape = [], None
    for meta_path in sorted(data.rglob("block.json")):
        folder = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
            n, s = int(meta["views"]), int(meta["size"])
            strip = np.asarray(Image.open(folder / "views.png").convert("RGB"))
            mask = np.asarray(Image.open(folder / "mask.png").convert("L")) > 127
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise TrainingError(f"{folder}: expected block.json, views.png and mask.png of a facade block: {exc}") from None
        if strip.shape != (s, n * s, 3) or mask.shape != (s, n * s):
            raise TrainingError(f"{folder}: views.png {strip.shape} / mask.png {mask.shape} do not hold {n} views of "
                                f"{s} x {s} px side by side")
        if shape is not None and (n, s) != shape:
            raise TrainingError(f"{folder} holds {n} views of {s} px, other blocks {shape[0]} of {shape[1]} px")
        shape = (n, s)
        split = lambda a: np.stack(np.split(a, n, axis=1))  # noqa: E731
        blocks.append(Block(split(strip), split(mask), str(folder)))
    if not blocks:
        raise TrainingError(f"no facade blocks under {data}: expected folders with block.json, views.png and mask.png "
                            "(`worldstream train facades` renders them when --data is a worldstream export)")
    return blocks


class BlockSampler:
    """Random whole blocks as training batches (numpy RNG `rng`, checkpointed by the training loop)."""

    def __init__(self, blocks: list[Block], seed: int = 0):
        self.blocks = blocks
        self.rng = np.random.default_rng(seed)

    def batch(self, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """(views (blocks * N, 3, S, S) float32 in [-1, 1], mask (blocks * N, 1, S, S) float32 {0, 1})."""
        pick = self.rng.integers(0, len(self.blocks), blocks)
        views = np.concatenate([self.blocks[i].views for i in pick]).astype(np.float32).transpose(0, 3, 1, 2)
        mask = np.concatenate([self.blocks[i].mask for i in pick]).astype(np.float32)[:, None]
        return views * (2.0 / 255.0) - 1.0, mask
