"""`worldstream generate --ray [ADDRESS]`: the same export, its chunks spread over a Ray cluster.

Chunks go in batches (tasks), planned coarse to fine as `generate` lists them. Each task exports
its chunks with the same function as a local run (so the bytes are the same) and writes each one
atomically, with its hashes, into the output folder (`exporters.store`), which every node must
mount at the same path (the shared store); a task whose worker dies is retried by Ray, and a chunk
written twice is written whole both times. Each task asks for one CPU, and for one GPU when the world's generator is learned and
the cluster has GPUs. Without an address a local cluster is started with `workers` CPUs.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from ..core.errors import WorldstreamError

TASK_RETRIES = 3  # a batch whose worker dies or raises is run again this many times
LOCAL = "local"


def export_on_ray(address: str, spec_json: str, out: Path, formats: tuple[str, ...],
                  jobs: list[tuple[str, tuple[str, ...] | None]], workers: int, batch: int,
                  on_done: Callable[[int], None] = lambda n: None) -> None:
    """Export `jobs` ((chunk path, None for a whole chunk or the file names it lacks), coarse to
    fine) into `out`/chunks on the Ray cluster at `address` (LOCAL: start one with `workers` CPUs),
    `batch` chunks a task; on_done(n) after each finished task of n chunks."""
    try:
        import ray
    except ImportError as exc:
        raise WorldstreamError("--ray needs Ray: pip install 'worldstream[ray]' (or pip install ray)") from exc
    if address != LOCAL:
        _check_reachable(address)
    started = time.perf_counter()
    try:
        if address == LOCAL:
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # Ray raises several kinds (ConnectionError, RuntimeError, ...)
        raise WorldstreamError(f"could not join the Ray cluster at {address}: {exc}") from exc
    print(f"ray start-up {time.perf_counter() - started:.1f} s ({address}: {ray.cluster_resources().get('CPU', 0):g} CPUs)",
          file=sys.stderr)
    try:
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=True)(export_batch)
        if _wants_gpu(spec_json) and ray.cluster_resources().get("GPU", 0) >= 1:
            task = task.options(num_gpus=1)
        pending = {task.remote(spec_json, str(out), formats, part): len(part) for part in batches(jobs, batch)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                ray.get(ref)  # re-raises a batch that failed every retry
                on_done(pending.pop(ref))
    finally:
        ray.shutdown()


def export_batch(spec_json: str, out: str, formats: tuple[str, ...],
                 jobs: list[tuple[str, tuple[str, ...] | None]]) -> list[str]:
    """Export and write each chunk of a batch (runs on a Ray worker); returns the chunk paths."""
    from .formats import export_key
    from .store import write_chunk

    for path, missing in jobs:
        files = export_key(spec_json, path, formats)
        write_chunk(Path(out) / "chunks", path, files if missing is None else {n: files[n] for n in missing})
    return [p for p, _ in jobs]


def batches(jobs: list, size: int) -> Iterable[list]:
    """Consecutive runs of `size` jobs (the last one shorter), in order."""
    if size < 1:
        raise WorldstreamError(f"--ray-batch must be at least 1 chunk, got {size}")
    return (jobs[i:i + size] for i in range(0, len(jobs), size))


def _wants_gpu(spec_json: str) -> bool:
    from ..core.spec import WorldSpec

    return WorldSpec.from_json(spec_json).generator == "learned"


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """A clear error at once when nothing listens at a host:port address (ray.init would retry for
    a minute first); other address forms (ray://, auto) are left to Ray."""
    if "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise WorldstreamError(f"no Ray cluster at {address}: {exc} (expected the head node's HOST:PORT, "
                               f"as `ray start --head` prints it)") from exc
