"""`worldstream generate --ray [ADDRESS]`: the same export, its chunks spread over a Ray cluster.

Chunks go in batches (tasks), planned coarse to fine as `generate` lists them. Each task exports
its chunks with the same function and MeshOptions as a local run (so the bytes are the same,
`--compress` included) and writes each one,
with its hashes, into the store (`exporters.store`): a folder every node mounts at the same path,
or an object store URL every node can reach. A task whose worker dies is retried by Ray, and a
chunk written twice is written whole both times. Each task asks for one CPU, and for one GPU when
the world's generator is learned and the cluster has GPUs. Without an address a local cluster is
started with `workers` CPUs.

Before the first batch every worker slot is warmed (torch imported, the World built, as a pool's
worker is before its first chunk), so the fixed start-up and the per-chunk export are timed apart.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Callable, Iterable

from ..core.errors import WorldstreamError
from .mesh_options import MeshOptions

TASK_RETRIES = 3  # a batch whose worker dies or raises is run again this many times
LOCAL = "local"
TASKS_PER_SLOT = 16  # the default batch leaves each worker slot at least this many tasks (load balance)
MAX_BATCH = 16  # chunks a task at most by default (a retried task redoes at most this many)


def export_on_ray(address: str, spec_json: str, out: str, formats: tuple[str, ...],
                  jobs: list[tuple[str, tuple[str, ...] | None]], workers: int, batch: int | None,
                  on_done: Callable[[int], None] = lambda n: None,
                  options: MeshOptions = MeshOptions()) -> tuple[float, float]:
    """Export `jobs` ((chunk path, None for a whole chunk or the file names it lacks), coarse to
    fine) into the store `out` (a local path or fsspec URL) on the Ray cluster at `address` (LOCAL:
    start one with `workers` CPUs), `batch` chunks a task (None: `auto_batch`), each chunk's GLB
    stored as `options` says (e.g. compressed); on_done(n) after each
    finished task of n chunks. Returns time.perf_counter() when every worker slot was warm and when
    the last chunk was written."""
    try:
        import ray
    except ImportError as exc:
        raise WorldstreamError("--ray needs Ray: pip install 'worldstream[ray]' (or pip install ray)") from exc
    from ..core.workers import warm_up
    from .formats import warm_worker

    if batch is not None and batch < 1:
        raise WorldstreamError(f"--ray-batch must be at least 1 chunk, got {batch}")
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
    resources = ray.cluster_resources()
    print(f"ray start-up {time.perf_counter() - started:.1f} s ({address}: {resources.get('CPU', 0):g} CPUs)",
          file=sys.stderr)
    try:
        need = {"num_cpus": 1}
        if _wants_gpu(spec_json) and resources.get("GPU", 0) >= 1:
            need["num_gpus"] = 1
        slots = max(1, int(resources.get("GPU" if "num_gpus" in need else "CPU", 1)))
        warm = ray.remote(**need)(warm_worker)
        warm_up(lambda n: ray.get([warm.remote(spec_json) for _ in range(n)]), slots)
        ready = time.perf_counter()
        task = ray.remote(**need, max_retries=TASK_RETRIES, retry_exceptions=True)(export_batch)
        size = batch or auto_batch(len(jobs), slots)
        sizes = {task.remote(spec_json, out, formats, part, options): len(part) for part in batches(jobs, size)}
        pending = list(sizes)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            if pending:  # and whatever else finished meanwhile, without waiting
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                done += more
            for ref in done:
                ray.get(ref)  # re-raises a batch that failed every retry
                on_done(sizes.pop(ref))
        return ready, time.perf_counter()
    finally:
        ray.shutdown()


def export_batch(spec_json: str, out: str, formats: tuple[str, ...],
                 jobs: list[tuple[str, tuple[str, ...] | None]], options: MeshOptions = MeshOptions()) -> list[str]:
    """Export and write each chunk of a batch (runs on a Ray worker) as a local run would with the
    same `options`; returns the chunk paths."""
    from .formats import export_key
    from .store import open_store, write_chunk

    store = open_store(out)  # once per worker process
    for path, missing in jobs:
        files = export_key(spec_json, path, formats, options)
        write_chunk(store, path, files if missing is None else {n: files[n] for n in missing})
    return [p for p, _ in jobs]


def auto_batch(jobs: int, slots: int) -> int:
    """Chunks per task: small enough that every worker slot gets TASKS_PER_SLOT tasks or more (no
    worker idles through the last big batch of another), at most MAX_BATCH, at least 1. A chunk
    takes a quarter to a whole second, far more than a Ray task costs, so one-chunk tasks lose
    nothing on small runs."""
    return max(1, min(MAX_BATCH, jobs // (TASKS_PER_SLOT * max(slots, 1))))


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
