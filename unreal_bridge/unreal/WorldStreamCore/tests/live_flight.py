"""Run the C++ live flight (tools/live_flight.cpp) against a `worldstream serve` started here on
127.0.0.1 (a free port, a small world, the chunk cache in a temporary folder), then stop the server.

    python3 tests/live_flight.py BUILD/live_flight [SECONDS]
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time

# 16 km level-0 chunks of 64 px, 6 levels (finest 8 m/px): few chunks, quick to generate
WORLD = ["--seed", "7", "--base-resolution", "256", "--chunk-size", "64", "--num-levels", "6"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    binary, seconds = argv[1], (argv[2] if len(argv) > 2 else "30")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ws-live-") as cache:
        cmd = [sys.executable, "-c", "import sys; from worldstream.cli import main; sys.exit(main(sys.argv[1:]))",
               "serve", *WORLD, "--host", "127.0.0.1", "--port", str(port), "--cache", cache, "--workers", "2"]
        server = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        print("live_flight.py: the server did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
            return subprocess.run([binary, "127.0.0.1", str(port), seconds], timeout=140).returncode
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
