"""A `generate` output folder is a verified chunk store: the chunk service (serve --cache, sim
--cache) serves its chunks from disk without generating them, generates only what it lacks and
adds it there, and regenerates a chunk whose file was damaged after `generate` wrote it."""

import asyncio
import json
import subprocess
import sys

from worldstream.core import ChunkKey, WorldSpec, keys_in_radius
from worldstream.exporters.store import HASHES
from worldstream.unreal_bridge.chunk_service import ChunkService


def test_a_generate_output_folder_serves_as_the_service_cache(tmp_path):
    out = tmp_path / "world"
    r = subprocess.run([sys.executable, "-m", "worldstream", "generate", "--seed", "4", "--radius", "200", "--levels",
                        "6:6", "--format", "glb,sidecars", "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    spec = WorldSpec(seed=4)
    made = keys_in_radius(spec, 0.0, 0.0, 200.0, 6)
    folder = out / "chunks" / made[0].path()
    assert set(json.loads((folder / HASHES).read_text())) == {p.name for p in folder.iterdir()} - {HASHES}
    (folder / "mesh.glb").write_bytes((folder / "mesh.glb").read_bytes()[:-7])  # damaged after generate wrote it
    other = ChunkKey(6, 40, 40)

    async def scenario(service):
        for key in made:
            await service.get(key, ("glb", "sidecars"))
        await service.get(other, ("glb",))

    service = ChunkService(spec, cache_dir=out, workers=1)
    try:
        asyncio.run(scenario(service))
        stats = service.stats
    finally:
        service.close()
    assert stats.disk_hits == len(made) - 1 and stats.corrupt == 1 and stats.generated == 2  # the damaged one, the new one
    assert (out / "chunks" / other.path() / "mesh.glb").exists()  # added to the store
