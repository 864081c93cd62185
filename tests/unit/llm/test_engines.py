"""Both LLM engines speak one interface: a local causal LM and an OpenAI-compatible server (here a
recorded-answer transport) give label log-probabilities, generations with a mean log-probability, and count
what they spent."""

import json

import httpx
import numpy as np
import pytest

from labelloop.llm import LLMLabeler, LocalLLM, OpenAIEndpoint

MESSAGES = [{"role": "user", "content": "Is 'the striker scored' about sport or cooking?"}]


def server(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    top = [{"token": " sport", "logprob": -0.2}, {"token": " cooking", "logprob": -1.9}]
    return httpx.Response(200, json={
        "choices": [{"message": {"content": " sport"},
                     "logprobs": {"content": [{"token": " sport", "logprob": -0.2, "top_logprobs": top}]}
                     if body.get("logprobs") else None}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1}})


@pytest.fixture(params=["local", "endpoint"])
def engine(request, tiny_llm_path):
    if request.param == "local":
        return LocalLLM(tiny_llm_path)
    return OpenAIEndpoint("http://127.0.0.1:1/v1", "m", http=httpx.Client(transport=httpx.MockTransport(server)))


def test_engine_contract(engine):
    scores = engine.label_logprobs(MESSAGES, ["sport", "cooking"])
    assert scores is not None and scores.shape == (2,) and np.isfinite(scores).all() and (scores <= 0).all()
    generation = engine.generate(MESSAGES, max_tokens=4)
    assert isinstance(generation.text, str)
    assert generation.mean_logprob is None or generation.mean_logprob <= 0
    usage = engine.usage.as_dict()
    assert usage["requests"] >= 1 and usage["prompt_tokens"] > 0
    probs = LLMLabeler(engine).classify(["the striker scored"], ["sport", "cooking"])
    assert probs.shape == (1, 2) and np.isclose(probs.sum(), 1.0)
