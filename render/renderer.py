"""The renderer: RenderChunks drawn from a Pose into all targets in one pass on the EGL context.

GPU copies of chunks (vertex buffers, mip-mapped textures, tree instance buffers) live in a
bounded LRU keyed by the RenderChunk object; the tree models (exporters.tree_mesh) are uploaded
once per context and drawn with GPU instancing, one draw per model part and run of visible cull
tiles. An EGL context is current in one thread only, so every renderer owns one GL thread and
runs all its GL work there: `render` waits for a frame, `submit` returns a future (for
asyncio callers: `asyncio.wrap_future`), and neither blocks or shares another renderer's context.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from cachetools import LRUCache

from ..core.biomes import CLASS_IDS
from ..exporters.chunk_glb import linear_colour
from ..exporters.tree_mesh import COLOURS as TREE_COLOURS, FAR_DEPARTURE, FAR_MODELS as FAR_TREE_MODELS, \
    MODELS as TREE_MODELS
from . import shaders
from .camera import Intrinsics, Pose, projection, view_rotation
from .context import RenderError, create_context, renderer_name
from .culling import (boxes_in_frustum, frustum_planes, merged_ranges, nearest_distances, runs, square_tile_triangles,
                      tile_items, tile_triangles)
from .ground_grid import GroundGrid, choose_strides, next_to
from .scene import GROUND_TILES, RenderChunk, Trees

NO_HIT_DEPTH = 65504.0  # AirSim's depth where nothing is hit (float16 max)
KIND_CODES = {"terrain": 0, "water": 1, "roof": 2, "facade": 3, "tree": 4, "ground": 5}
GROUND_ERROR_PX = 1.0  # the most a ground grid may depart from the chunk's own ground, in pixels
GROUND_GAIN = 0.5  # a tile is drawn as a ground grid only if that halves its triangles at least
TREE_ERROR_PX = 1.0  # the most a far tree's outline may depart from its model's, in pixels
OUTPUTS = ("scene", "depth", "ids", "normals")
CULL_TILES = GROUND_TILES  # a chunk's triangles are culled in CULL_TILES x CULL_TILES groups
VERTEX = np.dtype([("position", "<f4", 3), ("normal", "<f4", 3), ("uv", "<f4", 2), ("instance", "<u4")])
MODEL_VERTEX = np.dtype([("position", "<f4", 3), ("normal", "<f4", 3)])
TREE = np.dtype([("translation", "<f4", 3), ("turn", "<f4", 2), ("scale", "<f4", 3), ("instance", "<u4")])
TREE_ATTRIBUTES = (("in_translation", "f", "3f", 0), ("in_turn", "f", "2f", 12), ("in_scale", "f", "3f", 20),
                   ("in_instance", "i", "1u", 32))  # (name, class, format, byte offset) in TREE


@dataclass(frozen=True)
class Sky:
    """sun: unit vector towards the sun (ENU); zenith / horizon: linear RGB 0..1; visibility:
    metres at which haze reaches 63 %."""

    sun: tuple[float, float, float] = tuple(np.array([0.42, 0.30, 0.86]) / np.linalg.norm([0.42, 0.30, 0.86]))
    zenith: tuple[float, float, float] = (0.16, 0.33, 0.65)
    horizon: tuple[float, float, float] = (0.62, 0.73, 0.85)
    visibility: float = 9000.0


@dataclass(frozen=True, eq=False)
class Frame:
    """One camera's images. scene: (H, W, 3) uint8 sRGB; depth_planar: (H, W) float32 metres along
    the optical axis (NO_HIT_DEPTH for sky); classes: (H, W) uint8 class ids (0 "none" for sky);
    instances: (H, W) uint32 building ids, or tree ids (core.vegetation.TREE_ID_BIT set), 0 none; normals: (H, W, 3) uint8 world ENU normal
    encoded n * 127.5 + 127.5 (0 for sky). Targets not asked for are None."""

    intrinsics: Intrinsics
    pose: Pose
    scene: np.ndarray | None
    depth_planar: np.ndarray | None
    classes: np.ndarray | None
    instances: np.ndarray | None
    normals: np.ndarray | None

    @property
    def depth_perspective(self) -> np.ndarray:
        """(H, W) float32 metres from the camera centre (NO_HIT_DEPTH for sky)."""
        if self.depth_planar is None:
            raise RenderError("this frame was rendered without depth")
        scale = np.linalg.norm(self.intrinsics.rays(), axis=2)
        hit = self.depth_planar < NO_HIT_DEPTH
        return np.where(hit, self.depth_planar * scale, NO_HIT_DEPTH).astype(np.float32)


@dataclass(frozen=True, eq=False)
class _Draw:
    """One surface on the GPU: kind code, texture name, GL objects, and its cull tiles (first
    triangle, triangle count, (K, 2, 3) boxes relative to the chunk origin). A ground surface's
    tiles are the chunk's square tiles, all CULL_TILES^2 of them, each with its triangles inside
    the square first: `inside` counts them (the rest overhang into the neighbours)."""

    kind: int
    texture: str
    vao: object
    vbo: object
    ibo: object
    starts: np.ndarray
    counts: np.ndarray
    boxes: np.ndarray
    inside: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class _GridDraw:
    """A chunk's ground grids on the GPU (scene.RenderChunk.ground)."""

    grid: GroundGrid
    vao: object
    vbo: object
    ibo: object


@dataclass(frozen=True, eq=False)
class _ModelPart:
    """One part of a tree model on the GPU: vertex buffer (MODEL_VERTEX), index buffer, and the
    part's linear RGBA albedo."""

    vbo: object
    ibo: object
    colour: tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class _TreeModel:
    """A chunk's trees of one kind drawn as one model (near or far): a vertex array per part, the
    parts' linear RGBA albedos, and the triangles per instance."""

    vaos: tuple
    colours: tuple
    triangles: int


@dataclass(frozen=True, eq=False)
class _TreeDraw:
    """One kind of trees of a chunk on the GPU: instance buffer (TREE, instances grouped by cull
    tile), the models near and far trees are drawn with, and its cull tiles (first instance,
    instance count, (K, 2, 3) boxes relative to the chunk origin, (K,) largest crown radius)."""

    buffer: object
    near: _TreeModel
    far: _TreeModel
    starts: np.ndarray
    counts: np.ndarray
    boxes: np.ndarray
    radius: np.ndarray


def _upload_models(ctx) -> dict[tuple[str, bool], tuple[_ModelPart, ...]]:
    """The tree models of exporters.tree_mesh on the GPU, per (kind, far): MODELS and FAR_MODELS."""
    out = {}
    for far, models in ((False, TREE_MODELS), (True, FAR_TREE_MODELS)):
        for kind, parts in models.items():
            uploaded = []
            for p in parts:
                v = np.empty(len(p.positions), MODEL_VERTEX)
                v["position"], v["normal"] = p.positions, p.normals
                ibo = ctx.buffer(np.ascontiguousarray(p.triangles, np.uint32).tobytes())
                uploaded.append(_ModelPart(ctx.buffer(v.tobytes()), ibo, tuple(linear_colour(TREE_COLOURS[p.material]))))
            out[kind, far] = tuple(uploaded)
    return out


def _tree_draw(ctx, program, models: dict[tuple[str, bool], tuple[_ModelPart, ...]], trees: Trees) -> _TreeDraw:
    """A chunk's trees of one kind on the GPU: their instance buffer and a vertex array per part of each model."""
    boxes = trees.boxes()
    order, starts, counts, tile_boxes = tile_items(trees.translation[:, :2].astype(np.float64), boxes, CULL_TILES)
    inst = np.empty(len(order), TREE)
    inst["translation"], inst["turn"] = trees.translation[order], trees.turn[order]
    inst["scale"], inst["instance"] = trees.scale[order], trees.ids[order]
    buffer = ctx.buffer(inst.tobytes())
    per_instance = (buffer, "3f 2f 3f 1u/i", "in_translation", "in_turn", "in_scale", "in_instance")

    def model(far: bool) -> _TreeModel:
        parts = models[trees.kind, far]
        vaos = tuple(ctx.vertex_array(program, [(p.vbo, "3f 3f", "in_position", "in_normal"), per_instance],
                                      index_buffer=p.ibo, index_element_size=4) for p in parts)
        source = (FAR_TREE_MODELS if far else TREE_MODELS)[trees.kind]
        return _TreeModel(vaos, tuple(p.colour for p in parts), sum(len(p.triangles) for p in source))

    radius = np.maximum.reduceat(inst["scale"][:, 0].astype(np.float64), starts)
    return _TreeDraw(buffer, model(False), model(True), starts, counts, tile_boxes, radius)


@dataclass(frozen=True)
class _Boxes:
    """Cull boxes without a draw of their own (the ground's square tiles): (K, 2, 3)."""

    boxes: np.ndarray


def _grid_draw(ctx, program, grid: GroundGrid) -> _GridDraw:
    v = np.zeros(len(grid.positions), VERTEX)
    v["position"], v["normal"], v["uv"] = grid.positions, grid.normals, grid.uv
    vbo, ibo = ctx.buffer(v.tobytes()), ctx.buffer(grid.triangles.tobytes())
    vao = ctx.vertex_array(program, [(vbo, "3f 3f 2f 1u", "in_position", "in_normal", "in_uv", "in_instance")],
                           index_buffer=ibo, index_element_size=4)
    return _GridDraw(grid, vao, vbo, ibo)


class _GpuChunk:
    def __init__(self, ctx, program, tree_program, models, chunk: RenderChunk, anisotropy: float):
        self.chunk = chunk  # held so the LRU key (its id) is never reused while cached
        self.textures = {"ortho": _rgb_texture(ctx, chunk.ortho, anisotropy)}
        if chunk.facade is not None:
            self.textures["facade"] = _rgb_texture(ctx, chunk.facade, anisotropy)
        h, w = chunk.classes.shape
        self.classes = ctx.texture((w, h), 1, np.ascontiguousarray(chunk.classes, np.uint8).tobytes(), dtype="u1",
                                   alignment=1)
        self.classes.filter = (_gl().NEAREST, _gl().NEAREST)
        self.draws = []
        grid = chunk.ground
        extent = float(grid.boxes[-1, 1, 0]) if grid is not None else 0.0
        for s in chunk.surfaces:
            if not len(s.triangles):
                continue
            v = np.empty(len(s.positions), VERTEX)
            v["position"], v["normal"], v["uv"], v["instance"] = s.positions, s.normals, s.uv, s.instance
            inside = None
            if grid is not None and s.is_ground:
                triangles, starts, counts, inside, boxes = square_tile_triangles(s.positions, s.triangles, CULL_TILES,
                                                                                 extent)
            else:
                triangles, starts, counts, boxes = tile_triangles(s.positions, s.triangles, CULL_TILES)
            vbo = ctx.buffer(v.tobytes())
            ibo = ctx.buffer(triangles.tobytes())
            vao = ctx.vertex_array(program, [(vbo, "3f 3f 2f 1u", "in_position", "in_normal", "in_uv", "in_instance")],
                                   index_buffer=ibo, index_element_size=4)
            texture = s.texture if s.texture in self.textures else "ortho"  # a facade surface without an atlas
            self.draws.append(_Draw(KIND_CODES[s.kind], texture, vao, vbo, ibo, starts, counts, boxes, inside))
        self.grid = _grid_draw(ctx, program, grid) if grid is not None else None
        self.trees = [_tree_draw(ctx, tree_program, models, t) for t in chunk.trees if len(t.ids)]
        self.nbytes = chunk.nbytes
        own = [d for d in self.draws if d.inside is None]
        self.ground_draws = [d for d in self.draws if d.inside is not None]
        pieces = [*own, *self.trees]
        if self.grid is not None:  # the ground's square tiles: one box each, over its surfaces and its grids
            ground = [d.boxes for d in self.ground_draws] + [grid.boxes]
            pieces.append(_Boxes(np.stack([np.min([b[:, 0] for b in ground], axis=0),
                                           np.max([b[:, 1] for b in ground], axis=0)], axis=1)))
        # every cull tile of the chunk in one array, culled in one call per frame; spans: each piece's rows
        self.boxes = np.concatenate([p.boxes for p in pieces]) if pieces else np.zeros((1, 2, 3))
        ends = np.cumsum([len(p.boxes) for p in pieces], dtype=np.int64)
        spans = [slice(int(e) - len(p.boxes), int(e)) for p, e in zip(pieces, ends)]
        self.own = list(zip(own, spans))
        self.tree_spans = spans[len(own):len(own) + len(self.trees)]
        self.ground_span = spans[-1] if self.grid is not None else None
        self.ground_triangles = np.sum([d.counts for d in self.ground_draws], axis=0) if self.ground_draws else None
        self.box = (self.boxes[:, 0].min(axis=0), self.boxes[:, 1].max(axis=0))  # relative to the chunk origin

    def release(self) -> None:
        for d in [*self.draws, *([self.grid] if self.grid is not None else [])]:
            d.vao.release(), d.vbo.release(), d.ibo.release()
        for t in self.trees:
            for vao in (*t.near.vaos, *t.far.vaos):
                vao.release()
            t.buffer.release()
        for t in self.textures.values():
            t.release()
        self.classes.release()


def _gl():
    import moderngl

    return moderngl


def anisotropy_for(renderer: str) -> float:
    """Anisotropic filtering for a GL renderer: 8x on hardware; none on Mesa's software rasterizers,
    where it has a cost cliff (measured on llvmpipe: one 2-pixel terrain triangle seen at a grazing
    angle took 12 s to draw with 4x anisotropy, 4 ms without)."""
    return 1.0 if any(name in renderer for name in ("llvmpipe", "softpipe", "lavapipe")) else 8.0


def _rgb_texture(ctx, rgb: np.ndarray, anisotropy: float):
    h, w = rgb.shape[:2]
    t = ctx.texture((w, h), 3, np.ascontiguousarray(rgb, np.uint8).tobytes(), alignment=1)
    t.build_mipmaps()
    t.filter = (_gl().LINEAR_MIPMAP_LINEAR, _gl().LINEAR)
    t.anisotropy = anisotropy
    t.repeat_x = t.repeat_y = False
    return t


class _GpuCache(LRUCache):
    """GPU chunks by id(RenderChunk), least recently used first out past `gpu_bytes`; what it
    evicts waits in `evicted` until the frame that may still draw it has ended."""

    def __init__(self, gpu_bytes: int):
        super().__init__(maxsize=gpu_bytes, getsizeof=lambda g: g.nbytes)
        self.evicted: list[_GpuChunk] = []

    def popitem(self):
        key, g = super().popitem()
        self.evicted.append(g)
        return key, g

    def release_evicted(self) -> None:
        for g in self.evicted:
            g.release()
        self.evicted.clear()


class Renderer:
    """Draws RenderChunks. gpu_bytes: budget of the GPU chunk cache; near / far: clip planes (m);
    ground_error_px: the most a ground grid may depart from a chunk's own ground, in pixels, where
    it stands in for a far tile; tree_error_px: the same for a far tree's crown-only model (0: never);
    lit=False: the scene target holds each surface's own colour (its texture texel, no light, no
    haze, no ground detail): views to bake textures from (`bake`)."""

    def __init__(self, gpu_bytes: int = 768 << 20, near: float = 0.5, far: float = 40000.0, sky: Sky = Sky(),
                 ground_error_px: float = GROUND_ERROR_PX, tree_error_px: float = TREE_ERROR_PX, lit: bool = True):
        self.near, self.far, self.sky, self.gpu_bytes, self.lit = near, far, sky, gpu_bytes, lit
        self.ground_error_px, self.tree_error_px = ground_error_px, tree_error_px
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._cache = _GpuCache(gpu_bytes)
        self._targets: dict[tuple[int, int], tuple] = {}
        self.triangles_drawn = 0  # in the last frame, after culling
        try:
            self._thread.submit(self._setup).result()
        except BaseException:
            self._thread.shutdown(wait=False)
            raise

    def _setup(self) -> None:
        ctx = self.ctx = create_context()
        self.name = renderer_name(ctx)
        self.anisotropy = anisotropy_for(self.name)
        self.surface = ctx.program(vertex_shader=shaders.SURFACE_VERTEX, fragment_shader=shaders.SURFACE_FRAGMENT)
        self.tree_program = ctx.program(vertex_shader=shaders.TREE_VERTEX, fragment_shader=shaders.SURFACE_FRAGMENT)
        self._tree_locations = tuple((self.tree_program[name].location, cls, fmt, offset)
                                     for name, cls, fmt, offset in TREE_ATTRIBUTES)
        self.models = _upload_models(ctx)
        self.sky_program = ctx.program(vertex_shader=shaders.SKY_VERTEX, fragment_shader=shaders.SKY_FRAGMENT)
        tri = np.array([-1, -1, 3, -1, -1, 3], np.float32)
        self._sky_vbo = ctx.buffer(tri.tobytes())
        self.sky_vao = ctx.vertex_array(self.sky_program, [(self._sky_vbo, "2f", "in_vert")])
        for p in (self.surface, self.tree_program):
            p["u_albedo"].value = 0
            p["u_classes"].value = 1
            p["u_building_class"].value = CLASS_IDS["building"]
            p["u_rock_class"].value = CLASS_IDS["rock"]
            p["u_tree_class"].value = CLASS_IDS["tree"]
            if "u_water_class" in p:
                p["u_water_class"].value = CLASS_IDS["water"]
            p["u_colour"].value = (0.0, 0.0, 0.0, 0.0)  # alpha 0: textured
            p["u_unlit"].value = 0 if self.lit else 1
        self.tree_program["u_kind"].value = KIND_CODES["tree"]
        self.tree_program["u_origin_mod"].value = (0.0, 0.0)  # ground detail only: trees never use it
        for p in (self.surface, self.tree_program, self.sky_program):
            for name, value in (("u_sun", tuple(self.sky.sun)), ("u_zenith", self.sky.zenith),
                                ("u_horizon", self.sky.horizon), ("u_visibility", self.sky.visibility)):
                if name in p:  # the compiler drops uniforms a program does not use
                    p[name].value = value
        self.sky_program["u_no_hit"].value = NO_HIT_DEPTH

    def close(self) -> None:
        def release():
            for g in self._cache.values():
                g.release()
            self._cache.clear()
            self._cache.release_evicted()
            for parts in self.models.values():
                for p in parts:
                    p.vbo.release(), p.ibo.release()
            for t in self._targets.values():
                for a in t:
                    a.release()
            self.ctx.release()
        self._thread.submit(release).result()
        self._thread.shutdown(wait=True)

    def render(self, chunks: Iterable[RenderChunk], pose: Pose, intr: Intrinsics,
               outputs: Iterable[str] = OUTPUTS) -> Frame:
        """Draw `chunks` (non-overlapping: the caller's LOD selection) seen from `pose`, and wait."""
        return self.submit(chunks, pose, intr, outputs).result()

    def submit(self, chunks: Iterable[RenderChunk], pose: Pose, intr: Intrinsics,
               outputs: Iterable[str] = OUTPUTS) -> Future:
        """`render` on the GL thread; the future's result is the Frame."""
        outputs = set(outputs)
        unknown = outputs - set(OUTPUTS)
        if unknown:
            raise RenderError(f"unknown render outputs {sorted(unknown)}; expected some of {', '.join(OUTPUTS)}")
        return self._thread.submit(self._render, list(chunks), pose, intr, outputs)

    # ------------------------------------------------------------------ GL thread
    def _gpu(self, chunk: RenderChunk) -> _GpuChunk:
        g = self._cache.get(id(chunk))  # marks it recently used
        if g is not None and g.chunk is chunk:
            return g
        if g is not None:  # the id of a chunk since freed, now another's
            self._cache.evicted.append(self._cache.pop(id(chunk)))
        g = _GpuChunk(self.ctx, self.surface, self.tree_program, self.models, chunk, self.anisotropy)
        try:
            self._cache[id(chunk)] = g
        except ValueError:  # larger than the whole budget: drawn this frame, then released
            self._cache.evicted.append(g)
        return g

    def _target(self, w: int, h: int):
        t = self._targets.get((w, h))
        if t is None:
            ctx = self.ctx
            colour = ctx.renderbuffer((w, h), 4)
            depth = ctx.renderbuffer((w, h), 1, dtype="f4")
            ids = ctx.renderbuffer((w, h), 2, dtype="u4")
            normal = ctx.renderbuffer((w, h), 4)
            zbuf = ctx.depth_renderbuffer((w, h))
            fbo = ctx.framebuffer(color_attachments=[colour, depth, ids, normal], depth_attachment=zbuf)
            t = self._targets[(w, h)] = (fbo, colour, depth, ids, normal, zbuf)
        return t

    def _render(self, chunks: list[RenderChunk], pose: Pose, intr: Intrinsics, outputs: set[str]) -> Frame:
        gl = _gl()
        ctx = self.ctx
        w, h = intr.width, intr.height
        fbo = self._target(w, h)[0]
        fbo.use()
        ctx.viewport = (0, 0, w, h)
        rot = view_rotation(pose)
        self.sky_program["u_eye_to_enu"].write(rot.T.astype("f4").tobytes(order="F"))
        self.sky_program["u_tan_half"].value = (w / 2.0 / intr.focal, h / 2.0 / intr.focal)
        fbo.clear(depth=1.0)
        ctx.enable(gl.DEPTH_TEST | gl.CULL_FACE)
        ctx.depth_func = "<"
        ctx.front_face = "ccw"
        view4 = np.eye(4)
        view4[:3, :3] = rot
        view_proj = projection(intr, self.near, self.far) @ view4
        for p in (self.surface, self.tree_program):
            p["u_view_proj"].write(view_proj.astype("f4").tobytes(order="F"))
            p["u_forward"].value = tuple(float(c) for c in pose.forward)
        cam = np.asarray(pose.position, np.float64)
        planes = frustum_planes(pose, intr, self.near)
        self.triangles_drawn = 0
        drawn = []
        for chunk in chunks:
            g = self._gpu(chunk)
            offset = np.array([chunk.origin[0] - cam[0], chunk.origin[1] - cam[1], -cam[2]])
            nearest = np.clip(0.0, g.box[0] + offset, g.box[1] + offset)
            drawn.append((float(np.dot(nearest, nearest)), len(drawn), g, offset))
        drawn.sort(key=lambda d: d[:2])  # near to far: the depth test spares shading
        for _, _, g, offset in drawn:
            seen = boxes_in_frustum(g.boxes, offset, planes)
            self.surface["u_offset"].value = tuple(float(c) for c in offset)
            self.surface["u_origin_mod"].value = tuple(float(o % 1024.0) for o in g.chunk.origin)
            g.classes.use(location=1)
            for d, span in g.own:
                self._draw_surface(g, d, runs(seen[span], d.starts, d.counts))
            if g.grid is not None:  # the ground surfaces of a chunk with ground grids (else among g.own)
                self._draw_ground(g, seen[g.ground_span], offset, intr.focal)
            self.tree_program["u_offset"].value = tuple(float(c) for c in offset)
            for t, span in zip(g.trees, g.tree_spans):  # the chunk's trees with it: near to far holds
                # far: where the crown-only model's outline departs from the model's by under tree_error_px
                far = FAR_DEPARTURE * t.radius * intr.focal < self.tree_error_px * nearest_distances(t.boxes, offset)
                for model, tiles in ((t.near, seen[span] & ~far), (t.far, seen[span] & far)):
                    for first, count in runs(tiles, t.starts, t.counts):
                        self._draw_trees(t, model, first, count)
        ctx.disable(gl.CULL_FACE)  # the sky last, at the far plane: shaded only where no surface is
        ctx.depth_func = "<="
        self.sky_vao.render(gl.TRIANGLES)
        self._cache.release_evicted()  # after the frame: it may have drawn some of them
        return self._read(fbo, intr, pose, outputs)

    def _draw_surface(self, g: _GpuChunk, d: _Draw, ranges: list[tuple[int, int]]) -> None:
        if not ranges:
            return
        g.textures[d.texture].use(location=0)
        self.surface["u_kind"].value = d.kind
        for first, count in ranges:
            d.vao.render(_gl().TRIANGLES, vertices=3 * count, first=3 * first)
            self.triangles_drawn += count

    def _draw_ground(self, g: _GpuChunk, visible: np.ndarray, offset: np.ndarray, focal: float) -> None:
        """The ground's visible tiles: each far one as the coarsest ground grid within ground_error_px
        (where that halves its triangles), the others as the chunk's own triangles; a grid tile next
        to one of those also draws its own triangles that overhang into it, so no part of the square
        is left uncovered."""
        grid = g.grid.grid
        stride = choose_strides(grid, offset, focal, self.ground_error_px) if self.ground_error_px > 0 else \
            np.full(len(grid.boxes), -1)
        tiles = np.arange(len(stride))
        fewer = (stride >= 0) & (grid.counts[stride, tiles] < GROUND_GAIN * g.ground_triangles)
        own = visible & ~fewer
        far = visible & fewer
        overhang = far & next_to(own, CULL_TILES)
        for d in g.ground_draws:
            starts = np.concatenate([d.starts[own], (d.starts + d.inside)[overhang]])
            counts = np.concatenate([d.counts[own], (d.counts - d.inside)[overhang]])
            order = np.argsort(starts, kind="stable")
            self._draw_surface(g, d, merged_ranges(starts[order], counts[order]))
        if far.any():
            tiles = np.flatnonzero(far)
            starts, counts = grid.starts[stride[tiles], tiles], grid.counts[stride[tiles], tiles]
            order = np.argsort(starts, kind="stable")
            g.textures["ortho"].use(location=0)
            self.surface["u_kind"].value = KIND_CODES["ground"]
            self.ctx.disable(_gl().CULL_FACE)  # skirts face both ways
            for first, count in merged_ranges(starts[order], counts[order]):
                g.grid.vao.render(_gl().TRIANGLES, vertices=3 * count, first=3 * first)
                self.triangles_drawn += count
            self.ctx.enable(_gl().CULL_FACE)

    def _draw_trees(self, t: _TreeDraw, model: _TreeModel, first: int, count: int) -> None:
        """Instances first .. first + count of a chunk's trees as `model`: each part drawn instanced,
        its per-instance attributes bound from the instance buffer at `first`."""
        for vao, colour in zip(model.vaos, model.colours):
            for location, cls, fmt, offset in self._tree_locations:
                vao.bind(location, cls, t.buffer, fmt, offset=first * TREE.itemsize + offset, stride=TREE.itemsize,
                         divisor=1)
            self.tree_program["u_colour"].value = colour
            vao.render(_gl().TRIANGLES, instances=count)
        self.triangles_drawn += count * model.triangles

    def _read(self, fbo, intr: Intrinsics, pose: Pose, outputs: set[str]) -> Frame:
        w, h = intr.width, intr.height

        def grab(attachment: int, components: int, dtype: str) -> np.ndarray:
            raw = fbo.read(components=components, attachment=attachment, dtype=dtype, alignment=1)
            numpy_dtype = {"f1": np.uint8, "f4": np.float32, "u4": np.uint32}[dtype]
            return np.frombuffer(raw, numpy_dtype).reshape(h, w, components)[::-1]  # GL rows run bottom-up

        scene = np.ascontiguousarray(grab(0, 3, "f1")) if "scene" in outputs else None
        depth = np.ascontiguousarray(grab(1, 1, "f4")[..., 0]) if "depth" in outputs else None
        classes = instances = normals = None
        if "ids" in outputs:
            ids = grab(2, 2, "u4")
            classes = np.ascontiguousarray(ids[..., 0]).astype(np.uint8)
            instances = np.ascontiguousarray(ids[..., 1])
        if "normals" in outputs:
            normals = np.ascontiguousarray(grab(3, 3, "f1"))
        return Frame(intr, pose, scene, depth, classes, instances, normals)

