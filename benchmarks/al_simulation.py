"""Active-learning simulation on the movie-review sentences and BBC News, against random in the same run.

For each data set: learning curves, AUC and labels needed for 95% of full-pool accuracy per learner and
strategy (see `labelloop al simulate`), written to benchmarks/results/al_<name><tag>.json and .png, and a
table per learner with each strategy's AUC gain over random with the same learner (target >= 0.03), its
labels-to-95% as a ratio of random's (target <= 0.5; "random >N" when random did not get there within the
run), its accuracy at 200 labels, and the learner's compute seconds.

    python benchmarks/al_simulation.py [--rounds 20] [--repeats 5] [--strategies margin,entropy,margin+cluster]
    python benchmarks/al_simulation.py --learners head,setfit,finetune,auto --strategies margin --rounds 15 \
        --repeats 1 --truncate 600 --tag _ladder
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tempfile  # noqa: E402

from data import DEFAULT_OUT, bbc_news, chat_topics, movie_reviews, wnut16, wordnet_senses  # noqa: E402

from labelloop.al.learners import (
    DENSE,  # noqa: E402
    Pool,  # noqa: E402
)
from labelloop.al.simulation import SimulationConfig, embed_cached, plot, read_labeled, schedule, simulate  # noqa: E402
from labelloop.al.spans import read_spans, simulate_spans  # noqa: E402
from labelloop.encoder import load_encoder, resolve_model_path  # noqa: E402
from labelloop.models import ChoicesModel  # noqa: E402
from labelloop.settings import LabelLoopSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETS = {"movie_reviews": movie_reviews, "bbc_news": bbc_news, "chat_topics": chat_topics, "wnut16": wnut16,
        "wordnet_senses": wordnet_senses}
SPANS = {"wnut16"}  # span labeling, scored by span F1


def run_spans(name: str, path: Path, config: SimulationConfig, tag: str = "") -> dict:
    texts, spans, labels = read_spans(path)
    encoder = load_encoder("")
    encodings = []
    for i in tqdm(range(0, len(texts), 256), desc=f"{name}: encoding", file=sys.stderr):
        encodings += encoder.encode(texts[i : i + 256])
    steps = config.repeats * len(config.all_strategies) * (config.rounds + 1)
    with tqdm(total=steps, desc=f"{name}: simulating", unit="fit", file=sys.stderr) as bar:
        result = simulate_spans(texts, spans, labels, encodings, config, bar.update)
    result["data"] = {"name": name, "n": len(texts), "labels": list(labels)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"al_{name}{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"al_{name}{tag}.png", title=f"{name} ({len(texts)} texts, {config.repeats} repeats)")
    return result


def run(name: str, path: Path, config: SimulationConfig, cache: Path, tag: str = "", truncate: int = 0) -> dict:
    if name in SPANS:
        return run_spans(name, path, config, tag)
    texts, labels = read_labeled(path)
    if truncate:
        texts = [t[:truncate] for t in texts]
    names = tuple(sorted(set(labels)))
    encoder = load_encoder("")
    with tqdm(total=len(texts), desc=f"{name}: embedding", unit="text", file=sys.stderr) as bar:
        x = embed_cached(encoder, texts, cache, bar.update)
    y = np.asarray([names.index(label) for label in labels])
    fits = sum(len(schedule(config, learner in DENSE)) for learner in config.learners)
    steps = config.repeats * len(config.all_strategies) * fits
    with tempfile.TemporaryDirectory(prefix="al-simulation-") as work, \
            tqdm(total=steps, desc=f"{name}: simulating", unit="fit", file=sys.stderr) as bar:
        pool = Pool(texts, x, y, names, ChoicesModel.zero_shot(encoder, names), resolve_model_path(""), Path(work))
        result = simulate(pool, config, bar.update)
    result["data"] = {"name": name, "n": len(texts), "labels": list(names)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"al_{name}{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"al_{name}{tag}.png", title=f"{name} ({len(texts)} texts, {config.repeats} repeats)")
    return result


def table(name: str, result: dict) -> str:
    metric = "span F1" if result.get("metric") == "span_f1" else "accuracy"
    lines = [f"{name}: head on the full pool {result['full_pool_accuracy']:.3f} ({metric})",
             "| learner | strategy | AUC | AUC - random | labels to 95% | ratio to random | at 200 | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for learner, found in result["learners"].items():
        lines += rows(learner, found)
    return "\n".join(lines)


def rows(learner: str, found: dict) -> list[str]:
    rand = found["strategies"]["random"]
    max_labels = rand["curve"][-1][0]
    lines = []
    for strategy, s in found["strategies"].items():
        to95 = s["labels_to_95"]
        if strategy == "random":
            ratio = "1"
        elif to95 is None:
            ratio = "-"
        elif rand["labels_to_95"] is None:
            ratio = f"< {to95 / max_labels:.2f} (random >{max_labels})"
        else:
            ratio = f"{to95 / rand['labels_to_95']:.2f}"
        at200 = (f"{s['accuracy_at']['200']:.3f} ± {s['accuracy_at_std']['200']:.3f}"
                 if "200" in s["accuracy_at"] else "-")
        lines.append(f"| {learner} | {strategy} | {s['auc']:.3f} | {s['auc'] - rand['auc']:+.3f} | "
                     f"{to95 if to95 is not None else f'>{max_labels}'} | {ratio} | {at200} | {found['seconds']:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="margin,entropy,margin+cluster")
    parser.add_argument("--learners", default="head", help="comma list of head, setfit, finetune, auto")
    parser.add_argument("--truncate", type=int, default=0, help="characters of each text kept (0: all)")
    parser.add_argument("--seed-size", type=int, default=25)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tag", default="", help="suffix for the result files, e.g. _long")
    parser.add_argument("--data", default="movie_reviews,bbc_news",
                        help=f"comma list of {', '.join(SETS)}")
    args = parser.parse_args()
    config = SimulationConfig(learners=tuple(args.learners.split(",")),
                              strategies=tuple(args.strategies.split(",")), seed_size=args.seed_size,
                              batch=args.batch, rounds=args.rounds, repeats=args.repeats)
    cache = LabelLoopSettings().home / "cache"
    for name in args.data.split(","):
        print(table(name, run(name, SETS[name](DEFAULT_OUT), config, cache, args.tag, args.truncate)) + "\n", flush=True)


if __name__ == "__main__":
    main()
