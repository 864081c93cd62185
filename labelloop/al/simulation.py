"""Active-learning simulation: how many labels each learner and strategy needs, on data whose labels are known.

:func:`simulate` replays annotation on a labeled JSONL file with each learner of
:mod:`labelloop.al.learners` (the backend's head, SetFit, the backend's fine-tune, and the whole ladder as the
backend runs it): a random seed set, then ``rounds`` batches picked by each strategy, always alongside
``random`` with the same learner on the same splits and seed sets. It reports a learning curve per learner
and strategy (accuracy on a held-out test split against the number of labels), the area under it, the
accuracy at 25, 50, 100, 200 and 400 labels with its spread over repeats, the labels needed to reach 95% of
the accuracy of the head trained on the whole pool, and each learner's compute seconds.

Strategy names are those of :data:`labelloop.al.uncertainty.STRATEGIES`, optionally suffixed ``+cluster``
for diversity within each batch (:func:`labelloop.al.selection.cluster_then_pick`)."""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.al.learners import DENSE, LEARNERS, GateSettings, Pool, make_learner
from labelloop.al.selection import argselect, cluster_then_pick, sample_select
from labelloop.al.uncertainty import STRATEGIES, bald, confidence
from labelloop.config import ConfigMixin
from labelloop.data.jsonl import iter_jsonl
from labelloop.errors import ConfigError

Progress = Callable[[int], None]


@dataclass
class SimulationConfig(ConfigMixin):
    """Settings of one simulation run; every field is a CLI flag of ``labelloop al simulate``."""

    config_name = "simulation"

    learners: tuple[str, ...] = field(default=("head",), metadata={
        "help": "learners to compare: head (seconds), self (the head with confident pseudo-labels), setfit and "
                "finetune (minutes each on CPU), auto (the ladder as the backend runs it)", "flag": "learner"})
    strategies: tuple[str, ...] = field(default=("margin",), metadata={
        "help": "strategies to compare with random: margin, entropy, least_confidence, random, bald (Monte Carlo "
                "dropout, finetune learner only); add +cluster for diversity, +sample to draw with known "
                "probabilities (propensities)", "flag": "strategy"})
    seed_size: int = field(default=25, metadata={"help": "random labels to start from"})
    batch: int = field(default=25, metadata={"help": "labels added per round"})
    rounds: int = field(default=20, metadata={"help": "rounds of selection"})
    repeats: int = field(default=5, metadata={"help": "runs with different splits and seed sets"})
    test_fraction: float = field(default=0.2, metadata={"help": "share of the data held out for testing"})
    seed: int = field(default=0, metadata={"help": "random seed of the first repeat"})
    audit_share: float = field(default=0.1, metadata={"help": "share of the auto learner's labels that are audit "
                                                               "tasks (never trained on)"})
    finetune_at: int = field(default=100, metadata={"help": "training labels at which the auto learner first "
                                                             "fine-tunes (then as labels double)"})
    gate_budget: int = field(default=40, metadata={"help": "disagreement labels the auto learner's gate may spend "
                                                            "on one challenger (as LABELLOOP_GATE_BUDGET)"})
    gate_alpha: float = field(default=0.05, metadata={"help": "the gate's error rate (as LABELLOOP_GATE_ALPHA)"})
    gate_min_gain: float = field(default=0.01, metadata={"help": "smallest accuracy gain worth a promotion (as "
                                                                 "LABELLOOP_GATE_MIN_GAIN)"})
    setfit_below: int = field(default=400, metadata={"help": "training labels below which the auto learner tunes "
                                                               "with SetFit, not a full fine-tune (0: never)"})

    def __post_init__(self) -> None:
        self.strategies = tuple(dict.fromkeys(self.strategies))
        self.learners = tuple(dict.fromkeys(self.learners))
        unknown = [name for name in self.learners if name not in LEARNERS]
        if unknown or not self.learners:
            raise ConfigError(f"unknown learner {', '.join(unknown) or '(none)'}: use a comma list of {', '.join(LEARNERS)}")
        if not 0.0 <= self.audit_share < 1.0 or self.finetune_at < 1 or self.setfit_below < 0 or self.gate_budget < 1:
            raise ConfigError("audit_share must be in [0, 1), finetune_at and gate_budget at least 1, setfit_below "
                              "at least 0")
        if not 0.0 < self.gate_alpha < 1.0 or not 0.0 <= self.gate_min_gain < 1.0:
            raise ConfigError("gate_alpha must be in (0, 1) and gate_min_gain in [0, 1)")
        for name in self.strategies:
            base, _, diversity = name.partition("+")
            if base == "bald" and set(self.learners) - {"finetune"}:
                raise ConfigError("bald needs Monte Carlo dropout samples, which only the finetune learner has: "
                                  "use --learner finetune with --strategy bald")
            if (base not in STRATEGIES and base != "bald") or diversity not in ("", "cluster", "sample"):
                raise ConfigError(f"unknown strategy {name!r}: use one of {sorted(STRATEGIES)}, optionally with "
                                  "'+cluster' (e.g. margin+cluster) or '+sample' (drawn with known probabilities)")
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


REPORTED_AT = (25, 50, 100, 200, 400)  # label counts every learner's accuracy is reported at, where reached


def schedule(config: SimulationConfig, dense: bool) -> list[int]:
    """Label counts a learner trains at: after every batch (dense), or the seed size doubling (sparse)."""
    last = config.seed_size + config.rounds * config.batch
    if dense:
        return [config.seed_size + k * config.batch for k in range(config.rounds + 1)]
    sizes = [config.seed_size]
    while sizes[-1] * 2 < last:
        sizes.append(sizes[-1] * 2)
    return sizes + [last] if last > sizes[-1] else sizes


def _pick(strategy: str, probs: np.ndarray, x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` positions among ``probs``' rows (the unlabeled items) by ``strategy``."""
    base, _, diversity = strategy.partition("+")
    n = min(n, len(probs))
    if base == "random":
        return rng.choice(len(probs), size=n, replace=False)
    scores = confidence(probs, base)
    seed = int(rng.integers(2**31))
    if diversity == "sample":
        return sample_select(scores, n, seed=seed)[0]
    return cluster_then_pick(scores, x, n, seed=seed) if diversity else argselect(scores, n, seed=seed)


def _next_batch(strategy: str, predict, pool: Pool, ids: np.ndarray, labeled: np.ndarray, n: int,
                audit: np.ndarray | None, share: float, rng: np.random.Generator, mc=None, front=None, *,
                since: int = 0) -> np.ndarray:
    """Positions (into ``ids``) of the next ``n`` items to label. ``front(pool_ids)`` names the ones the
    backend's queue serves before all others (the gate's disagreements), in order. With an audit mask (the current
    audit frame, drawn at ``since`` labels), the audit tasks the backend's queue spreads among the others come
    next, at random, up to ``share`` of the labels since the frame was drawn."""
    unlabeled = np.flatnonzero(~labeled)
    picked: np.ndarray = np.zeros(0, dtype=int)
    total = n
    if front is not None and n:
        position = {pool_id: i for i, pool_id in enumerate(ids)}
        picked = np.array([position[p] for p in front(ids[unlabeled])[:n]], dtype=int)
        unlabeled = np.setdiff1d(unlabeled, picked)
        n -= len(picked)
        labeled = labeled.copy()
        labeled[picked] = True  # the audit quota below counts them
    if audit is not None:
        is_audit = audit[ids[unlabeled]]
        want = int(round((labeled.sum() - since + n) * share)) - int(audit[ids[labeled]].sum())
        want = max(0, min(want, n, int(is_audit.sum())))
        picked = np.concatenate([picked, rng.choice(unlabeled[is_audit], size=want, replace=False)])
        unlabeled = unlabeled[~is_audit]
    rest = total - len(picked)
    if rest and len(unlabeled):
        if strategy.partition("+")[0] == "bald":
            samples = mc(ids[unlabeled]) if mc is not None else None
            if samples is not None:  # before the first fine-tune there is no dropout to sample: margin
                scores = bald(samples)
                chosen = (cluster_then_pick(scores, pool.x[ids[unlabeled]], rest, seed=int(rng.integers(2**31)))
                          if "+" in strategy else argselect(scores, rest, seed=int(rng.integers(2**31))))
                return np.concatenate([picked, unlabeled[chosen]])
            strategy = strategy.replace("bald", "margin")
        chosen = _pick(strategy, predict(ids[unlabeled]), pool.x[ids[unlabeled]], rest, rng)
        picked = np.concatenate([picked, unlabeled[chosen]])
    return picked


def _summary(runs: list[list[float]], sizes: list[int], full_accuracy: float) -> dict:
    mean, std = np.mean(runs, axis=0), np.std(runs, axis=0)
    reached = [n for n, acc in zip(sizes, mean, strict=True) if acc >= 0.95 * full_accuracy]
    span = sizes[-1] - sizes[0]
    at = {str(n): (float(a), float(s)) for n, a, s in zip(sizes, mean, std, strict=True) if n in REPORTED_AT}
    return {
        "curve": [[n, float(a)] for n, a in zip(sizes, mean, strict=True)],
        "auc": float(np.trapezoid(mean, sizes) / span) if span else float(mean[0]),
        "labels_to_95": reached[0] if reached else None,
        "curve_std": [float(s) for s in std],
        "accuracy_at": {k: a for k, (a, _) in at.items()},
        "accuracy_at_std": {k: s for k, (_, s) in at.items()},
    }


def simulate(pool: Pool, config: SimulationConfig, progress: Progress | None = None) -> dict:
    """Replay labeling of ``pool`` with every learner and strategy of ``config``.

    Returns ``{"strategies": {name: {"curve": [[n_labels, accuracy], ...], "auc": float, "labels_to_95":
    int | None, "curve_std": [...], "accuracy_at": {"25": float, ...}, "accuracy_at_std": {...}}},
    "learners": {learner: {"strategies": {...}, "seconds": float}}, "full_pool_accuracy": float, "config":
    {...}}``. Top-level ``strategies`` are the head's (or the first learner's); curves are means over repeats,
    ``auc`` the mean accuracy over the labeled range, ``seconds`` the learner's compute time in all.
    """
    curves: dict[tuple[str, str], list[list[float]]] = {
        (name, s): [] for name in config.learners for s in config.all_strategies}
    sizes_of: dict[str, list[int]] = {}
    seconds = dict.fromkeys(config.learners, 0.0)
    events: list[dict] = []
    full = []
    x, y = pool.x, pool.y
    for r in range(config.repeats):
        rng = np.random.default_rng(config.seed + r)
        order = rng.permutation(len(x))
        n_test = max(1, int(round(config.test_fraction * len(x))))
        test, ids = order[:n_test], order[n_test:]
        full.append(float((pool.prior.fit(x[ids], y[ids]).predict_proba(x[test]).argmax(1) == y[test]).mean()))
        seed_set = rng.choice(len(ids), size=min(config.seed_size, len(ids)), replace=False)
        for learner_name in config.learners:
            for strategy in config.all_strategies:
                learner = make_learner(learner_name, pool, np.random.default_rng([config.seed + r, 1]),
                                       audit_share=config.audit_share, finetune_at=config.finetune_at,
                                       gate=GateSettings(config.gate_alpha, config.gate_min_gain, config.gate_budget),
                                       setfit_below=config.setfit_below,
                                       seed=config.seed + r)
                strategy_rng = np.random.default_rng([config.seed + r, zlib.crc32(strategy.encode())])
                labeled = np.zeros(len(ids), dtype=bool)
                labeled[seed_set] = True
                curve, sizes = [], []
                plan = schedule(config, learner_name in DENSE)
                for step in range(len(plan)):
                    started = time.perf_counter()
                    predict = learner.fit(ids[labeled], ids[~labeled])
                    seconds[learner_name] += time.perf_counter() - started
                    curve.append(float((predict(test).argmax(axis=1) == y[test]).mean()))
                    sizes.append(int(labeled.sum()))
                    if progress:
                        progress(1)
                    if step + 1 == len(plan) or labeled.all():
                        break
                    picked = _next_batch(strategy, predict, pool, ids, labeled, plan[step + 1] - int(labeled.sum()),
                                         getattr(learner, "audit", None), config.audit_share, strategy_rng,
                                         getattr(learner, "mc_predict", None), getattr(learner, "serve_first", None),
                                         since=getattr(learner, "audit_since", 0))
                    labeled[picked] = True
                curves[learner_name, strategy].append(curve)
                sizes_of[learner_name] = sizes
                events += [{"repeat": r, "strategy": strategy, **e.to_dict()} for e in getattr(learner, "events", [])]
    full_accuracy = float(np.mean(full))
    learners: dict[str, Any] = {}
    for learner_name in config.learners:
        learners[learner_name] = {
            "strategies": {s: _summary(curves[learner_name, s], sizes_of[learner_name], full_accuracy)
                           for s in config.all_strategies},
            "seconds": seconds[learner_name],
        }
    if events:
        learners["auto"]["events"] = events
    top = learners["head"] if "head" in learners else learners[config.learners[0]]
    return {"strategies": top["strategies"], "learners": learners, "full_pool_accuracy": full_accuracy,
            "config": asdict(config)}


def plot(result: dict, path: Path, title: str = "") -> None:
    """Learning curves with their spread, and the 95%-of-full-pool line, as a PNG."""
    from labelloop._optional import require

    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    learners = result.get("learners") or {"head": {"strategies": result["strategies"]}}
    for learner, found in learners.items():
        for name, s in found["strategies"].items():
            n, acc = np.array(s["curve"]).T
            std = np.array(s["curve_std"])
            to95 = s["labels_to_95"]
            who = f"{learner} {name}" if len(learners) > 1 else name
            ax.plot(n, acc, marker="." if len(n) < 8 else None,
                    label=f"{who} (AUC {s['auc']:.3f}, 95% at {to95 if to95 is not None else '-'})")
            ax.fill_between(n, acc - std, acc + std, alpha=0.15)
    target = 0.95 * result["full_pool_accuracy"]
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"95% of full pool ({target:.3f})")
    ax.set_xlabel("labels")
    ax.set_ylabel("test span F1" if result.get("metric") == "span_f1" else "test accuracy")
    ax.set_title(title or "Active learning simulation")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
