#!/usr/bin/env bash
# README command 2: install (package, test extras, headless Chromium for the report test),
# then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ -f scripts/install_browser.sh ]; then bash scripts/install_browser.sh; fi
.venv/bin/python -m pytest "$@"
