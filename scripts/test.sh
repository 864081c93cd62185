#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit tests, then integration tests that start a real
# Label Studio. Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 LABELLOOP_LABEL_STUDIO_BIN="$PWD/.venv-ls/bin/label-studio"
exec .venv/bin/python -m pytest -q "$@"
