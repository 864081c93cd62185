"""LLM classification on a tiny random Llama (the real SmolLM2 path is exercised in integration tests)."""

import numpy as np
import pytest

from labelloop.errors import ConfigError
from labelloop.llm import LLMCache, LocalLLM, PromptTemplate, classify

LABELS = ["sport", "cooking", "finance"]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from labelloop.encoder import resolve_model_path

    root = tmp_path_factory.mktemp("llm")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(""))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
                     ).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return LocalLLM(str(root))


def test_template_puts_guideline_labels_examples_and_text_in_order():
    prompt = PromptTemplate().render("Whisk the eggs", LABELS, guideline="Topic of a news line.",
                                     examples=[("The striker scored", "sport")])
    assert prompt.index("Topic of a news line.") < prompt.index("sport, cooking, finance")
    assert prompt.index("Text: The striker scored\nLabel: sport") < prompt.index("Text: Whisk the eggs\nLabel:")
    assert prompt.endswith("Label:")


def test_label_probabilities_match_the_models_own_scores_and_are_cached(tiny_llm, tmp_path):
    texts = ["The striker scored twice", "Whisk the eggs until pale"]
    cache = LLMCache(tmp_path / "cache.sqlite3")
    probs = classify(tiny_llm, texts, LABELS, cache=cache)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)
    logp = tiny_llm.label_logprobs(PromptTemplate().render(texts[0], LABELS), LABELS)
    assert np.allclose(probs[0], np.exp(logp) / np.exp(logp).sum())
    read = tiny_llm.tokens_read
    again = classify(tiny_llm, texts, LABELS, cache=LLMCache(tmp_path / "cache.sqlite3"))
    assert np.allclose(again, probs) and tiny_llm.tokens_read == read  # a re-run reads no tokens
    with pytest.raises(ConfigError, match="two labels"):
        classify(tiny_llm, texts, ["only"])
