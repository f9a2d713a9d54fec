#!/usr/bin/env bash
# Install worldstream (editable) with its test tools, without ever pulling CUDA wheels:
# torch is installed first as the CPU build 2.13.0 unless some torch is already importable, and
# any installed torch satisfies the package's loose requirement.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test]"
"$PY" -c "import torch, worldstream; print(f'worldstream {worldstream.__version__} installed (torch {torch.__version__}, cuda {torch.cuda.is_available()})')"
