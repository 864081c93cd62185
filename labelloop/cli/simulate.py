"""``labelloop al simulate``: active learning replayed on a labeled data set."""

from __future__ import annotations

import argparse
import sys

from labelloop.cli.common import env_settings
from labelloop.errors import LabelLoopError


def cmd_al_simulate(args: argparse.Namespace) -> None:
    import tempfile
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from labelloop.al.learners import DENSE, Pool
    from labelloop.al.simulation import SimulationConfig, embed_cached, read_labeled, schedule, simulate
    from labelloop.data.jsonl import iter_jsonl
    from labelloop.encoder import load_encoder, resolve_model_path
    from labelloop.models import ChoicesModel

    settings = env_settings()
    config = SimulationConfig.from_args(args)
    first = next((row for _, row in iter_jsonl(Path(args.data))), None)
    if isinstance(first, dict) and "spans" in first:
        return _simulate_spans(args, settings, config)
    texts, labels = read_labeled(Path(args.data))
    names = tuple(sorted(set(labels)))
    if "setfit" in config.learners:
        from labelloop._optional import require

        require("setfit", "setfit")
    encoder = load_encoder(settings.model, max_length=settings.max_length, batch_size=settings.batch_size)
    with tqdm(total=len(texts), desc="embedding", unit="text", file=sys.stderr) as bar:
        x = embed_cached(encoder, texts, settings.home / "cache", bar.update)
    y = np.asarray([names.index(label) for label in labels])
    fits = sum(len(schedule(config, name in DENSE)) for name in config.learners)
    steps = config.repeats * len(config.all_strategies) * fits
    with tempfile.TemporaryDirectory(prefix="labelloop-simulate-") as work, \
            tqdm(total=steps, desc="simulating", unit="fit", file=sys.stderr) as bar:
        pool = Pool(texts, x, y, names, ChoicesModel.zero_shot(encoder, names), resolve_model_path(settings.model),
                    Path(work))
        result = simulate(pool, config, bar.update)
    if _emit_simulation(args, result, len(texts), names):
        return
    print(f"{len(texts)} texts, {len(names)} labels; head on the full pool {result['full_pool_accuracy']:.3f}")
    points = [p for p in ("25", "50", "100", "200", "400")
              if any(p in s["accuracy_at"] for r in result["learners"].values() for s in r["strategies"].values())]
    print(f"{'learner':<10}{'strategy':<18}{'AUC':>7}{'to 95%':>8}" + "".join(f"{'@' + p:>13}" for p in points)
          + f"{'seconds':>9}")
    for learner, found in result["learners"].items():
        for name, s in found["strategies"].items():
            to95 = s["labels_to_95"] if s["labels_to_95"] is not None else "-"
            cells = "".join(f"{s['accuracy_at'][p]:>7.3f}±{s['accuracy_at_std'][p]:.3f}" if p in s["accuracy_at"]
                            else f"{'':>13}" for p in points)
            print(f"{learner:<10}{name:<18}{s['auc']:>7.3f}{to95!s:>8}{cells}{found['seconds']:>9.0f}")


def _emit_simulation(args: argparse.Namespace, result: dict, n: int, labels) -> bool:
    """Record the data in ``result``, draw ``--plot``, print ``--json``; True when the JSON was the output."""
    import json
    from pathlib import Path

    from labelloop.al.simulation import plot

    result["data"] = {"path": str(args.data), "n": n, "labels": list(labels)}
    if args.plot:
        plot(result, Path(args.plot), title=Path(args.data).name)
    if args.json:
        print(json.dumps(result, indent=2))
    return bool(args.json)


def _simulate_spans(args: argparse.Namespace, settings, config) -> None:
    """`al simulate` on span data ({"text", "spans"} rows): the backend's tagger, scored by span F1."""
    from pathlib import Path

    from tqdm import tqdm

    from labelloop.al.spans import read_spans, simulate_spans
    from labelloop.encoder import load_encoder

    if config.learners != ("head",):
        raise LabelLoopError("span data is simulated with the backend's tagger head only: drop --learner")
    texts, spans, labels = read_spans(Path(args.data))
    encoder = load_encoder(settings.model, max_length=settings.max_length, batch_size=settings.batch_size)
    encodings = []
    with tqdm(total=len(texts), desc="encoding", unit="text", file=sys.stderr) as bar:
        for i in range(0, len(texts), 256):
            encodings += encoder.encode(texts[i : i + 256])
            bar.update(len(texts[i : i + 256]))
    steps = config.repeats * len(config.all_strategies) * (config.rounds + 1)
    with tqdm(total=steps, desc="simulating", unit="fit", file=sys.stderr) as bar:
        result = simulate_spans(texts, spans, labels, encodings, config, bar.update)
    if _emit_simulation(args, result, len(texts), labels):
        return
    print(f"{len(texts)} texts, {len(labels)} entity types; tagger on the full pool: span F1 "
          f"{result['full_pool_accuracy']:.3f}")
    print(f"{'strategy':<18}{'AUC':>7}{'to 95%':>8}{'final F1':>10}")
    for name, s in result["strategies"].items():
        to95 = s["labels_to_95"] if s["labels_to_95"] is not None else "-"
        print(f"{name:<18}{s['auc']:>7.3f}{to95!s:>8}{s['curve'][-1][1]:>10.3f}")
