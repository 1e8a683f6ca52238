#!/usr/bin/env bash
# Create .venv and install marsbench with PyTorch (CPU works; a CUDA build is what pip gets).
# Usage: scripts/setup.sh [extra]   e.g. scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision pinned to the releases the project is tested with.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
if [ -n "${1:-}" ]; then
  .venv/bin/python -m pip install -q -e ".[$1]"
else
  .venv/bin/python -m pip install -q -e .
fi
