"""What a camera sees of the world: the chunk set of the streaming server's screen-space-error
selection (coarse levels out to the horizon, no holes, no overlapping levels: REPLACE refinement),
fetched through the shared chunk service (or built in this process), decoded once, and drawn.

The selection needs each chunk's height span; it starts from the server's default span, learns the
true ones from the chunks it fetches, and selects again until the set stops changing.
"""

from __future__ import annotations

import asyncio
import math
import time

from cachetools import LRUCache

from ..core.keys import ChunkKey
from ..core.world import World
from ..exporters.chunk_mesh import MeshOptions, chunk_mesh
from ..exporters.tiles import implicit_root_error, level_geometric_error
from ..unreal_bridge import lod
from ..unreal_bridge.products import Product
from .camera import Intrinsics, Pose
from .renderer import Frame, Renderer
from .scene import RenderChunk

def selection_camera(pose: Pose, intr: Intrinsics, max_sse: float) -> lod.Camera:
    return lod.Camera(position=tuple(float(c) for c in pose.position), forward=tuple(float(c) for c in pose.forward),
                      up=tuple(float(c) for c in pose.up), fov_x=math.radians(intr.fov_deg), width=intr.width,
                      height=intr.height, max_sse=max_sse)


VIEW_MEMORY_BYTES = 640 << 20  # a service feeding a WorldView: files, layers and decoded meshes in one budget
RENDER_CHUNK = Product("render_chunk", ("glb",), lambda key, files: RenderChunk.from_glb(files["mesh.glb"], key),
                       lambda rc: rc.nbytes, heavy=True)  # a chunk's GLB decoded for drawing


class WorldView:
    """Frames of one world. source: a `ChunkService` (its memory LRU, disk cache and worker
    processes; each GLB decoded once, kept in the service's LRU as the RENDER_CHUNK product) or a
    `World` (meshes built in a worker thread of this process, kept here within memory_bytes);
    max_sse and horizon_m as the server's."""

    def __init__(self, source, renderer: Renderer | None = None, options: MeshOptions = MeshOptions(),
                 max_sse: float = 16.0, horizon_m: float = 20000.0, memory_bytes: int = 384 << 20):
        self.source = source
        self.spec = source.spec
        self.options = options
        self.renderer = renderer
        self.max_sse, self.horizon_m = max_sse, horizon_m
        root = implicit_root_error(self.spec, options)
        self.level_error = lambda level: level_geometric_error(root, level)
        self.heights = lod.HeightSpans(self.level_error)
        self._chunks: LRUCache = LRUCache(maxsize=memory_bytes, getsizeof=lambda rc: rc.nbytes)  # key -> RenderChunk
        self._loading: dict[ChunkKey, asyncio.Future] = {}  # one fetch per key, however many cameras wait
        self.memory_bytes = memory_bytes
        self.chunks_fetched = 0
        self.frames, self.chunk_seconds, self.draw_seconds = 0, 0.0, 0.0

    def _renderer(self) -> Renderer:
        if self.renderer is None:
            self.renderer = Renderer()
        return self.renderer

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()

    async def chunk(self, key: ChunkKey) -> RenderChunk:
        """The chunk's RenderChunk, decoded once and kept while the memory budget allows."""
        if not isinstance(self.source, World):
            rc = await self.source.product(key, RENDER_CHUNK)
            if not self.heights.knows(key):
                self.chunks_fetched += 1
                self.heights.learn(key, *rc.z_range())
            return rc
        hit = self._chunks.get(key)  # marks it recently used
        if hit is not None:
            return hit
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key))
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, key: ChunkKey) -> RenderChunk:
        world, options = self.source, self.options

        def build() -> RenderChunk:
            c = world.chunk(key)
            return RenderChunk.from_mesh(c, chunk_mesh(c, world.spec, options))

        rc = await asyncio.to_thread(build)
        self.chunks_fetched += 1
        z = rc.z_range()
        self.heights.learn(key, z[0], z[1])
        try:
            self._chunks[key] = rc  # least recently used chunks go first
        except ValueError:  # larger than the whole budget: drawn, not kept
            pass
        return rc

    async def chunks_for(self, pose: Pose, intr: Intrinsics) -> list[RenderChunk]:
        """The selected chunks that this camera sees, all present (fetched as needed). The
        selection also keeps coarse chunks out of view (for streaming, so turning never shows a
        hole); a frame needs only those in the frustum, so only those are fetched.

        Selection depends on height spans, and a chunk's span is only known once it is fetched. So
        each round fetches, for every selected key, the key or the ancestor whose parent's span is
        known (which bounds it well), learns, and selects again: spans tighten from the top down
        instead of fetching a whole selection made with default spans."""
        camera = selection_camera(pose, intr, self.max_sse)
        for _ in range(self.spec.levels + 2):
            selected = [s.key for s in lod.select(self.spec, [camera], self.level_error, self.horizon_m, self.heights,
                                                  hysteresis=0.0)]
            seen = lod.keys_in_frustum(self.spec, camera, selected, self.heights)
            keys = [k for k, s in zip(selected, seen.tolist()) if s]
            wanted = list(dict.fromkeys(self._next_to_learn(k) for k in keys))
            await asyncio.gather(*(self.chunk(k) for k in wanted))
            if wanted == keys:
                break
        return self.in_view(list(await asyncio.gather(*(self.chunk(k) for k in keys))), pose, intr)

    def _next_to_learn(self, key: ChunkKey) -> ChunkKey:
        """key if its span or its parent's is known, else the nearest ancestor whose parent's span
        is known (or a level-0 one)."""
        k = key
        while not self.heights.knows(k) and k.level > 0 and not self.heights.knows(k.parent()):
            k = k.parent()
        return k

    def in_view(self, chunks: list[RenderChunk], pose: Pose, intr: Intrinsics) -> list[RenderChunk]:
        """The chunks whose bounds (with their learned height spans) meet the view frustum."""
        camera = selection_camera(pose, intr, self.max_sse)
        seen = lod.keys_in_frustum(self.spec, camera, [c.key for c in chunks], self.heights)
        return [c for c, s in zip(chunks, seen.tolist()) if s]

    async def frame(self, pose: Pose, intr: Intrinsics, outputs=("scene", "depth", "ids", "normals")) -> Frame:
        """Render one camera off the event loop (the renderer's own GL thread)."""
        t0 = time.perf_counter()
        chunks = await self.chunks_for(pose, intr)
        t1 = time.perf_counter()
        frame = await asyncio.wrap_future(self._renderer().submit(chunks, pose, intr, outputs))
        self.frames += 1
        self.chunk_seconds += t1 - t0
        self.draw_seconds += time.perf_counter() - t1
        return frame

    def summary(self) -> str:
        return (f"{self.frames} frames: {self.chunk_seconds:.1f} s selecting and waiting for chunks "
                f"({self.chunks_fetched} fetched), {self.draw_seconds:.1f} s drawing")

