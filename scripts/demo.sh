#!/usr/bin/env bash
# README command 1: install, then run the main job on the embedded (synthetic) default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/marsbench demo "$@"
