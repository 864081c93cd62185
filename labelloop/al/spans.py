"""The active-learning simulation for span labeling (NER): span F1 on a held-out test split as labels grow."""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.al.selection import argselect
from labelloop.al.simulation import Progress, SimulationConfig, _summary
from labelloop.al.uncertainty import confidence
from labelloop.data.jsonl import iter_jsonl
from labelloop.errors import ConfigError
from labelloop.spans import Span


def read_spans(path: Path) -> tuple[list[str], list[list[Span]], tuple[str, ...]]:
    """Texts, gold spans and entity types from JSONL lines ``{"text": ..., "spans": [{"start", "end", "label"}]}``."""
    texts: list[str] = []
    spans: list[list[Span]] = []
    row: Any
    for n, row in iter_jsonl(path):
        try:
            text = str(row["text"])
            task = [Span(int(s["start"]), int(s["end"]), str(s["label"])) for s in row["spans"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}:{n}: expected {{\"text\": ..., \"spans\": [{{\"start\", \"end\", "
                              f"\"label\"}}]}} ({e})") from e
        if any(not 0 <= s.start < s.end <= len(text) for s in task):
            raise ConfigError(f"{path}:{n}: a span lies outside its text")
        texts.append(text)
        spans.append(task)
    labels = tuple(sorted({s.label for task in spans for s in task}))
    if not labels:
        raise ConfigError(f"{path}: no spans at all; span simulation needs annotated entities")
    return texts, spans, labels


def span_f1(gold: list[list[Span]], predicted: list[list[Span]]) -> float:
    """Micro F1 of exact (start, end, label) matches."""
    tp = n_gold = n_pred = 0
    for g, p in zip(gold, predicted, strict=True):
        want = {(s.start, s.end, s.label) for s in g}
        got = {(s.start, s.end, s.label) for s in p}
        tp, n_gold, n_pred = tp + len(want & got), n_gold + len(want), n_pred + len(got)
    return 2 * tp / (n_gold + n_pred) if n_gold + n_pred else 1.0


def simulate_spans(texts: list[str], spans: list[list[Span]], labels: tuple[str, ...], encodings: list,
                   config: SimulationConfig, progress: Progress | None = None) -> dict:
    """The simulation for span labeling (``<Labels>``): the backend's tagger head (:class:`SpansModel` on
    frozen token vectors, with its gazetteer), tasks picked by their mean word confidence (as the backend
    scores them), scored by exact-match span F1. Same result shape as :func:`simulate`; ``metric`` says
    ``span_f1`` and ``full_pool_accuracy`` is the tagger's F1 on the whole pool."""
    from labelloop.al.uncertainty import aggregate_words
    from labelloop.models import SpansModel

    def fit(ids: np.ndarray) -> SpansModel:
        return SpansModel.fit([encodings[i] for i in ids], [texts[i] for i in ids], [spans[i] for i in ids], labels)

    def predict(model: SpansModel, ids: np.ndarray) -> tuple[list[list[Span]], list[np.ndarray]]:
        out, words = [], []
        for i in ids:
            ranges, probs = model.word_probs(encodings[i])
            out.append(model.predict_spans(texts[i], ranges, probs))
            words.append(probs)
        return out, words

    if any("+" in s for s in config.strategies):
        raise ConfigError("span simulation picks whole tasks by their words' confidence; drop the '+cluster'")
    curves: dict[str, list[list[float]]] = {s: [] for s in config.all_strategies}
    sizes: list[int] = []
    full = []
    seconds = 0.0
    for r in range(config.repeats):
        rng = np.random.default_rng(config.seed + r)
        order = rng.permutation(len(texts))
        n_test = max(1, int(round(config.test_fraction * len(texts))))
        test, ids = order[:n_test], order[n_test:]
        gold = [spans[i] for i in test]
        full.append(span_f1(gold, predict(fit(ids), test)[0]))
        seed_set = rng.choice(len(ids), size=min(config.seed_size, len(ids)), replace=False)
        for strategy in config.all_strategies:
            strategy_rng = np.random.default_rng([config.seed + r, zlib.crc32(strategy.encode())])
            labeled = np.zeros(len(ids), dtype=bool)
            labeled[seed_set] = True
            curve, sizes = [], []
            for step in range(config.rounds + 1):
                started = time.perf_counter()
                model = fit(ids[labeled])
                seconds += time.perf_counter() - started
                curve.append(span_f1(gold, predict(model, test)[0]))
                sizes.append(int(labeled.sum()))
                if progress:
                    progress(1)
                unlabeled = np.flatnonzero(~labeled)
                if step == config.rounds or not len(unlabeled):
                    break
                base = strategy.partition("+")[0]
                if base == "random":
                    picked = strategy_rng.choice(len(unlabeled), size=min(config.batch, len(unlabeled)), replace=False)
                else:
                    words = predict(model, ids[unlabeled])[1]
                    scores = aggregate_words([confidence(p, base) if len(p) else np.ones(0) for p in words])
                    picked = argselect(scores, config.batch, seed=int(strategy_rng.integers(2**31)))
                labeled[unlabeled[picked]] = True
            curves[strategy].append(curve)
    full_f1 = float(np.mean(full))
    found = {"strategies": {s: _summary(runs, sizes, full_f1) for s, runs in curves.items()}, "seconds": seconds}
    return {"strategies": found["strategies"], "learners": {"head": found}, "full_pool_accuracy": full_f1,
            "metric": "span_f1", "config": asdict(config)}
