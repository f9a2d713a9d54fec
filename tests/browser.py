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


def _devtools_call(ws, method: str, params: dict | None = None, _ids=iter(range(1, 1 << 30))) -> dict:
    msg_id = next(_ids)
    ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
    while True:
        reply = json.loads(ws.recv())
        if reply.get("id") == msg_id:
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]


def open_page(url: str, ready_js: str, state_js: str, timeout: float = 180, size=(1280, 720)) -> tuple[dict, bytes]:
    """Open `url` in headless Chromium and drive it over the DevTools protocol: poll the JS
    expression `ready_js` until true (or timeout), then return (the JSON value of `state_js`,
    a PNG screenshot)."""
    import base64
    import time
    import urllib.request

    from websockets.sync.client import connect

    profile = Path(tempfile.mkdtemp(prefix="ws-chromium-"))
    proc = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "--remote-debugging-address=127.0.0.1", f"--window-size={size[0]},{size[1]}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        port_file = profile / "DevToolsActivePort"
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=20) as ws:
            evaluate = lambda expr: _devtools_call(ws, "Runtime.evaluate", {"expression": expr, "returnByValue": True})["result"].get("value")  # noqa: E731,E501
            deadline = time.monotonic() + timeout
            while not evaluate(ready_js):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            state = json.loads(evaluate(f"JSON.stringify({state_js})") or "null")
            png = base64.b64decode(_devtools_call(ws, "Page.captureScreenshot", {"format": "png"})["data"])
        return state, png
    finally:
        proc.kill()
        proc.communicate()
        shutil.rmtree(profile, ignore_errors=True)
