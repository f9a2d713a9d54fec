"""The chunk store on an object store through fsspec, against a real S3-compatible server on
loopback (moto's, on a free port) with s3fs: `generate --out s3://...` writes the same bytes as a
local run (also with --ray), a rerun redoes a chunk left without its sha256.json or damaged, the
chunk service (serve/sim --cache s3://...) serves the stored bytes and generates only what is
missing, and a bad URL, a missing bucket or missing credentials is one clear line."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'worldstream[s3]'; install.sh does)")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (install.sh installs it)")

from worldstream.cli import main  # noqa: E402
from worldstream.core import ChunkKey, WorldSpec, keys_in_radius  # noqa: E402
from worldstream.exporters import store as store_mod  # noqa: E402
from worldstream.unreal_bridge.chunk_service import ChunkService  # noqa: E402

SEED, RADIUS, LEVEL = 3, 150.0, 6
REGION = ["--seed", str(SEED), "--radius", str(RADIUS), "--levels", f"{LEVEL}:{LEVEL}", "--format", "glb,sidecars",
          "--quiet"]
BUCKET = "worlds"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """Environment variables that point fsspec/s3fs at a moto S3 server on 127.0.0.1 with a bucket."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines in the test output
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    sigterm = signal.getsignal(signal.SIGTERM)  # generate, run in this process by main(), sets its own
    os.environ.update(env)
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        store_mod._open_store.cache_clear()
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        store_mod._open_store.cache_clear()
        signal.signal(signal.SIGTERM, sigterm)
        server.stop()


@pytest.fixture(scope="module")
def local_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "world"
    assert main(["generate", *REGION, "--out", str(out)]) == 0
    return out


def local_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def s3_tree(prefix: str) -> dict[str, str]:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    root = f"{BUCKET}/{prefix}"
    return {p[len(root) + 1:]: sha(fs.cat_file(p)) for p in sorted(fs.find(root))}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_generate_to_s3_writes_the_local_bytes_and_a_rerun_repairs_partial_chunks(s3, local_world, capsys):
    assert main(["generate", *REGION, "--out", f"s3://{BUCKET}/gen"]) == 0
    expected = local_tree(local_world)
    assert len(expected) > 20 and s3_tree("gen") == expected  # every object, byte for byte
    import s3fs

    fs = s3fs.S3FileSystem()
    chunks = sorted({k.rsplit("/", 1)[0] for k in expected if k.startswith("chunks/")})
    fs.rm_file(f"{BUCKET}/gen/{chunks[0]}/sha256.json")  # its files were written, the run died before the hashes
    fs.pipe_file(f"{BUCKET}/gen/{chunks[1]}/mesh.glb", b"glTF damaged")  # damaged after it was written
    capsys.readouterr()
    assert main(["generate", *REGION, "--out", f"s3://{BUCKET}/gen"]) == 0
    err = capsys.readouterr().err
    assert f"{len(chunks) - 2} already done" in err and "wrote 2 chunks" in err
    assert s3_tree("gen") == expected


def test_ray_generate_to_s3_writes_the_local_bytes(s3, local_world):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'worldstream[ray]')")
    r = subprocess.run([sys.executable, "-m", "worldstream", "generate", *REGION, "--out", f"s3://{BUCKET}/ray",
                        "--ray", "--workers", "2"], capture_output=True, text=True, timeout=300, env={**os.environ, **s3})
    assert r.returncode == 0, r.stderr
    assert s3_tree("ray") == local_tree(local_world)


def test_the_chunk_service_serves_the_s3_store_and_generates_only_what_is_missing(s3, local_world):
    assert main(["generate", *REGION, "--out", f"s3://{BUCKET}/served"]) == 0
    spec = WorldSpec(seed=SEED)
    made = keys_in_radius(spec, 0.0, 0.0, RADIUS, LEVEL)
    other = ChunkKey(LEVEL, 30, 30)

    async def scenario(service):
        got = [await service.get(k, ("glb", "sidecars")) for k in made]
        await service.get(other, ("glb",))
        return got

    service = ChunkService(spec, cache_dir=f"s3://{BUCKET}/served", workers=1)
    try:
        served = asyncio.run(scenario(service))
        stats = service.stats
    finally:
        service.close()
    assert stats.disk_hits == len(made) and stats.generated == 1 and stats.corrupt == 0
    for key, files in zip(made, served):  # the stored bytes, as generate wrote them
        assert all(sha(data) == sha((local_world / "chunks" / key.path() / n).read_bytes()) for n, data in files.items())
    tree = s3_tree("served")
    assert f"chunks/{other.path()}/mesh.glb" in tree and f"chunks/{other.path()}/sha256.json" in tree  # added


@pytest.mark.parametrize("url, expected", [
    ("nosuchproto://bucket/x", "not a store URL fsspec knows"),
    ("s3://no-such-bucket/x", "no such bucket"),
    (f"s3://{BUCKET}/nocreds", "no credentials"),
])
def test_a_bad_url_a_missing_bucket_or_no_credentials_is_one_clear_line(s3, monkeypatch, capsys, request, url, expected):
    import s3fs

    if expected == "no credentials":
        request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)  # no credential-less client outlives the test
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(k)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        s3fs.S3FileSystem.clear_instance_cache()
    store_mod._open_store.cache_clear()
    assert main(["generate", *REGION, "--out", url]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0 and "Traceback" not in err, err


def test_serve_with_a_bad_cache_url_says_so_in_one_line_before_any_listening_banner(capsys):
    store_mod._open_store.cache_clear()
    assert main(["serve", "--seed", "7", "--port", "0", "--cache", "nosuchproto://bucket/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a store URL fsspec knows" in err and err.count("\n") == 0 and "Traceback" not in err, err
    assert "ws://" not in err  # the banner says the server listens: it never did
