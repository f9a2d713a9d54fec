"""Test helper: serve a tileset (files, or tiles generated on demand) on loopback and load it in
headless Chromium with three.js + 3d-tiles-renderer (tests/js/tileset_check.html)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--mute-audio"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def node_modules_ready() -> bool:
    return (REPO / "node_modules" / "3d-tiles-renderer").is_dir() and (REPO / "node_modules" / "three").is_dir()


class _Handler(BaseHTTPRequestHandler):
    routes: dict  # prefix -> callable(path) -> (bytes, content type) or None
    result: dict
    done: threading.Event
    requests: list
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if self.path == "/result":
            self.result.update(json.loads(body))
            self.done.set()
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.requests.append(path)
        for prefix, fn in self.routes.items():
            if path.startswith(prefix):
                try:
                    with self.lock:  # one request handler at a time: generation is CPU-bound
                        found = fn(path[len(prefix):])
                except Exception as exc:  # the page must see a clean 500, not a dropped socket
                    self.send_error(500, str(exc)[:200])
                    return
                if found is None:
                    break
                data, ctype = found
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the page moved on (the client cancels tiles it no longer needs)
                return
        self.send_error(404)


CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
                 ".glb": "model/gltf-binary", ".subtree": "application/octet-stream", ".png": "image/png"}


def files_under(root: Path):
    root = root.resolve()

    def serve(rel: str):
        p = (root / rel).resolve()
        if root not in p.parents and p != root or not p.is_file():
            return None
        return p.read_bytes(), CONTENT_TYPES.get(p.suffix, "application/octet-stream")

    return serve


def load_in_browser(routes: dict, tileset_url: str, cam, target, up, seconds: float = 60, timeout: float = 180,
                    siblings: bool = True) -> dict:
    """Serve `routes` (prefix -> handler) plus the page and node_modules on 127.0.0.1, open the
    page in headless Chromium and return its report (with "requests": every GET path)."""
    result: dict = {}
    done = threading.Event()
    requests: list = []
    all_routes = {"/node_modules/": files_under(REPO / "node_modules"), "/page/": files_under(REPO / "tests" / "js")}
    all_routes.update(routes)
    handler = type("Handler", (_Handler,), {"routes": all_routes, "result": result, "done": done, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    fmt = lambda v: ",".join(f"{float(c):.3f}" for c in v)  # noqa: E731
    url = (f"http://127.0.0.1:{port}/page/tileset_check.html?tileset=http://127.0.0.1:{port}{tileset_url}"
           f"&cam={fmt(cam)}&target={fmt(target)}&up={fmt(up)}&seconds={seconds}&siblings={int(siblings)}")
    profile = tempfile.mkdtemp(prefix="ws-chromium-")
    proc = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        done.wait(timeout)
    finally:
        proc.kill()
        stderr = proc.communicate()[1].decode(errors="replace")
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    if not done.is_set():
        raise AssertionError(f"the page reported nothing within {timeout} s; chromium said:\n{stderr[-3000:]}")
    result["requests"] = requests
    return result
