#!/usr/bin/env bash
# Set up (if needed), lint and type-check, then run the whole test suite: unit tests, then integration tests
# that start a real Label Studio. Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The LLM tests talk to a real OpenAI-compatible server, llama-cpp-python's, in its own venv. pip compiles
# llama.cpp the first time (about 8 minutes on 2 cores); its wheel cache makes later installs quick.
if ! .venv-llm/bin/python -c "import llama_cpp.server" 2>/dev/null; then
    echo "installing llama-cpp-python[server]==0.3.36 into .venv-llm (compiles llama.cpp, about 8 minutes) ..."
    "${PYTHON:-python3}" -m venv .venv-llm
    .venv-llm/bin/pip install -q 'llama-cpp-python[server]==0.3.36'
fi
# Lint and type-check the package first: a failure here fails the run before the slow tests.
.venv/bin/ruff check labelloop backend augment dashboard
.venv/bin/mypy
export HF_HUB_OFFLINE=1 LABELLOOP_LABEL_STUDIO_BIN="$PWD/.venv-ls/bin/label-studio"
export LABELLOOP_LLAMA_PYTHON="$PWD/.venv-llm/bin/python" LABELLOOP_REQUIRE_LLM_SERVER=1
exec .venv/bin/python -m pytest -q "$@"
