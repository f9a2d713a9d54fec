"""The registry of export formats: name -> pure function (chunk, spec, options) -> {file name: bytes}.

- sidecars: height.tif, dem.tif, normal.png, semantic.png, instances.png, ortho.png, annotations.json,
  and a GDAL side file (NAME.png.aux.xml: projection and geotransform) per PNG layer
- glb: mesh.glb (LOD chunk mesh, textures, EXT_mesh_features + EXT_structural_metadata) and
  tile.json (placement, bounds, measured geometric error)
- tiles: the glb files per chunk; `tileset.json` over all chunks is written once at the end
  (exporters.tiles.explicit_tileset)

Importing this module imports no exporter (nor torch): the streaming server names the files and
hands the jobs to its workers, and only the workers import what makes the bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..core.errors import WorldstreamError
from ..core.spec import WorldSpec
from .mesh_options import MeshOptions

if TYPE_CHECKING:
    from ..core.chunk import Chunk

Exporter = Callable[["Chunk", WorldSpec, MeshOptions], dict[str, bytes]]

SIDECAR_FILES = ("height.tif", "dem.tif", "normal.png", "semantic.png", "instances.png", "ortho.png",
                 "annotations.json", "normal.png.aux.xml", "semantic.png.aux.xml", "instances.png.aux.xml",
                 "ortho.png.aux.xml")
GLB_FILES = ("mesh.glb", "tile.json")


def _glb(chunk: Chunk, spec: WorldSpec, options: MeshOptions) -> dict[str, bytes]:
    from .chunk_glb import export_glb
    from .chunk_mesh import chunk_mesh

    return export_glb(chunk, spec, chunk_mesh(chunk, spec, options), compress=options.compress)


def _sidecars(chunk: Chunk, spec: WorldSpec, options: MeshOptions) -> dict[str, bytes]:
    from .sidecars import chunk_sidecars

    return chunk_sidecars(chunk, spec)


FORMATS: dict[str, tuple[Exporter, tuple[str, ...]]] = {
    "sidecars": (_sidecars, SIDECAR_FILES),
    "glb": (_glb, GLB_FILES),
    "tiles": (_glb, GLB_FILES),
}


def parse_formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if not names or unknown:
        raise WorldstreamError(f"unknown export format(s) {unknown or text!r}; expected a comma-separated "
                               f"list of {', '.join(FORMATS)}")
    return names


def expected_files(formats: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for name in formats for f in FORMATS[name][1]))


def export_chunk(chunk: Chunk, spec: WorldSpec, formats: tuple[str, ...],
                 options: MeshOptions = MeshOptions()) -> dict[str, bytes]:
    """All files of the requested formats for one chunk (each exporter runs once)."""
    files: dict[str, bytes] = {}
    done = set()
    for name in formats:
        fn = FORMATS[name][0]
        if fn in done:
            continue
        done.add(fn)
        files.update(fn(chunk, spec, options))
    return files


_WORKER_WORLD = None
_WARMED_FOR: str | None = None  # the spec whose first calls this process has made (warm_worker)


def export_key(spec_json: str, key_path: str, formats: tuple[str, ...],
               options: MeshOptions = MeshOptions()) -> dict[str, bytes]:
    """Worker entry point (process pools): the files of one chunk, from picklable arguments; each
    process keeps one World for its spec and generates on one torch thread."""
    return export_key_with(spec_json, key_path, formats, options)[0]


def export_key_with(spec_json: str, key_path: str, formats: tuple[str, ...], options: MeshOptions = MeshOptions(),
                    extract: Callable[[Chunk], object] | None = None) -> tuple[dict[str, bytes], object]:
    """export_key's files, and extract(chunk) (None without `extract`): a worker hands over what a
    caller would otherwise decode back from the files (a picklable top-level function)."""
    from ..core.keys import ChunkKey
    from ..core.workers import settle_heap

    world = _worker_world(spec_json)
    try:
        chunk = world.chunk(ChunkKey.parse(key_path))
        return export_chunk(chunk, world.spec, formats, options), (extract(chunk) if extract else None)
    finally:
        chunk = None
        settle_heap()  # a pool worker keeps little more than it needs between jobs


def _worker_world(spec_json: str):
    """This process's World for `spec_json`, built once (one torch thread, as a worker runs)."""
    global _WORKER_WORLD
    import torch

    from ..core.spec import WorldSpec
    from ..core.world import World

    torch.set_num_threads(1)
    spec = WorldSpec.from_json(spec_json)
    if _WORKER_WORLD is None or _WORKER_WORLD.spec != spec:
        _WORKER_WORLD = World(spec, cache_chunks=0)
    return _WORKER_WORLD


def warm_worker(spec_json: str) -> int:
    """Make this worker process ready to export `spec_json`'s chunks (torch and the exporters
    imported and run once, its World built, as `export_key` keeps it); returns the process id, so a
    caller can tell when every worker of a pool is warm."""
    import gc
    import os

    from ..core.workers import settle_heap

    global _WARMED_FOR
    world = _worker_world(spec_json)
    if _WARMED_FOR != spec_json:  # a pool warm-up may hand one process several rounds (core.workers.warm_up)
        _first_calls(world.spec)
        settle_heap()  # (a process's first call trims all and records the size it rests at)
        # the 175k objects of the imports and the World live as long as the process: out of the
        # collector's sight, a full collection no longer walks them (65 ms each, every few chunks)
        gc.freeze()
        _WARMED_FOR = spec_json
    return os.getpid()


def _first_calls(spec: WorldSpec) -> None:
    """Generate and export the coarsest and the finest chunk of a 16-pixel copy of `spec`'s world:
    a process's first call of each torch kernel, exporter and image library costs about a second in
    all (a level-0 chunk took 2.7 s of CPU as a worker's first job, 1.3-1.6 s as its second), which
    would otherwise delay the first client's first chunks. Procedural worlds only: a learned
    generator's first chunk runs its models, which a 16-pixel chunk may not fit."""
    from dataclasses import replace

    from ..core.keys import ChunkKey
    from ..core.world import World

    if spec.generator != "procedural":
        return
    tiny = World(replace(spec, chunk_size=16), cache_chunks=0)
    for key in (ChunkKey(0, 0, 0), ChunkKey(spec.levels - 1, 0, 0)):
        export_chunk(tiny.chunk(key), tiny.spec, ("glb", "sidecars"), MeshOptions())
