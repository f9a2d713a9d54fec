#!/usr/bin/env bash
# Install worldstream (editable) with its test tools, without ever pulling CUDA wheels:
# torch is installed first as the CPU build 2.13.0 unless some torch is already importable, and
# any installed torch satisfies the package's loose requirement. pip also compiles the core's C kernels
# (setup.py: core/kernels.c) where a C compiler is found; without one the same results come from torch.
# Then the official airsim client, Debian's EGL / Mesa for the renderer, the JavaScript tools the tests use (npm: Khronos glTF validator,
# three.js, 3d-tiles-renderer), Debian's chromium for the headless-browser checks and Debian's
# websocketpp / Asio headers for the C++ core's live test, where npm / apt-get are available; tests
# that need them skip with a message saying what is missing.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test,ray,s3,compress]"  # ray: generate --ray; s3: s3:// stores; compress: --compress (optional for users, tested here)
# The official AirSim client (used by the adapter and the simulator tests). airsim 1.8.1's setup.py
# imports msgpackrpc, which rpc-msgpack provides on msgpack >= 1 (msgpack-rpc-python pins msgpack < 1).
if ! "$PY" -c "import airsim" 2>/dev/null; then
  "$PY" -m pip install -q "rpc-msgpack>=0.6" numpy
  "$PY" -m pip install -q --no-deps --no-build-isolation "airsim==1.8.1"
fi
if command -v npm >/dev/null 2>&1; then
  npm install --no-audit --no-fund --loglevel=error >/dev/null \
    || echo "install.sh: npm install failed: glTF validation and browser tests will be skipped" >&2
else
  echo "install.sh: npm not found: glTF validation and browser tests will be skipped" >&2
fi
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
      || echo "install.sh: could not install chromium: browser tests will be skipped" >&2
  else
    echo "install.sh: chromium missing and apt-get unavailable (or not root): browser tests will be skipped" >&2
  fi
fi
# The renderer's headless OpenGL: EGL with Mesa (llvmpipe on a CPU); NVIDIA's driver brings its own EGL.
if ! ldconfig -p 2>/dev/null | grep -q "libEGL_mesa.so" || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 >/dev/null 2>&1; }) \
      || echo "install.sh: could not install the EGL/Mesa packages: rendering (sim images, worldstream render) will fail" >&2
  else
    echo "install.sh: EGL/Mesa missing and apt-get unavailable (or not root): install libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1" >&2
  fi
fi
# The C++ core's live test (tests/unreal_bridge/test_cpp_core.py): websocketpp over standalone Asio,
# Debian's header-only packages (without their recommends, which pull in all of Boost).
if [ ! -f /usr/include/websocketpp/client.hpp ] || [ ! -f /usr/include/asio.hpp ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q --no-install-recommends libwebsocketpp-dev libasio-dev >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends libwebsocketpp-dev libasio-dev >/dev/null 2>&1; }) \
      || echo "install.sh: could not install libwebsocketpp-dev libasio-dev: the C++ live flight test will be skipped" >&2
  else
    echo "install.sh: websocketpp/Asio headers missing and apt-get unavailable (or not root): install libwebsocketpp-dev libasio-dev, or the C++ live flight test is skipped" >&2
  fi
fi
"$PY" -c "import torch, worldstream; print(f'worldstream {worldstream.__version__} installed (torch {torch.__version__}, cuda {torch.cuda.is_available()})')"
