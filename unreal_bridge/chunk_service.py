"""Chunks for the server: generated once per world, off the event loop, cached in memory and on disk.

`ChunkService.get(key, formats)` answers from a byte-budgeted in-memory LRU, then from the disk
cache (one folder per chunk, written atomically, so an interrupted write never looks complete),
then by generating in a process pool. Concurrent requests for the same chunk share one job, also
across formats: a request for formats that a queued job of the same chunk does not make widens
that job (the chunk is generated once for both: a camera's "glb" and the simulator's ground's
"sidecars"); only when that job is already running does a second one generate the chunk again.
A job nobody waits for any more is cancelled if it has not started.

Fair turns: jobs wait in one queue per client (`get(..., client=...)`) and are handed to the pool
only when a worker is free, one client's job at a time (`turns.Turns`: the client least behind,
then round robin), so a client asking for hundreds of chunks delays another client's most urgent
chunk by at most one job per other client, not by its whole backlog.

Every file in the disk cache is verified against the SHA-256 recorded when it was written (one
`sha256.json` per chunk folder, written after the files): a truncated, bit-flipped or unrecorded
file is logged, never served, and the chunk is generated again and its files replaced. The disk
cache is `exporters.store`'s format, the one `generate` writes: a `generate` output folder serves
as the cache (a pre-generated store), and the service adds the chunks it lacks.

Typed products (`products.py`: tile metadata, decoded layers, a renderer's decoded mesh) live in
the same byte-budgeted LRU as the files, keyed by chunk and product: `product(key, PRODUCT)` makes
each once per process from the verified files (concurrent callers share the making), and the
layers asked of a chunk generated here come straight from the worker, never decoded (the worker
hands them over only to such a request: sidecar files for a client carry no arrays back).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from cachetools import LRUCache

from ..core.errors import WorldstreamError
from ..core.keys import ChunkKey
from ..core.spec import WorldSpec
from ..core.workers import worker_pool
from ..exporters.compress import claim_store
from ..exporters.formats import FORMATS, expected_files, export_key_with, warm_worker
from ..exporters.mesh_options import MeshOptions
from ..exporters.store import Store, check_chunk, claim_world, open_store, write_chunk
from .products import LAYERS, Product, chunk_layers
from .turns import Turns

log = logging.getLogger(__name__)


@dataclass
class ServiceStats:
    memory_hits: int = 0
    disk_hits: int = 0
    generated: int = 0
    cancelled: int = 0
    widened: int = 0  # queued jobs given more formats instead of generating the chunk twice
    failed: int = 0
    product_hits: int = 0  # typed products (tile metadata, layers, meshes) answered from memory
    products_made: int = 0  # typed products made from files (a disk hit, or files kept without them)
    corrupt: int = 0  # disk-cache reads that failed verification (then regenerated)
    workers_warm: int = 0  # worker processes that finished their warm-up (ChunkService.warm)
    memory_bytes: int = 0
    entries: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Job:
    future: asyncio.Future  # result: every file of `formats`
    waiters: int = 0
    exec_future: object = None
    formats: tuple[str, ...] = field(default_factory=tuple)
    aliases: set = field(default_factory=set)  # the (key, formats) entries of ChunkService._jobs naming it
    key: ChunkKey | None = None
    client: Hashable = None  # whose turn it waits for
    queued: bool = False  # waiting in its client's queue, not yet handed to the pool
    hand_over: bool = False  # the worker also returns the chunk's LAYERS (someone asked for that product)


class ChunkService:
    def __init__(self, spec: WorldSpec, cache_dir: Path | str | None = None, memory_bytes: int = 256 << 20,
                 workers: int = 2, executor: Executor | None = None, options: MeshOptions = MeshOptions()):
        self.spec = spec
        self.options = options  # export options (MeshOptions.compress: compressed GLBs)
        self.spec_json = spec.to_json()
        self.store: Store | None = open_store(cache_dir) if cache_dir else None
        self.cache_dir = cache_dir  # as given: a folder or an fsspec URL (s3://bucket/prefix)
        self.memory_bytes = memory_bytes
        # (key, file name) -> bytes and (key, PRODUCT, product name) -> _Made: one budget for both
        self._memory: LRUCache = LRUCache(maxsize=memory_bytes, getsizeof=_sizeof)
        self._making: dict[tuple[ChunkKey, str], asyncio.Future] = {}  # products being made, one per (key, name)
        self._jobs: dict[tuple[ChunkKey, tuple[str, ...]], _Job] = {}
        self._executor = executor or worker_pool(workers)
        self._own_executor = executor is None
        self._slots = max(1, workers)  # jobs handed to the pool at once (the pool itself never queues)
        self._running = 0
        self._queues: dict[Hashable, deque[_Job]] = {}  # client -> its waiting jobs
        self._turns = Turns()
        # how far a client is behind on what it was sent (the server: frames not credited yet)
        self.backlog: Callable[[Hashable], int] = lambda client: 0
        self.stats = ServiceStats()
        if self.store:
            self.store.prepare()
            if not claim_world(self.store, self.spec_json):
                raise ValueError(f"cache {self.cache_dir} belongs to another world; use another cache folder")
            claim_store(self.store, options.compress)  # plain and compressed GLBs never mix in one cache
            self.store.clean_temporaries()

    def warm(self) -> None:
        """Start the pool's workers now and make each ready (`warm_worker`: its World built, two
        tiny chunks generated and exported, so that first-call costs are paid), in the background
        while the server starts listening (`stats.workers_warm` counts the ready ones; a client's
        first jobs queue behind a warm-up still running). The pool forks all its
        workers at its first job, so none is forked later from a process whose threads (the
        selection's, the disk cache's) may hold a lock."""
        if not self._own_executor:
            return
        warm: set[int] = set()

        def done(future) -> None:  # in the pool's thread: one assignment, no read-modify-write here
            if future.cancelled() or future.exception() is not None:
                log.warning("a worker could not be warmed up: %s", "cancelled" if future.cancelled() else future.exception())
                return
            warm.add(future.result())
            self.stats.workers_warm = len(warm)

        for _ in range(self._slots):
            self._executor.submit(warm_worker, self.spec_json).add_done_callback(done)

    def close(self) -> None:
        for queue in self._queues.values():
            for job in queue:
                if not job.future.done():
                    job.future.cancel()
        self._queues.clear()
        if self._own_executor:
            # wait=True: Python 3.11's pool, shut down without waiting, can raise "Bad file descriptor"
            # at interpreter exit (its exit hook wakes a management thread whose pipe is closed);
            # pending jobs are cancelled, so this waits only for the ones already running
            self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ memory LRU
    def _remember(self, key: ChunkKey, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            try:
                self._memory[(key, name)] = data  # least recently used files go first
            except ValueError:  # larger than the whole budget: not kept
                self._memory.pop((key, name), None)
        self.stats.memory_bytes, self.stats.entries = int(self._memory.currsize), len(self._memory)

    def _recall(self, key: ChunkKey, names: tuple[str, ...]) -> dict[str, bytes] | None:
        if all((key, n) in self._memory for n in names):
            return {n: self._memory[(key, n)] for n in names}  # each lookup marks the file recently used
        return None

    def _keep(self, key: ChunkKey, product: Product, value) -> None:
        try:
            self._memory[(key, PRODUCT, product.name)] = _Made(value, int(product.nbytes(value)))
        except ValueError:  # larger than the whole budget: not kept
            pass
        self.stats.memory_bytes, self.stats.entries = int(self._memory.currsize), len(self._memory)

    async def product(self, key: ChunkKey, product: Product, client: Hashable = None,
                      files: dict[str, bytes] | None = None):
        """The typed product of `key` (products.TILE, LAYERS, a renderer's mesh): from the memory
        LRU, else made once from the chunk's files (`get`; concurrent callers share one making)
        and kept. LAYERS asked of a chunk this service generates come straight from the worker
        (nothing decoded). `files`: the chunk's files where the caller already holds
        them (made from those, not fetched again)."""
        made = self._memory.get((key, PRODUCT, product.name))  # marks it recently used
        if made is not None:
            self.stats.product_hits += 1
            return made.value
        if files is not None:
            return await self._made_from(key, product, files)
        making = self._making.get((key, product.name))
        if making is None:
            making = self._making[(key, product.name)] = asyncio.ensure_future(self._make(key, product, client))
            making.add_done_callback(lambda _: self._making.pop((key, product.name), None))
        return await asyncio.shield(making)

    async def _make(self, key: ChunkKey, product: Product, client: Hashable):
        files = await self.get(key, product.formats, client=client, hand_over=product is LAYERS)
        made = self._memory.get((key, PRODUCT, product.name))  # the generating job may have handed it over
        if made is not None:
            return made.value
        return await self._made_from(key, product, files)

    async def _made_from(self, key: ChunkKey, product: Product, files: dict[str, bytes]):
        value = (await asyncio.to_thread(product.make, key, files)) if product.heavy else product.make(key, files)
        self.stats.products_made += 1
        self._keep(key, product, value)
        return value

    def client_gone(self, client: Hashable) -> None:
        """`client` will ask for nothing more (its connection closed): forget its place in the
        turns. Its waiting jobs go as their requests are cancelled."""
        self._turns.forget(client)

    def in_memory(self, key: ChunkKey, formats: tuple[str, ...]) -> bool:
        """Whether every file of `formats` for `key` is in the memory LRU (a request would not wait)."""
        return all((key, n) in self._memory for n in expected_files(formats))

    def _from_disk(self, key: ChunkKey, names: tuple[str, ...]) -> dict[str, bytes] | None:
        """The files from the disk cache if all are there and match their recorded hashes; None
        otherwise (a bad entry is logged and counted; the caller regenerates and replaces it)."""
        if not self.store:
            return None
        try:
            check = check_chunk(self.store, key.path(), names)  # the store's one rule of what is complete
        except WorldstreamError as exc:  # an object store that does not answer: generate instead
            log.warning("%s", exc)
            return None
        if check.bad:
            self.stats.corrupt += 1
            log.warning("disk cache %s: %s failed SHA-256 verification; regenerating",
                        self.store.url(f"chunks/{key.path()}"), ", ".join(check.bad))
        return None if check.missing else check.files

    def _to_disk(self, key: ChunkKey, files: dict[str, bytes]) -> None:
        """Write the files and record their hashes; files already there (a bad entry being
        repaired, or other formats) are replaced, each atomically; the hashes are written last."""
        if self.store:
            try:
                write_chunk(self.store, key.path(), files)
            except (OSError, WorldstreamError) as exc:  # the cache is an optimisation: a full disk or an
                log.warning("chunk cache %s: not written: %s", key.path(), exc)  # unreachable store must not fail

    # ------------------------------------------------------------------ public
    async def get(self, key: ChunkKey, formats: tuple[str, ...] = ("glb",), client: Hashable = None,
                  hand_over: bool = False) -> dict[str, bytes]:
        """All files of `formats` for `key`; raises what generation raised (e.g. a bad key).
        `client`: who asks, for fair turns at the pool (None: one shared turn). `hand_over`: a
        generating worker also returns the LAYERS product (only `product(key, LAYERS)` wants it)."""
        for f in formats:
            if f not in FORMATS:
                raise ValueError(f"unknown format {f!r}")
        names = expected_files(formats)
        files = self._recall(key, names)
        if files is not None:
            self.stats.memory_hits += 1
            return files
        files = await asyncio.get_running_loop().run_in_executor(None, self._from_disk, key, names) \
            if self.store else None
        if files is not None:
            self.stats.disk_hits += 1
            self._remember(key, files)
            return files
        job = self._jobs.get((key, formats)) or self._join(key, formats) or self._start(key, formats, client, hand_over)
        if hand_over and job.queued:  # joined while waiting for the pool: it can still bring the layers
            job.hand_over = True
        job.waiters += 1
        try:
            files = await asyncio.shield(job.future)
            return {n: files[n] for n in names}
        finally:
            job.waiters -= 1
            if job.waiters == 0 and not job.future.done():
                self._drop_if_waiting(job)

    def _drop_if_waiting(self, job: _Job) -> None:
        """Nobody needs `job` any more: drop it if it has not started (a running job's result
        still goes to the caches)."""
        if job.queued:
            self._dequeue(job)
        elif job.exec_future is None or not job.exec_future.cancel():
            return
        self.stats.cancelled += 1
        self._forget(job)
        job.future.cancel()

    def _join(self, key: ChunkKey, formats: tuple[str, ...]) -> _Job | None:
        """An in-flight job of the same chunk that makes (or, not started yet, is widened to make)
        every file of `formats`; None if there is none."""
        jobs = list({id(j): j for (k, _), j in self._jobs.items() if k == key}.values())
        for job in jobs:
            if set(formats) <= set(job.formats):
                job.aliases.add((key, formats))
                self._jobs[(key, formats)] = job
                return job
        for job in jobs:
            wider = tuple(dict.fromkeys(job.formats + formats))
            if job.queued:  # still waiting for its turn: one job for both
                job.formats = wider
            elif job.exec_future is not None and job.exec_future.cancel():  # in the pool, not started
                self._running -= 1  # the cancelled submission's completion is ignored (_finish)
                self._submit(job, key, wider)
            else:
                continue
            job.aliases.add((key, formats))
            self._jobs[(key, formats)] = job
            self.stats.widened += 1
            return job
        return None

    def _start(self, key: ChunkKey, formats: tuple[str, ...], client: Hashable, hand_over: bool = False) -> _Job:
        job = _Job(future=asyncio.get_running_loop().create_future(), aliases={(key, formats)}, key=key,
                   formats=formats, client=client, queued=True, hand_over=hand_over)
        self._jobs[(key, formats)] = job
        self._queues.setdefault(client, deque()).append(job)
        self._turns.arrive(client)
        self._pump()
        return job

    def _dequeue(self, job: _Job) -> None:
        queue = self._queues.get(job.client)
        if queue is not None:
            queue.remove(job)
            if not queue:
                del self._queues[job.client]
        job.queued = False

    def _pump(self) -> None:
        """Hand waiting jobs to free workers, a client's oldest job at a time, the client chosen
        by `Turns`: a client that holds the frames it is sent keeps its claim, but not ahead of
        one that consumes them."""
        while self._running < self._slots and self._queues:
            client = self._turns.next(self._queues, self.backlog)
            queue = self._queues[client]
            job = queue.popleft()
            if not queue:
                del self._queues[client]
            job.queued = False
            self._submit(job, job.key, job.formats)

    def _submit(self, job: _Job, key: ChunkKey, formats: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        self._running += 1
        job.formats = formats
        extract = chunk_layers if job.hand_over and "sidecars" in formats else None  # the arrays, not decoded again
        cf = job.exec_future = self._executor.submit(export_key_with, self.spec_json, key.path(), formats,
                                                     self.options, extract)
        cf.add_done_callback(lambda _: _call_soon(loop, self._finish, key, job, cf))

    def _forget(self, job: _Job) -> None:
        for jk in job.aliases:
            if self._jobs.get(jk) is job:
                del self._jobs[jk]

    def _finish(self, key: ChunkKey, job: _Job, cf) -> None:
        if cf is not job.exec_future:
            return  # replaced by a wider job before it started
        self._running -= 1
        self._turns.finished(job.client)
        self._pump()
        self._forget(job)
        if cf.cancelled():
            if not job.future.done():
                job.future.cancel()
            return
        exc = cf.exception()
        if exc is not None:
            self.stats.failed += 1
            if not job.future.done():
                job.future.set_exception(exc)
            return
        files, layers = cf.result()
        self.stats.generated += 1
        self._remember(key, files)
        if layers is not None:
            self._keep(key, LAYERS, layers)
        if self.store is not None and self.store.remote:  # network round trips: off the event loop
            asyncio.get_running_loop().run_in_executor(None, self._to_disk, key, files)
        else:
            self._to_disk(key, files)
        if not job.future.done():
            job.future.set_result({n: files[n] for n in expected_files(job.formats)})


PRODUCT = "product"  # marks a product's entry in the memory LRU


@dataclass(frozen=True)
class _Made:
    """A product in the memory LRU, with the bytes it holds."""

    value: object
    nbytes: int


def _sizeof(entry) -> int:
    return entry.nbytes if isinstance(entry, _Made) else len(entry)


def _call_soon(loop: asyncio.AbstractEventLoop, callback, *args) -> None:
    """Hand a pool job's completion to the event loop; once the loop is closed (the process is
    shutting down, e.g. on SIGTERM) nobody waits for the result and it is dropped quietly instead
    of raising "Event loop is closed" in the pool's thread."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        if not loop.is_closed():
            raise
