"""The promotion gate, replayed: power, false promotions and labels spent, against the gate it replaced.

Both gates see the same draws in every replay:
- baseline: the previous gate, an exact one-sided McNemar test on uniformly random audit items, from 30 labelled
  items on and judged again after every new audit label (as the backend did), up to the same label budget;
- disagreement gate (:func:`labelloop.gate.decide`): the labels go to the audit items where champion and
  challenger disagree, in a random order, and the betting test decides after every label; it refuses when the
  frame's disagreements run out undecided;
- carried (real data only): the same, but a frame that runs out undecided hands its evidence on to a fresh,
  disjoint frame of the same pool, within the same label budget (:func:`carried_gate`); and the same with at
  most ``CAP`` frames per challenger, as the ladder does (:data:`labelloop.policy.CARRY_FRAMES`).

Part 1 draws items from known rates (champion 80% right; challengers at +0, +5 and +8 points). Part 2 replays
real models on real data from cached predictions: heads on frozen MiniLM vectors trained on different label
counts (the champion on ``--champion`` labels, challengers on fewer and more), an audit frame drawn at random
from the pool for each replay, and the truth (which model is better) from a held-out test set of the same data.
No retraining: every replay is a new audit draw over the same predictions.

    python benchmarks/gate.py [--replays 2000] [--data movie_reviews,bbc_news] [--out gate.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, bbc_news, chat_topics, movie_reviews, wordnet_senses  # noqa: E402
from ladder import mcnemar_exact  # noqa: E402

from labelloop.gate import decide  # noqa: E402
from labelloop.policy import CARRY_FRAMES  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CAP = CARRY_FRAMES  # frames the ladder lets a challenger use, replayed beside carrying over without a cap
DATA = {"movie_reviews": movie_reviews, "bbc_news": bbc_news, "chat_topics": chat_topics,
        "wordnet_senses": wordnet_senses}


def baseline_gate(champ: np.ndarray, chall: np.ndarray, budget: int, *, alpha: float = 0.05, min_audit: int = 30
                  ) -> tuple[str, int]:
    """The previous gate on random audit items (correctness arrays in labelling order): verdict, labels used."""
    for n in range(min_audit, min(budget, len(champ)) + 1):
        a, b = champ[:n], chall[:n]
        if b.sum() < a.sum():
            return "refuse", n
        if b.sum() > a.sum() and mcnemar_exact(int((a & ~b).sum()), int((b & ~a).sum())) < alpha:
            return "promote", n
    return "hold", min(budget, len(champ))


def disagreement_gate(champ: np.ndarray, chall: np.ndarray, disagree: np.ndarray, order: np.ndarray, budget: int, *,
                      alpha: float = 0.05, min_gain: float = 0.01) -> tuple[str, int]:
    """The disagreement gate over a frame (correctness and disagreement per item; ``order``: the random order in
    which its disagreements are served): verdict, labels used."""
    p = float(disagree.mean())
    served = order[disagree[order]]
    for n in range(0, min(budget, len(served)) + 1):
        idx = served[:n]
        evidence = decide(champ[idx], chall[idx], np.ones(n, bool), p_disagree=p, frame=len(champ),
                          disagreements=int(disagree.sum()), remaining=len(served) - n, champion_version="champion",
                          challenger_version="challenger", alpha=alpha, min_gain=min_gain, budget=budget)
        if evidence.verdict != "hold":
            return evidence.verdict, n
    return "hold", min(budget, len(served))


def carried_gate(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], budget: int, *,
                 alpha: float = 0.05, min_gain: float = 0.01) -> tuple[str, int, int]:
    """The disagreement gate as the ladder runs it, where a frame that runs out undecided hands its evidence on to
    the next one (:func:`labelloop.gate.decide`'s ``carry``): ``frames`` are successive audit frames (each as
    for :func:`disagreement_gate`), the outcomes and P(D) pooled over the frames served so far, one budget for
    the challenger. Verdict, labels used and frames opened."""
    champs: list[np.ndarray] = []
    challs: list[np.ndarray] = []
    seen = disagreements = 0
    evidence = None
    for k, (champ, chall, disagree, order) in enumerate(frames):
        served = order[disagree[order]]
        seen += len(champ)
        disagreements += int(disagree.sum())
        for n in range(0, len(served) + 1):
            a = np.concatenate([*champs, champ[served[:n]]])
            b = np.concatenate([*challs, chall[served[:n]]])
            evidence = decide(a, b, np.ones(len(a), bool), p_disagree=disagreements / seen, frame=seen,
                              disagreements=disagreements, remaining=len(served) - n, champion_version="champion",
                              challenger_version="challenger", alpha=alpha, min_gain=min_gain, budget=budget,
                              carry=k < len(frames) - 1)
            if evidence.verdict != "hold":
                break
        if evidence is not None and evidence.verdict != "carry":
            return evidence.verdict, evidence.labels, k + 1
        champs.append(champ[served])
        challs.append(chall[served])
    return "hold", sum(len(c) for c in champs), len(frames)


def draw(frame: int, only_champ: float, gain: float, g: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic frame: the champion right on 80% of items, alone on ``only_champ`` of them, the challenger
    alone on ``only_champ + gain``; each model's correctness, where they disagree, and a random serving order."""
    u = g.random(frame)
    champ = u < 0.80  # both right below 0.80 - only_champ, the champion alone up to 0.80
    chall = np.where(u < 0.80 - only_champ, True, np.where(u < 0.80, False, u < 0.80 + only_champ + gain))
    return champ, chall, champ != chall, g.permutation(frame)


def synthetic(replays: int, budget: int, rng: np.random.Generator, small: int = 100) -> list[dict]:
    """Part 1: champion 80% right, the models disagree on 16% of items (binary), challenger +0/+5/+8 points; on
    frames of 400 items, and on small frames of ``small`` (about 16 disagreements each, fewer than the budget),
    one frame alone against frames carried over."""
    rows = []
    later = np.random.default_rng(small)  # the small frames' own draws: the frames of 400 stay as they were
    for gain in (0.0, 0.05, 0.08):
        only_champ = (0.16 - gain) / 2  # P(champion right, challenger wrong); the rest of D is the other way

        verdicts: dict[str, list] = {"baseline": [], "disagreement": [], f"disagreement, frame {small}": [],
                                     f"carried, frames of {small}": []}
        for _ in range(replays):
            champ, chall, disagree, order = draw(400, only_champ, gain, rng)
            verdicts["baseline"].append(baseline_gate(champ[order], chall[order], budget))
            verdicts["disagreement"].append(disagreement_gate(champ, chall, disagree, order, budget))
            frames = [draw(small, only_champ, gain, later) for _ in range(4 * budget * 100 // (16 * small) + 1)]
            verdicts[f"disagreement, frame {small}"].append(disagreement_gate(*frames[0], budget))
            verdicts[f"carried, frames of {small}"].append(carried_gate(frames, budget)[:2])
        for gate, found in verdicts.items():
            promoted = np.array([v == "promote" for v, _ in found])
            rows.append({"gain": gain, "gate": gate, "budget": budget, "replays": replays,
                         "promoted": float(promoted.mean()),
                         "median_labels_to_decide": float(np.median([n for v, n in found if v != "hold"] or [0])),
                         "median_labels_to_promote": float(np.median([n for v, n in found if v == "promote"] or [0]))})
    return rows


def cached_models(name: str, champion_labels: int, sizes: list[int], seed: int) -> dict:
    """Heads trained on ``sizes`` labels of one data set (and on ``champion_labels``): their predictions on the
    pool (the audit frames' source) and on a held-out test set, with the gold labels."""
    from labelloop.data.jsonl import read_jsonl
    from labelloop.encoder import load_encoder
    from labelloop.models import ChoicesModel

    rows = read_jsonl(DATA[name](DEFAULT_OUT))
    texts = [" ".join(r["text"].split()[:80]) for r in rows]
    labels = tuple(sorted({r["label"] for r in rows}))
    y = np.array([labels.index(r["label"]) for r in rows])
    encoder = load_encoder("")
    started = time.perf_counter()
    x = encoder.embed(texts)
    print(f"{name}: embedded {len(texts)} texts in {time.perf_counter() - started:.0f}s", flush=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_test = len(texts) // 4
    test, rest = order[:n_test], order[n_test:]
    train_pool, pool = rest[: len(rest) // 2], rest[len(rest) // 2:]
    prior = ChoicesModel.zero_shot(encoder, labels)
    out = {"labels": labels, "y_pool": y[pool], "y_test": y[test], "models": {}}
    for n in sorted({champion_labels, *sizes}):
        head = prior.fit(x[train_pool[:n]], y[train_pool[:n]])
        out["models"][n] = (head.predict_proba(x[pool]).argmax(1), head.predict_proba(x[test]).argmax(1))
    return out


def real_replays(cache: dict, champion_labels: int, replays: int, budget: int, frame: int,
                 rng: np.random.Generator) -> list[dict]:
    """Part 2: for each challenger, ``replays`` audit frames drawn from the pool; every gate on each."""
    y_pool, y_test = cache["y_pool"], cache["y_test"]
    champ_pool, champ_test = cache["models"][champion_labels]
    rows = []
    later = np.random.default_rng(len(y_pool))
    for n, (chall_pool, chall_test) in cache["models"].items():
        if n == champion_labels:
            continue
        test_gain = float((chall_test == y_test).mean() - (champ_test == y_test).mean())
        verdicts: dict[str, list] = {"baseline": [], "disagreement": [], "carried": [],
                                     f"carried, at most {CAP} frames": []}
        frames_opened = []
        for _ in range(replays):
            items = rng.choice(len(y_pool), size=frame, replace=False)
            champ, chall = champ_pool[items] == y_pool[items], chall_pool[items] == y_pool[items]
            disagree = champ_pool[items] != chall_pool[items]
            order = rng.permutation(frame)
            verdicts["baseline"].append(baseline_gate(champ[order], chall[order], budget))
            verdicts["disagreement"].append(disagreement_gate(champ, chall, disagree, order, budget))
            # Later frames, disjoint from the first and from each other, from their own generator so that the
            # other two gates see the same draws as without them.
            frames = [(champ, chall, disagree, order)]
            rest = later.permutation(np.setdiff1d(np.arange(len(y_pool)), items))
            for more in rest[: frame * (len(rest) // frame)].reshape(-1, frame):
                frames.append((champ_pool[more] == y_pool[more], chall_pool[more] == y_pool[more],
                               champ_pool[more] != chall_pool[more], later.permutation(frame)))
            verdict, labels, opened = carried_gate(frames, budget)
            verdicts["carried"].append((verdict, labels))
            frames_opened.append(opened)
            verdicts[f"carried, at most {CAP} frames"].append(carried_gate(frames[:CAP], budget)[:2])
        for gate, found in verdicts.items():
            promoted = float(np.mean([v == "promote" for v, _ in found]))
            rows.append({"champion_labels": champion_labels, "challenger_labels": n, "test_gain": test_gain,
                         "gate": gate, "promoted": promoted, "false_promotion": promoted if test_gain < 0 else 0.0,
                         "replays": replays, "budget": budget, "frame": frame,
                         "p_disagree": float(np.mean(champ_pool != chall_pool)),
                         "median_labels_to_decide": float(np.median([k for v, k in found if v != "hold"] or [0])),
                         **({"mean_frames": float(np.mean(frames_opened)),
                             "p90_frames": float(np.percentile(frames_opened, 90))} if gate == "carried" else {})})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replays", type=int, default=2000)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--frame", type=int, default=300, help="audit items per replayed frame (real data)")
    parser.add_argument("--data", default="movie_reviews,bbc_news")
    parser.add_argument("--champion", type=int, default=100, help="labels the real champion head learned from")
    parser.add_argument("--challengers", default="25,50,200,400,800")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gate.json", help="results file under benchmarks/results/")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    result: dict = {"synthetic": synthetic(args.replays, args.budget, rng), "real": {}}
    print(f"{'gain':>6} {'gate':>26} {'promoted':>9} {'median labels to decide':>24}")
    for r in result["synthetic"]:
        print(f"{r['gain']:>6.2f} {r['gate']:>26} {r['promoted']:>9.3f} {r['median_labels_to_decide']:>24.0f}")
    for name in [d for d in args.data.split(",") if d]:
        cache = cached_models(name, args.champion, [int(s) for s in args.challengers.split(",")], args.seed)
        rows = real_replays(cache, args.champion, max(500, args.replays // 2), args.budget, args.frame, rng)
        result["real"][name] = rows
        print(f"\n{name}: champion head on {args.champion} labels; {rows[0]['replays']} audit draws per challenger")
        print(f"{'challenger':>10} {'test gain':>9} {'P(D)':>6} {'gate':>26} {'promoted':>9} {'labels':>7} frames")
        for r in rows:
            frames = f" {r['mean_frames']:.1f} (p90 {r['p90_frames']:.0f})" if "mean_frames" in r else ""
            print(f"{r['challenger_labels']:>10} {r['test_gain']:>+9.3f} {r['p_disagree']:>6.3f} {r['gate']:>26} "
                  f"{r['promoted']:>9.3f} {r['median_labels_to_decide']:>7.0f}{frames}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / args.out
    path.write_text(json.dumps({**result, "args": vars(args)}, indent=2))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
