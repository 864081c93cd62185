"""Fixtures shared by unit tests."""

import pytest


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
