"""Where predictions come from, as composable sources (see :class:`labelloop.labeling.kinds.Source`).

- :class:`ModelPredictor`: a version's trained models, zero-shot heads for classification controls
  they lack (``model_version`` ``labelloop-vN``).
- :class:`LLMPredictor`: the LLM labeler for every control (``llm-<model>``).
- :class:`EnsemblePredictor`: the mean of both for classification; the trained tagger for spans once
  there is one (``labelloop-vN+llm-<model>``).
- :func:`choose`: ``LABELLOOP_PREDICTOR`` as one of them, ``cold-start`` being the LLM until enough
  tasks are annotated.

Each names its ``model_version``, so what Label Studio stores says what predicted it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from numpy.typing import NDArray

from labelloop.al.uncertainty import aggregate_words, confidence
from labelloop.labeling.kinds import Draft, LinkPrediction, SpanPrediction, kind_of
from labelloop.labeling.schema import ControlSpec
from labelloop.llm import LLMLabeler, nearest_examples
from labelloop.models import Features
from labelloop.serving.metrics import Metrics
from labelloop.serving.versions import UNTRAINED_VERSION, Bundle
from labelloop.spans import Gazetteer, Span, merge_spans

log = logging.getLogger(__name__)


class ModelPredictor:
    """A bundle's models; classification controls without a trained head get the zero-shot one."""

    def __init__(self, bundle: Bundle, features: Features, strategy: str, *,
                 drafter: Callable[[], LLMPredictor] | None = None, warn: Callable[[str], None] = log.warning) -> None:
        self.bundle = bundle
        self.features = features
        self.strategy = strategy
        self.drafter = drafter  # responses are only ever drafted by an LLM
        self.warn = warn
        self.version = bundle.version

    def trained(self, spec: ControlSpec) -> bool:
        return self.bundle.model(spec) is not None

    def class_probs(self, spec: ControlSpec, texts: list[str]) -> NDArray[Any]:
        model = self.bundle.model(spec) or self.features.zero_shot(spec)
        return model.predict_proba(texts)

    def spans(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None:
        model = self.bundle.model(spec)
        if model is None:
            self.warn(f"no span model yet for control {spec.from_name!r}: annotate a few tasks and press Train "
                      "(or wait for the automatic retrain)")
            return None
        return [SpanPrediction(spans, float(aggregate_words([confidence(probs, self.strategy)])[0]))
                for spans, probs in model.predict_spans(texts)]

    def drafts(self, spec: ControlSpec, texts: list[str]) -> list[Draft] | None:
        return self.drafter().drafts(spec, texts) if self.drafter else None

    def word_tags(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None:
        return self.spans(spec, texts)  # a word tagger speaks the span tagger's protocol, a region per word

    def links(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> list[LinkPrediction] | None:
        model = self.bundle.model(spec)
        if model is None:
            self.warn("no relation model yet: annotate a few tasks with their spans and relations and press Train "
                      "(or wait for the automatic retrain)")
            return None
        return [LinkPrediction(links, float(aggregate_words([confidence(probs, self.strategy)])[0]))
                for links, probs in model.predict_links(texts, spans)]


class LLMPredictor:
    """The LLM labeler with the project's guideline, and few-shot examples from its annotated tasks.

    ``annotated(spec)`` gives ``(text, answer)`` pairs of the project for a control (answers as
    :mod:`labelloop.labeling.kinds` reads them); ``embed`` finds the nearest ones to each text. ``labeler``
    and ``guideline`` may be functions: they are called on the first prediction, so naming the
    ``model_version`` (``/setup``, which Label Studio gives 3 s) never loads the LLM or calls Label Studio.
    """

    def __init__(self, labeler: LLMLabeler | Callable[[], LLMLabeler], version: str, *,
                 guideline: str | Callable[[], str] = "",
                 annotated: Callable[[ControlSpec], list[tuple[str, Any]]] = lambda spec: [],
                 embed: Callable[[list[str]], NDArray[Any]] | None = None, metrics: Metrics | None = None) -> None:
        self._labeler = labeler
        self.version = version
        self._guideline = guideline
        self.annotated = annotated
        self.embed = embed
        self.metrics = metrics or Metrics()

    @functools.cached_property
    def labeler(self) -> LLMLabeler:
        return self._labeler if isinstance(self._labeler, LLMLabeler) else self._labeler()

    @functools.cached_property
    def guideline(self) -> str:
        return self._guideline if isinstance(self._guideline, str) else self._guideline()

    def examples(self, spec: ControlSpec, texts: list[str]) -> list[list[Any]] | None:
        """For each text, the ``k`` annotated examples nearest to it, nearest last (never the text itself)."""
        k = self.labeler.config.few_shot
        pairs = self.annotated(spec)
        if not pairs or k == 0 or self.embed is None:
            return None
        kind = kind_of(spec)
        shown = [(t, kind.example(spec, a)) for t, a in pairs]
        near = nearest_examples(self.embed(texts), self.embed([t for t, _ in shown]), shown, k + 1)
        return [[p for p in row if p[0] != text][-k:] for row, text in zip(near, texts, strict=True)]

    def class_probs(self, spec: ControlSpec, texts: list[str]) -> NDArray[Any]:
        return self.labeler.classify(texts, spec.labels, guideline=self.guideline, examples=self.examples(spec, texts))

    def spans(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction]:
        pairs = self.annotated(spec)
        answers = self.labeler.extract(texts, spec.labels, guideline=self.guideline,
                                       examples=self.examples(spec, texts))
        # Mentions annotated elsewhere in the project come first; the LLM's fill the gaps.
        gazetteer = Gazetteer.from_spans(*zip(*pairs, strict=True)) if pairs else None
        out = []
        for text, answer in zip(texts, answers, strict=True):
            self.metrics.add(llm_dropped_mentions=answer.dropped)
            score = answer.confidence
            spans = [Span(s.start, s.end, s.label, s.score if score is None else score) for s in answer.spans]
            out.append(SpanPrediction(merge_spans(gazetteer.find(text), spans) if gazetteer else spans,
                                      answer.confidence or 0.0))
        return out

    def drafts(self, spec: ControlSpec, texts: list[str]) -> list[Draft]:
        return [Draft(g.text, g.confidence) for g in
                self.labeler.draft(texts, guideline=self.guideline, examples=self.examples(spec, texts))]

    def links(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> list[LinkPrediction]:
        answers = self.labeler.relate(texts, spans, spec.labels, guideline=self.guideline)
        return [LinkPrediction(a.links, a.confidence) for a in answers]

    def word_tags(self, spec: ControlSpec, texts: list[str]) -> None:
        _warn_once(f"the LLM does not tag every word: control {spec.from_name!r} gets predictions from the trained "
                   "tagger once a few sentences are annotated (LABELLOOP_PREDICTOR=model or cold-start)")
        return None


class EnsemblePredictor:
    """The mean of the model's and the LLM's probabilities; spans from the tagger once it is trained."""

    def __init__(self, model: ModelPredictor, llm: LLMPredictor) -> None:
        self.model = model
        self.llm = llm
        self.version = f"{model.version}+{llm.version}"

    def class_probs(self, spec: ControlSpec, texts: list[str]) -> NDArray[Any]:
        mean: NDArray[Any] = (self.model.class_probs(spec, texts) + self.llm.class_probs(spec, texts)) / 2
        return mean

    def spans(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None:
        return self.model.spans(spec, texts) if self.model.trained(spec) else self.llm.spans(spec, texts)

    def drafts(self, spec: ControlSpec, texts: list[str]) -> list[Draft]:
        return self.llm.drafts(spec, texts)

    def word_tags(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None:
        return self.model.word_tags(spec, texts)

    def links(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> list[LinkPrediction] | None:
        return self.model.links(spec, texts, spans) if self.model.trained(spec) else self.llm.links(spec, texts, spans)


Source = ModelPredictor | LLMPredictor | EnsemblePredictor  # what predicts for one request


@functools.lru_cache(maxsize=64)
def _warn_once(message: str) -> None:
    log.warning(message)


def choose(mode: str, model: Callable[[], ModelPredictor], llm: Callable[[], LLMPredictor], *,
           annotated: Callable[[], int], cold_start_labels: int) -> Source:
    """The predictor ``LABELLOOP_PREDICTOR`` asks for; ``model``/``llm`` build theirs only when needed."""
    if mode == "llm":
        return llm()
    if mode == "ensemble":
        return EnsemblePredictor(model(), llm())
    chosen = model()
    if mode == "cold-start" and (chosen.version == UNTRAINED_VERSION or annotated() < cold_start_labels):
        return llm()
    return chosen
