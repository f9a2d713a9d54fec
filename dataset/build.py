"""`worldstream dataset build`: scenes -> trajectories -> rendered frames -> facts -> QA -> files.

Layout of DIR (docs/dataset.md):
- build.json: the settings (written first; a rerun with other settings is refused);
- scenes/scene_NNNN/: one folder per scene, written whole or not at all (exporters.atomic.
  write_dir_atomic): scene.json (site, intrinsics, per frame the camera in world ENU and geodetic
  coordinates, land cover, every object in view with its annotation and visibility) and, per frame
  FF, fFF_rgb.jpg, fFF_depth.tif (float32 m along the optical axis, 65504 for sky), fFF_classes.png
  (uint8 class ids, core.biomes), fFF_instances.png (uint16 index into the frame's `instances`
  list, 0 none), fFF_normals.png (world ENU normals * 127.5 + 127.5);
- train.jsonl, val.jsonl, test.jsonl, card.json, README.md, examples.jpg: made from the scene
  folders by `assemble` (writer.py); dataset.json last, when everything is on disk.

An interrupted build resumes: finished scene folders are kept, leftovers of the one in progress
are removed, and the rest is built. Every random choice comes from generators seeded by (seed,
scene, frame), and every scene renders with a fresh chunk selection (its own height spans), so a
scene's files never depend on which scenes were built before it in the same process."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from cachetools import LRUCache
from PIL import Image

from ..core import frames as geo
from ..core.keys import ChunkKey
from ..core.settlements import Building
from ..core.spec import WorldSpec
from ..core.vegetation import Tree
from ..core.world import World
from ..exporters.atomic import remove_stale_temporaries, write_dir_atomic, write_file_atomic
from ..render.camera import Intrinsics, Pose
from ..render.images import png_bytes
from ..render.renderer import OUTPUTS, Frame, Renderer
from ..render.scene import RenderChunk
from ..render.view import WorldView
from .facts import FrameFacts, frame_facts, ground_samples, sample_points, slope_queries, slopes
from .objects import building_objects, corner_points, tree_objects
from .qa import frame_qa
from .scenes import DatasetError, Site, classify, pick_sites
from .trajectories import Ranges, Stop, poses, trajectory
from .visibility import sightings

SETTINGS_FILE = "build.json"
SCENES_DIR = "scenes"
FORMAT = "worldstream-dataset/1"
JPEG_QUALITY = 92
STORE_BYTES = 1 << 30  # decoded chunks shared between scenes


@dataclass(frozen=True)
class BuildSettings:
    """seed, scenes: the world seed and scene count; views: frames per scene; width, height,
    fov_deg: the camera; ranges: altitude, pitch, roll and scene radius of the trajectories;
    region_m, spacing_m: the square around the origin scene sites are picked in, and their least
    distance; centres: scene centres given by the user (empty: picked); horizon_m, max_sse: the
    chunk selection (as `worldstream render`, with a nearer horizon); spec: the world."""

    seed: int
    scenes: int
    views: int = 8
    width: int = 512
    height: int = 384
    fov_deg: float = 90.0
    ranges: Ranges = Ranges()
    region_m: float = 24000.0
    spacing_m: float = 500.0
    centres: tuple[tuple[float, float], ...] = ()
    horizon_m: float = 4000.0
    max_sse: float = 16.0
    spec: WorldSpec = field(default_factory=WorldSpec)

    def __post_init__(self) -> None:
        if self.scenes < 1 or self.views < 1:
            raise DatasetError(f"--scenes and --views must be at least 1, got {self.scenes} and {self.views}")
        if self.centres and len(self.centres) < self.scenes:
            raise DatasetError(f"--centers lists {len(self.centres)} centres, fewer than --scenes {self.scenes}")
        if self.spec.seed != self.seed:
            raise DatasetError(f"the world spec's seed {self.spec.seed} differs from --seed {self.seed}")
        Intrinsics(self.width, self.height, self.fov_deg)  # validates

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics(self.width, self.height, self.fov_deg)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = json.loads(self.spec.to_json())
        d["centres"] = [list(c) for c in self.centres]
        d["ranges"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["ranges"].items()}
        return {"format": FORMAT, **d}


class AnnotatedWorld(World):
    """A World that remembers every generated chunk's annotations (buildings, trees) by key (views
    generate chunks in worker threads: World's cache is thread-safe, and a dict's setdefault is
    atomic)."""

    def __init__(self, spec: WorldSpec, cache_chunks: int = 16):
        super().__init__(spec, cache_chunks=cache_chunks)
        self.annotations: dict[ChunkKey, tuple] = {}

    def chunk(self, key: ChunkKey):
        c = super().chunk(key)
        self.annotations.setdefault(key, (c.buildings, c.trees))
        return c


class SceneView(WorldView):
    """A WorldView for one scene: it learns height spans afresh (so its chunk selection does not
    depend on earlier scenes) but takes decoded chunks from a store shared by all scenes."""

    def __init__(self, world: World, renderer: Renderer, store: LRUCache, horizon_m: float, max_sse: float):
        super().__init__(world, renderer, max_sse=max_sse, horizon_m=horizon_m, memory_bytes=STORE_BYTES)
        self.store = store

    async def _load(self, key: ChunkKey) -> RenderChunk:
        rc = self.store.get(key)
        if rc is None:
            rc = await super()._load(key)
            try:
                self.store[key] = rc
            except ValueError:  # larger than the whole store
                pass
            return rc
        self.heights.learn(key, *rc.z_range())
        self._chunks[key] = rc
        return rc


def frame_annotations(world: AnnotatedWorld, keys: list[ChunkKey], ids: set[int]) -> tuple[list, list]:
    """(buildings, trees): the annotations of the instance ids present in a frame, from the chunks
    it drew; the finest level's annotation of an object wins (then the lowest key)."""
    found: dict[int, object] = {}
    for key in sorted(set(keys), key=lambda k: (-k.level, k.x, k.y)):
        buildings, trees = world.annotations.get(key, ((), ()))
        for a in (*buildings, *trees):
            if a.id in ids and a.id not in found:
                found[a.id] = a
    ordered = [found[i] for i in sorted(found)]
    return [a for a in ordered if isinstance(a, Building)], [a for a in ordered if isinstance(a, Tree)]


class HeightQueries:
    """World points whose bare-earth heights are wanted, gathered and answered in one
    `World.height_at` call (each call has a large fixed cost)."""

    def __init__(self) -> None:
        self._xs: list[np.ndarray] = []
        self._ys: list[np.ndarray] = []

    def add(self, x, y) -> slice:
        """Queue points; returns where their heights will lie in `answer`'s result."""
        start = sum(len(a) for a in self._xs)
        self._xs.append(np.asarray(x, np.float64).reshape(-1))
        self._ys.append(np.asarray(y, np.float64).reshape(-1))
        return slice(start, start + len(self._xs[-1]))

    def answer(self, world: World) -> np.ndarray:
        if not self._xs:
            return np.zeros(0)
        return np.asarray(world.height_at(np.concatenate(self._xs), np.concatenate(self._ys))[0], np.float64)


def _r(v, d: int = 6):
    """v (a number, or nested sequences / arrays of them) rounded to d decimals as plain lists and floats."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = float(v)
    return [_r(x, d) for x in v] if isinstance(v, (list, tuple, np.ndarray)) else round(float(v), d)


def camera_record(pose: Pose, stop: Stop, spec: WorldSpec) -> dict:
    """The camera of a frame in world ENU and geodetic coordinates. camera_to_world: 4x4 with
    OpenCV axes (x right, y down, z forward; K projects its camera coordinates); body_to_world:
    AirSim's FRD body axes (x forward, y right, z down)."""
    r = pose.rotation  # columns forward, right, down
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([r[:, 1], r[:, 2], r[:, 0]], axis=1)
    c2w[:3, 3] = pose.position
    frd = np.eye(4)
    frd[:3, :3] = r
    frd[:3, 3] = pose.position
    lat, lon, alt = geo.enu_to_geodetic(np.array(pose.position), spec.origin)
    o = spec.origin
    c2ecef = geo.enu_to_ecef_matrix(o.lat, o.lon, o.alt) @ c2w
    return {"position_enu": _r(pose.position, 4), "camera_to_world": _r(c2w, 9), "body_to_world": _r(frd, 9),
            "camera_to_ecef": _r(c2ecef, 6), "geodetic": {"lat": _r(lat, 9), "lon": _r(lon, 9), "alt": _r(alt, 4)},
            "yaw_deg": _r(stop.yaw % 360.0, 4), "pitch_deg": _r(stop.pitch, 4), "roll_deg": _r(stop.roll, 4)}


def _tiff(depth: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(depth, np.float32), compression="zlib")
    return buf.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def frame_files(stem: str, frame: Frame) -> tuple[dict[str, bytes], dict[str, str], list[int]]:
    """(files, {layer: file name}, instance ids in PNG index order) of one rendered frame."""
    ids = np.unique(frame.instances)
    ids = ids[ids != 0]
    if len(ids) >= 65535:
        raise DatasetError(f"{len(ids)} instances in one frame do not fit a 16-bit index image; use a smaller --size")
    index = np.searchsorted(ids, frame.instances) + 1
    index = np.where(frame.instances == 0, 0, index).astype(np.uint16)
    names = {"rgb": f"{stem}_rgb.jpg", "depth": f"{stem}_depth.tif", "classes": f"{stem}_classes.png",
             "instances": f"{stem}_instances.png", "normals": f"{stem}_normals.png"}
    files = {names["rgb"]: _jpeg(frame.scene), names["depth"]: _tiff(frame.depth_planar),
             names["classes"]: png_bytes(frame.classes), names["instances"]: png_bytes(index),
             names["normals"]: png_bytes(frame.normals)}
    return files, names, [int(i) for i in ids]


def facts_record(f: FrameFacts) -> dict:
    return {"agl_m": _r(f.agl, 3), "heading": f.heading, "terrain": f.terrain, "median_slope_deg": _r(f.median_slope, 3),
            "cover": {k: _r(v, 6) for k, v in f.cover.items()},
            "objects": [{"id": s.object.id, "kind": s.object.kind, "pixels": s.pixels,
                         "silhouette_px": _r(min(s.silhouette, 1e12), 2), "share": _r(min(s.share, 1e6), 4),
                         "box": list(s.box), "centre_uv": _r(s.centre_uv, 3), "distance_m": _r(s.distance, 3),
                         "visible": s.visible, "annotation": s.object.to_dict()} for s in f.sightings]}


async def build_scene(index: int, site: Site, settings: BuildSettings, world: AnnotatedWorld, renderer: Renderer,
                      store: LRUCache, timing: dict[str, float] | None = None) -> tuple[dict[str, bytes], int]:
    """The files of one scene folder, and its candidate question count. timing: seconds are added
    to its "chunks" (selecting and generating chunks), "render" (drawing and reading back) and
    "qa" (heights, facts, questions, encoding files) entries."""
    timing = {} if timing is None else timing
    clock = time.perf_counter
    intr = settings.intrinsics
    rng = np.random.default_rng([settings.seed, index, 1])
    stops = trajectory(rng, (site.x, site.y), settings.views, settings.ranges)
    xs, ys = np.array([s.x for s in stops]), np.array([s.y for s in stops])
    cams = poses(stops, lambda x, y: world.height_at(x, y)[1])
    view = SceneView(world, renderer, store, settings.horizon_m, settings.max_sse)
    files: dict[str, bytes] = {}
    queries = HeightQueries()
    under = queries.add(xs, ys)
    pending = []
    for k, pose in enumerate(cams):  # render every frame, gathering the heights they need
        t0 = clock()
        chunks = await view.chunks_for(pose, intr)
        t1 = clock()
        frame = await asyncio.wrap_future(renderer.submit(chunks, pose, intr, OUTPUTS))
        t2 = clock()
        timing["chunks"] = timing.get("chunks", 0.0) + t1 - t0
        timing["render"] = timing.get("render", 0.0) + t2 - t1
        blobs, names, ids = frame_files(f"f{k:02d}", frame)
        files.update(blobs)
        keys = [c.key for c in chunks if c.key is not None]
        buildings, trees = frame_annotations(world, keys, set(ids))
        corners = corner_points(buildings)
        uv, points = sample_points(frame.depth_planar, frame.classes, pose, intr)
        pending.append((frame, names, ids, keys, buildings, trees, queries.add(corners[:, 0], corners[:, 1]), uv,
                        points, queries.add(*slope_queries(points[:, 0], points[:, 1]))))
    t0 = clock()
    z = queries.answer(world)
    frames_doc, qa_doc = [], []
    for k, (stop, pose, (frame, names, ids, keys, buildings, trees, at_corners, uv, points, at_slopes)) in \
            enumerate(zip(stops, cams, pending)):
        objects = {o.id: o for o in (*building_objects(buildings, z[at_corners]), *tree_objects(trees))}
        seen = sightings(frame.instances, objects, pose, intr)
        samples = ground_samples(uv, points, slopes(z[at_slopes]))
        facts = frame_facts(k, pose, intr, (stop.yaw, stop.pitch, stop.roll), frame.classes, samples,
                            float(z[under][k]), seen)
        image = f"{SCENES_DIR}/scene_{index:04d}/{names['rgb']}"
        for j, q in enumerate(frame_qa(facts, np.random.default_rng([settings.seed, index, k, 2]))):
            qa_doc.append({"id": f"s{index:04d}_f{k:02d}_q{j:02d}", "scene": index, "frame": k, "image": image,
                           **q.to_dict()})
        frames_doc.append({"index": k, "files": names, "camera": camera_record(pose, stop, settings.spec),
                           "stop": {"x": _r(stop.x, 4), "y": _r(stop.y, 4), "agl": _r(stop.agl, 4)},
                           "instances": ids, "chunks": sorted(k_.path() for k_ in keys), **facts_record(facts)})
    i = settings.intrinsics
    doc = {"index": index, "site": site.to_dict(),
           "intrinsics": {"width": i.width, "height": i.height, "fov_deg": i.fov_deg, "K": _r(i.matrix(), 9)},
           "frames": frames_doc, "qa": qa_doc}
    files["scene.json"] = (json.dumps(doc, indent=1) + "\n").encode()
    timing["qa"] = timing.get("qa", 0.0) + clock() - t0
    return files, len(qa_doc)


def sites_for(settings: BuildSettings, world: World) -> list[Site]:
    if settings.centres:
        out = []
        for x, y in settings.centres[:settings.scenes]:
            label = classify(world, x, y) or ("flat", "waterside")
            out.append(Site(x, y, *label))
        return out
    return pick_sites(world, settings.seed, settings.scenes, settings.region_m, settings.spacing_m)


def check_settings(out: Path, settings: BuildSettings) -> None:
    """Write build.json, or check that the one there holds the same settings."""
    doc = settings.to_dict()
    path = out / SETTINGS_FILE
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(doc)):
            raise DatasetError(f"{out} holds a dataset built with other settings ({path}); use another --out, or "
                               f"the same arguments to resume it")
        return
    write_file_atomic(path, (json.dumps(doc, indent=1) + "\n").encode())


def scene_dir(out: Path, index: int) -> Path:
    return out / SCENES_DIR / f"scene_{index:04d}"


def build(settings: BuildSettings, out: Path | str, log=sys.stderr, stop_after: int | None = None) -> dict:
    """Build (or resume) the dataset in `out`; returns the dataset card (writer.card) plus "timing":
    scenes and frames built by this call, seconds in all and per stage. stop_after: build at most
    this many new scenes, then return {} without assembling if scenes are left."""
    from .writer import assemble

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, settings)
    (out / SCENES_DIR).mkdir(exist_ok=True)
    remove_stale_temporaries(out / SCENES_DIR)
    world = AnnotatedWorld(settings.spec)
    t0 = time.perf_counter()
    sites = sites_for(settings, world)
    print(f"dataset: {len(sites)} scene sites in {time.perf_counter() - t0:.1f} s", file=log)
    todo = [i for i in range(len(sites)) if not scene_dir(out, i).exists()]
    if stop_after is not None:
        todo = todo[:stop_after]
    renderer = Renderer() if todo else None
    store: LRUCache = LRUCache(maxsize=STORE_BYTES, getsizeof=lambda rc: rc.nbytes)
    timing = {"sites": time.perf_counter() - t0, "chunks": 0.0, "render": 0.0, "qa": 0.0, "write": 0.0}

    async def run() -> None:
        for n, i in enumerate(todo):
            t = time.perf_counter()
            files, count = await build_scene(i, sites[i], settings, world, renderer, store, timing)
            t1 = time.perf_counter()
            write_dir_atomic(scene_dir(out, i), files)
            timing["write"] += time.perf_counter() - t1
            print(f"dataset: scene {i} ({sites[i].cover}, {sites[i].relief}): {settings.views} frames, {count} "
                  f"candidate questions in {time.perf_counter() - t:.1f} s ({n + 1}/{len(todo)} this run)", file=log)

    try:
        asyncio.run(run())
    finally:
        if renderer is not None:
            renderer.close()
    if stop_after is not None and any(not scene_dir(out, i).exists() for i in range(len(sites))):
        return {}
    t1 = time.perf_counter()
    summary = assemble(out, settings, len(sites))
    timing["assemble"] = time.perf_counter() - t1
    summary["timing"] = {"scenes_built": len(todo), "frames_built": len(todo) * settings.views,
                         "seconds": round(time.perf_counter() - t0, 3), **{k: round(v, 3) for k, v in timing.items()}}
    return summary
