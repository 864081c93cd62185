"""Active-learning simulation: how many labels each strategy needs, on data whose labels are known.

:func:`simulate` replays annotation on a labeled JSONL file with the backend's own model (the linear head
anchored to zero-shot label embeddings): a random seed set, then ``rounds`` batches picked by each
strategy, always alongside ``random`` on the same splits and seed sets. It reports a learning curve per
strategy (accuracy on a held-out test split against the number of labels), the area under it, and the
labels needed to reach 95% of the accuracy of a model trained on the whole pool.

Strategy names are those of :data:`labelloop.uncertainty.STRATEGIES`, optionally suffixed ``+cluster``
for diversity within each batch (:func:`labelloop.selection.cluster_then_pick`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.config import ConfigMixin
from labelloop.errors import ConfigError
from labelloop.jsonl import iter_jsonl
from labelloop.models import ChoicesModel
from labelloop.selection import argselect, cluster_then_pick
from labelloop.uncertainty import STRATEGIES, confidence

Progress = Callable[[int], None]


@dataclass
class SimulationConfig(ConfigMixin):
    """Settings of one simulation run; every field is a CLI flag of ``labelloop al simulate``."""

    config_name = "simulation"

    strategies: tuple[str, ...] = field(default=("margin",), metadata={
        "help": "strategies to compare with random: margin, entropy, least_confidence, random; add +cluster for "
                "diversity", "flag": "strategy"})
    seed_size: int = field(default=25, metadata={"help": "random labels to start from"})
    batch: int = field(default=25, metadata={"help": "labels added per round"})
    rounds: int = field(default=20, metadata={"help": "rounds of selection"})
    repeats: int = field(default=5, metadata={"help": "runs with different splits and seed sets"})
    test_fraction: float = field(default=0.2, metadata={"help": "share of the data held out for testing"})
    seed: int = field(default=0, metadata={"help": "random seed of the first repeat"})

    def __post_init__(self) -> None:
        self.strategies = tuple(dict.fromkeys(self.strategies))
        for name in self.strategies:
            base, _, diversity = name.partition("+")
            if base not in STRATEGIES or diversity not in ("", "cluster"):
                raise ConfigError(f"unknown strategy {name!r}: use one of {sorted(STRATEGIES)}, optionally with "
                                  "'+cluster' (e.g. margin+cluster)")
        if min(self.seed_size, self.batch, self.repeats) < 1 or self.rounds < 0:
            raise ConfigError("seed_size, batch and repeats must be at least 1, rounds at least 0")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError("test_fraction must be between 0 and 1")

    @property
    def all_strategies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("random", *self.strategies)))


def read_labeled(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels from JSONL lines ``{"text": ..., "label": ...}``."""
    texts: list[str] = []
    labels: list[str] = []
    row: Any
    for n, row in iter_jsonl(path):
        try:
            texts.append(str(row["text"]))
            labels.append(str(row["label"]))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}:{n}: expected {{\"text\": ..., \"label\": ...}} ({e})") from e
    if len(set(labels)) < 2:
        raise ConfigError(f"{path}: needs at least two distinct labels, found {sorted(set(labels))}")
    return texts, labels


def embed_cached(encoder, texts: list[str], cache_dir: Path, progress: Progress | None = None) -> np.ndarray:
    """Sentence vectors for ``texts``, cached on disk by model and content."""
    digest = hashlib.sha1((encoder.name + "\x00" + "\x00".join(texts)).encode()).hexdigest()[:16]
    path = cache_dir / f"embeddings-{digest}.npy"
    if path.exists():
        return np.load(path)
    chunks = []
    for i in range(0, len(texts), 256):
        chunks.append(encoder.embed(texts[i : i + 256]))
        if progress:
            progress(len(chunks[-1]))
    vectors = np.concatenate(chunks)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def _accuracy(model: ChoicesModel, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict_proba(x).argmax(axis=1) == y).mean())


def _select(strategy: str, model: ChoicesModel, x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    base, _, diversity = strategy.partition("+")
    if base == "random":
        return rng.choice(len(x), size=min(n, len(x)), replace=False)
    scores = confidence(model.predict_proba(x), base)
    seed = int(rng.integers(2**31))
    return cluster_then_pick(scores, x, n, seed=seed) if diversity else argselect(scores, n, seed=seed)


def simulate(x: np.ndarray, y: np.ndarray, prior: ChoicesModel, config: SimulationConfig,
             progress: Progress | None = None) -> dict:
    """Run the simulation on vectors ``x`` (n, dim) with class indices ``y`` (n,).

    Returns ``{"strategies": {name: {"curve": [[n_labels, accuracy], ...], "auc": float,
    "labels_to_95": int | None, "curve_std": [...]}}, "full_pool_accuracy": float, "config": {...}}``;
    curves are means over repeats and ``auc`` is the mean accuracy over the labeled range.
    """
    curves: dict[str, list[list[float]]] = {s: [] for s in config.all_strategies}
    full = []
    n_labels: list[int] = []
    for r in range(config.repeats):
        rng = np.random.default_rng(config.seed + r)
        order = rng.permutation(len(x))
        n_test = max(1, int(round(config.test_fraction * len(x))))
        test, pool = order[:n_test], order[n_test:]
        full.append(_accuracy(prior.fit(x[pool], y[pool]), x[test], y[test]))
        seed_set = rng.choice(len(pool), size=min(config.seed_size, len(pool)), replace=False)
        for strategy in config.all_strategies:
            strategy_rng = np.random.default_rng([config.seed + r, len(strategy)])
            labeled = np.zeros(len(pool), dtype=bool)
            labeled[seed_set] = True
            curve, sizes = [], []
            for round_ in range(config.rounds + 1):
                model = prior.fit(x[pool[labeled]], y[pool[labeled]])
                curve.append(_accuracy(model, x[test], y[test]))
                sizes.append(int(labeled.sum()))
                if progress:
                    progress(1)
                unlabeled = np.flatnonzero(~labeled)
                if round_ == config.rounds or len(unlabeled) == 0:
                    break
                picked = _select(strategy, model, x[pool[unlabeled]], config.batch, strategy_rng)
                labeled[unlabeled[picked]] = True
            curves[strategy].append(curve)
            n_labels = sizes
    full_accuracy = float(np.mean(full))
    out = {}
    for strategy, runs in curves.items():
        mean, std = np.mean(runs, axis=0), np.std(runs, axis=0)
        reached = [n for n, acc in zip(n_labels, mean) if acc >= 0.95 * full_accuracy]
        span = n_labels[-1] - n_labels[0]
        auc = float(np.trapezoid(mean, n_labels) / span) if span else float(mean[0])
        out[strategy] = {
            "curve": [[n, float(a)] for n, a in zip(n_labels, mean)],
            "auc": auc,
            "labels_to_95": reached[0] if reached else None,
            "curve_std": [float(s) for s in std],
        }
    return {"strategies": out, "full_pool_accuracy": full_accuracy, "config": asdict(config)}


def plot(result: dict, path: Path, title: str = "") -> None:
    """Learning curves with their spread, and the 95%-of-full-pool line, as a PNG."""
    from labelloop._optional import require

    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, s in result["strategies"].items():
        n, acc = np.array(s["curve"]).T
        std = np.array(s["curve_std"])
        to95 = s["labels_to_95"]
        ax.plot(n, acc, label=f"{name} (AUC {s['auc']:.3f}, 95% at {to95 if to95 is not None else '-'})")
        ax.fill_between(n, acc - std, acc + std, alpha=0.15)
    target = 0.95 * result["full_pool_accuracy"]
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"95% of full pool ({target:.3f})")
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "Active learning simulation")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
