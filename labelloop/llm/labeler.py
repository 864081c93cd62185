"""The labeler: class probabilities, entity spans, links and drafted responses for a project's controls, from
an engine, with the nearest approved examples in the prompt."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from labelloop.arrays import softmax
from labelloop.config import ConfigMixin
from labelloop.errors import ConfigError
from labelloop.llm.cache import LLMCache
from labelloop.llm.engines import Engine, Generation, LocalLLM, TokenUsage
from labelloop.llm.parsing import locate_mentions, parse_entities, parse_links, vote_label
from labelloop.llm.prompts import CONTENT_FREE, Messages, PromptTemplate
from labelloop.relations import Link
from labelloop.spans import Span

log = logging.getLogger(__name__)


@dataclass
class LLMLabelerConfig(ConfigMixin):
    """How labels are asked for; round-trips to JSON."""

    config_name = "LLM labeler"

    samples: int = field(default=5, metadata={"help": "answers sampled per text when the model gives no "
                                                      "log-probabilities (the votes become probabilities)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature for those votes"})
    max_new_tokens: int = field(default=256, metadata={"help": "longest entity list or draft generated"})
    few_shot: int = field(default=4, metadata={"help": "approved examples nearest to the text put in the prompt"})
    max_text_chars: int = field(default=6000, metadata={"help": "longer texts are cut to this many characters in the "
                                                                 "prompt, so they fit the model's context"})
    calibrate: bool = field(default=True, metadata={"help": "divide out the model's bias towards some labels, "
                                                              "measured on content-free inputs (contextual calibration)"})

    def __post_init__(self) -> None:
        if self.samples < 1 or self.max_new_tokens < 1 or self.few_shot < 0 or self.max_text_chars < 1:
            raise ConfigError("samples, max_new_tokens and max_text_chars must be at least 1, few_shot at least 0")
        if not 0 < self.temperature <= 2:
            raise ConfigError("temperature must be in (0, 2]")


@dataclass
class EntityAnswer:
    """Spans found in one text, mentions dropped (not in the text, or an unknown label), and a confidence."""

    spans: list[Span]
    dropped: int
    confidence: float | None


@dataclass
class RelationAnswer:
    """Links found between one text's spans, links dropped (no such mention, or an unknown label), a confidence."""

    links: list[Link]
    dropped: int
    confidence: float | None


class LLMLabeler:
    """Classification, entities and drafts from one engine, cached, concurrent and counted."""

    def __init__(self, engine: Engine, *, template: PromptTemplate | None = None, cache: LLMCache | None = None,
                 config: LLMLabelerConfig | None = None) -> None:
        self.engine = engine
        self.template = template or PromptTemplate()
        self.cache = cache
        self.config = config or LLMLabelerConfig()

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def usage(self) -> TokenUsage:
        return self.engine.usage

    def classify(self, texts: Sequence[str], labels: Sequence[str], *, guideline: str = "",
                 examples: Sequence[Sequence[tuple[str, str]]] | None = None,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Probabilities (n_texts, n_labels), each row summing to 1.

        ``examples[i]`` are the few-shot ``(text, label)`` pairs for ``texts[i]``.
        """
        if len(labels) < 2:
            raise ConfigError("LLM labels need at least two labels to choose from")
        labels = list(labels)
        if not texts:
            return np.zeros((0, len(labels)))
        bias = None
        if self.config.calibrate:
            # Contextual calibration (Zhao et al., 2021): a small model prefers some labels whatever the text;
            # its answer to content-free inputs measures that preference, which is then divided out.
            bias = np.mean([self._label_probs(t, labels, guideline, ()) for t in CONTENT_FREE], axis=0)

        def one(i: int) -> np.ndarray:
            p = self._label_probs(self._cut(texts[i]), labels, guideline, examples[i] if examples else ())
            if bias is not None:
                p = p / np.maximum(bias, 1e-6)
            return p / p.sum()

        return np.stack(self._map(one, len(texts), progress))

    def _label_probs(self, text: str, labels: list[str], guideline: str, examples) -> np.ndarray:
        messages = [{"role": "user", "content": self.template.render(text, labels, guideline=guideline,
                                                                     examples=examples)}]
        scores = self._cached("classify", messages, labels, lambda: self._label_scores(messages, labels))
        return softmax(np.asarray(scores))

    def extract(self, texts: Sequence[str], labels: Sequence[str], *, guideline: str = "",
                examples: Sequence[Sequence[tuple[str, list[Span]]]] | None = None,
                progress: Callable[[int], None] | None = None) -> list[EntityAnswer]:
        """Entity spans per text from a JSON answer, mapped to exact offsets (see :func:`locate_mentions`)."""
        labels = list(labels)

        def one(i: int) -> EntityAnswer:
            prompt = self.template.render_ner(self._cut(texts[i]), labels, guideline=guideline,
                                              examples=examples[i] if examples else ())
            messages = [{"role": "user", "content": prompt}]
            answer = self._cached("extract", messages, labels, lambda: self._generate(messages, json_mode=True))
            mentions = parse_entities(answer["text"])
            if mentions is None:
                log.debug("no JSON in the entity answer for text %d: %.80r", i, answer["text"])
                mentions = []
            spans, dropped = locate_mentions(texts[i], mentions, labels)
            return EntityAnswer(spans, dropped, answer["confidence"])

        return self._map(one, len(texts), progress)

    def relate(self, texts: Sequence[str], spans: Sequence[Sequence[Span]], labels: Sequence[str], *,
               guideline: str = "", progress: Callable[[int], None] | None = None) -> list[RelationAnswer]:
        """Links between each text's ``spans`` (sorted by position) from a JSON answer over numbered mentions."""
        labels = list(labels)

        def one(i: int) -> RelationAnswer:
            # mentions in the part of the text the LLM reads, by position
            mentions = sorted((m for m in spans[i] if m.end <= self.config.max_text_chars),
                              key=lambda s: (s.start, s.end))
            if len(mentions) < 2:
                return RelationAnswer([], 0, 1.0)  # nothing to link
            order = [list(spans[i]).index(m) for m in mentions]  # back to the caller's order
            prompt = self.template.render_relations(self._cut(texts[i]), mentions, labels, guideline=guideline)
            messages = [{"role": "user", "content": prompt}]
            answer = self._cached("relate", messages, labels, lambda: self._generate(messages, json_mode=True))
            found, dropped = parse_links(answer["text"], len(mentions), labels)
            score = answer["confidence"] if answer["confidence"] is not None else 0.5
            return RelationAnswer([Link(order[a], order[b], label, score) for a, b, label in found], dropped,
                                  answer["confidence"])

        return self._map(one, len(texts), progress)

    def draft(self, prompts: Sequence[str], *, guideline: str = "",
              examples: Sequence[Sequence[tuple[str, str]]] | None = None,
              progress: Callable[[int], None] | None = None) -> list[Generation]:
        """A drafted response per prompt, for annotators to correct."""

        def one(i: int) -> Generation:
            messages = self.template.draft_messages(self._cut(prompts[i]), guideline=guideline,
                                                    examples=examples[i] if examples else ())
            answer = self._cached("draft", messages, [], lambda: self._generate(messages))
            return Generation(answer["text"], answer["logprob"])

        return self._map(one, len(prompts), progress)

    def _cut(self, text: str) -> str:
        return text[: self.config.max_text_chars]

    def _label_scores(self, messages: Messages, labels: list[str]) -> list[float]:
        scores = self.engine.label_logprobs(messages, labels)
        if scores is not None:
            return scores.tolist()
        counts = np.zeros(len(labels))
        for s in range(self.config.samples):
            answer = self.engine.generate(messages, max_tokens=32, temperature=self.config.temperature, seed=s)
            k = vote_label(answer.text, labels)
            if k is not None:
                counts[k] += 1
        return np.log((counts + 0.5) / (counts.sum() + 0.5 * len(labels))).tolist()  # add-half smoothing

    def _generate(self, messages: Messages, *, json_mode: bool = False) -> dict:
        g = self.engine.generate(messages, max_tokens=self.config.max_new_tokens, json_mode=json_mode)
        return {"text": g.text, "logprob": g.mean_logprob, "confidence": g.confidence}

    def _cached(self, kind: str, messages: Messages, labels: list[str], compute: Callable[[], object]):
        if self.cache is None:
            return compute()
        key = LLMCache.key(self.engine.name, kind, messages, labels,
                           asdict(self.config) if kind != "classify" else self.config.samples)
        value = self.cache.get(key)
        if value is not None:
            self.usage.add(cached=1)
            return value
        value = compute()
        self.cache.put(key, value)
        return value

    def _map(self, one: Callable[[int], object], n: int, progress: Callable[[int], None] | None) -> list:
        workers = min(self.engine.concurrency, max(n, 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="labelloop-llm") as pool:
            out = []
            for answer in pool.map(one, range(n)):
                out.append(answer)
                if progress:
                    progress(1)
            return out


def classify(llm: LocalLLM, texts: Sequence[str], labels: Sequence[str], *, template: PromptTemplate | None = None,
             guideline: str = "", examples: Sequence[Sequence[tuple[str, str]]] | None = None,
             cache: LLMCache | None = None) -> np.ndarray:
    """Probabilities (n_texts, n_labels) from ``llm``; a shortcut for :meth:`LLMLabeler.classify`."""
    return LLMLabeler(llm, template=template, cache=cache).classify(texts, labels, guideline=guideline,
                                                                     examples=examples)


def nearest_examples(query: np.ndarray, pool: np.ndarray, answers: Sequence, k: int) -> list[list]:
    """For each query row, the ``answers`` of its ``k`` nearest pool rows (cosine), nearest last.

    ``query`` (n, d) and ``pool`` (m, d) are sentence vectors; nearest last puts the most similar example
    right before the text to label.
    """
    if k <= 0 or len(pool) == 0:
        return [[] for _ in range(len(query))]
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    p = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    order = np.argsort(-(q @ p.T), axis=1, kind="stable")[:, :k]
    return [[answers[j] for j in row[::-1]] for row in order]
