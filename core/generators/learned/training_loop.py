"""The training machinery every learned model shares: step loop, log, loss plot, checkpoints, exact resume.

OUT/training/ holds log.jsonl (one line per logged step), loss.png and
checkpoints/step-NNNNNNN/: each trained part in diffusers format (`save_pretrained`), the
optimizer, the torch generator's and the numpy generator's states, and the run's configuration.
A resumed run loads all of them into the same objects it would have trained from scratch, so
N + M resumed steps give the same weights as N + M straight ones.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...errors import WorldstreamError
from .loss_plot import loss_plot_png


class TrainingError(WorldstreamError, ValueError):
    """Training cannot start or resume as asked."""


def checkpoints(out: Path) -> list[Path]:
    """Finished checkpoint folders under OUT/training/checkpoints, oldest first."""
    root = out / "training" / "checkpoints"
    return sorted(root.glob("step-*[0-9]")) if root.is_dir() else []


def read_log(path: Path, upto: int) -> list[dict]:
    """The rows of log.jsonl up to step `upto` (a resumed run drops what came after its checkpoint)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto]


def refuse_unless_resuming(out: Path, resume: bool) -> None:
    """Raise TrainingError when OUT holds checkpoints and this run is not a resume (a trainer
    calls it before it reads its data, so the refusal is immediate)."""
    if checkpoints(out) and not resume:
        raise TrainingError(f"{out} already holds training checkpoints; pass --resume to continue them, "
                            "or use another --out")


class TrainingRun:
    """One training run's state on disk and in memory.

    parts: name -> diffusers model (ModelMixin) whose weights are trained and checkpointed;
    optimizer over them; generator: the torch RNG of noise and timesteps; rng: the numpy RNG of the
    data sampler; config: the run's JSON configuration without its run-length fields (a resume
    must match it). Raises TrainingError when OUT holds checkpoints and `resume` is False, or when
    the latest checkpoint was made with another configuration.
    """

    def __init__(self, out: str | Path, parts: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                 generator: torch.Generator, rng: np.random.Generator, config: dict, resume: bool,
                 keep_checkpoints: int = 2):
        self.out, self.parts, self.optimizer = Path(out), parts, optimizer
        self.generator, self.rng, self.config, self.keep = generator, rng, config, keep_checkpoints
        self.start = 0
        refuse_unless_resuming(self.out, resume)
        existing = checkpoints(self.out)
        if existing:
            self._load(existing[-1])
        self.log_path = self.out / "training" / "log.jsonl"
        self.log = read_log(self.log_path, self.start)

    def _load(self, ckpt: Path) -> None:
        state = json.loads((ckpt / "state.json").read_text())
        if state["config"] != self.config:
            raise TrainingError(f"checkpoint {ckpt} was made with a different configuration: {state['config']}")
        for name, part in self.parts.items():
            saved = type(part).from_pretrained(ckpt / name, local_files_only=True, low_cpu_mem_usage=False)
            part.load_state_dict(saved.state_dict())
        blob = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(blob["optimizer"])
        self.generator.set_state(blob["torch_generator"])
        self.rng.bit_generator.state = state["numpy_generator"]
        self.start = state["step"]

    def move_optimizer_state(self, device: torch.device) -> None:
        """The optimizer's moment tensors onto the device the parts were moved to."""
        for group in self.optimizer.state.values():
            for k, v in group.items():
                if torch.is_tensor(v):
                    group[k] = v.to(device)

    def run(self, steps: int, step: Callable[[], float], log_every: int, checkpoint_every: int,
            progress: Callable[[dict], None] | None = None) -> list[dict]:
        """Call `step` (one optimizer step, returning its loss) from the start step up to `steps`,
        logging and checkpointing on the way, then draw loss.png. Returns the whole log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in self.log))
        t0 = time.perf_counter()
        wall_before = self.log[-1]["seconds"] if self.log else 0.0
        with self.log_path.open("a") as log_file:
            for k in range(self.start + 1, steps + 1):
                loss = step()
                if k % log_every == 0 or k == steps:
                    row = {"step": k, "loss": loss, "seconds": round(wall_before + time.perf_counter() - t0, 3)}
                    self.log.append(row)
                    log_file.write(json.dumps(row) + "\n")
                    log_file.flush()
                    if progress:
                        progress(row)
                if k % checkpoint_every == 0 or k == steps:
                    self._save(k)
        (self.out / "training" / "loss.png").write_bytes(
            loss_plot_png([r["step"] for r in self.log], [r["loss"] for r in self.log]))
        return self.log

    def _save(self, step: int) -> None:
        root = self.out / "training" / "checkpoints"
        final = root / f"step-{step:07d}"
        tmp = root / f".step-{step:07d}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, part in self.parts.items():
            part.save_pretrained(tmp / name)
        torch.save({"optimizer": self.optimizer.state_dict(), "torch_generator": self.generator.get_state()},
                   tmp / "optimizer.pt")
        state = {"step": step, "numpy_generator": self.rng.bit_generator.state, "config": self.config}
        (tmp / "state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoints(self.out)[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def summary_stats(self) -> dict:
        """first_loss, final_loss (mean of the last tenth of the log) and wall_seconds of the whole run."""
        recent = [r["loss"] for r in self.log[-max(1, len(self.log) // 10):]]
        return {"first_loss": self.log[0]["loss"] if self.log else None,
                "final_loss": round(float(np.mean(recent)), 5) if recent else None,
                "wall_seconds": self.log[-1]["seconds"] if self.log else 0.0}
