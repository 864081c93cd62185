"""Coreference chains from a few annotated texts, against a string-match baseline, on two differently built sets.

No coreference corpus installs here, so both sets are built, the way an annotator would mark them in Label Studio
(mentions as ``<Labels>`` regions, a ``<Relations>`` link from each later mention to an earlier one of its chain):

- **meet** (the tuning set): two people of different genders meet; one is named again, then a pronoun stands for
  them. The decoder's rules were developed on it.
- **office** (held out, never looked at while tuning): other names, three people, titles ("Dr. Weber"),
  possessives ("her report"), nominal mentions ("the engineer"), places as mentions of their own, and sentences in
  other orders.

LabelLoop's linker (:class:`labelloop.relations.Linker` on the packaged MiniLM, trained through the backend's
``RelationsKind.fit``) learns from ``--train`` annotated texts and links the gold mentions of ``--test`` others;
"pairwise" is the same model decoded pair by pair (each pair whose best class is a link), what it did before
chains. The baseline links mentions that share a word (no pronoun is ever linked). Scores: MUC and B³ F1 of the
chains, and link F1, mean over ``--repeats`` draws.

    python benchmarks/coreference.py [--train 60] [--test 30] [--repeats 3]

Results: benchmarks/results/coreference.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labelloop.encoder import load_encoder  # noqa: E402
from labelloop.labeling.kinds import RelationsKind  # noqa: E402
from labelloop.labeling.schema import parse_label_config  # noqa: E402
from labelloop.models import Features  # noqa: E402
from labelloop.relation_scores import coreference_scores, link_f1  # noqa: E402
from labelloop.relations import Links, decode  # noqa: E402
from labelloop.spans import Span  # noqa: E402

CONFIG = """<View><Labels name="mention" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>
<Relations><Relation value="coref"/></Relations><Text name="text" value="$text"/></View>"""

MEET_PEOPLE = {"she": [("Anna", "Berg"), ("Maria", "Lopez"), ("Sara", "Kim"), ("Eva", "Nolan"), ("Lena", "Fischer"),
                       ("Nina", "Rossi"), ("Clara", "Diaz"), ("Olga", "Ivanova")],
               "he": [("Tom", "Hale"), ("Luis", "Ortega"), ("John", "Smith"), ("Paul", "Grant"), ("Omar", "Haddad"),
                      ("Ken", "Sato"), ("Ivan", "Petrov"), ("Marc", "Dubois")]}
MEET_PLACES = ["Oslo", "Madrid", "Vienna", "Lisbon", "Berlin", "Dublin", "Prague", "Athens"]
MEET = [
    "{A} met {B} in {P}. {a_last} said {a_pro} was tired.",
    "{A} called {B} from {P}. Later {b_last} told the press that {b_pro} would come.",
    "In {P}, {A} and {B} signed the deal. {a_last} thanked {b_last}, and {a_pro} left early.",
    "{B} waited for {A} at the station in {P}. When {a_last} arrived, {b_pro} smiled.",
]
OFFICE_PEOPLE = {"she": [("Dr.", "Weber"), ("Ms.", "Akande"), ("Professor", "Lindqvist"), ("Judge", "Moreau"),
                         ("Ms.", "Tanaka"), ("Dr.", "Novak")],
                 "he": [("Mr.", "Okafor"), ("Dr.", "Brennan"), ("Mr.", "Castillo"), ("Professor", "Huang"),
                        ("Mr.", "Kowalski"), ("Dr.", "Mensah")]}
OFFICE_ROLES = ["the engineer", "the auditor", "the manager", "the lawyer"]
OFFICE_PLACES = ["Nairobi", "Toronto", "Kyoto", "Porto", "Zurich", "Lagos"]
OFFICE = [
    "{A} reviewed the plan with {B}. {a_pro_cap} sent {a_pos} report to {C} in {P}, and {c_last} approved it.",
    "After the meeting in {P}, {c_role} asked {A} about the budget. {a_last} said {a_pro} had checked it twice.",
    "{B} and {C} flew to {P}. There {b_last} met {A}, who gave {b_obj} {a_pos} notes.",
    "{C} hired {A} last year. Since then {a_pro} has worked with {b_full}, and {c_last} praises {a_obj} often.",
]
PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "him", "his")}


def build(template: str, values: dict[str, tuple[str, str, int | None]]) -> tuple[str, list[Span], list[tuple]]:
    """Fill ``template``; each value is ``(text, label, entity)``; links join each mention to the previous one
    of its entity."""
    text, spans, entity_of = "", [], []
    rest = template
    while "{" in rest:
        before, _, after = rest.partition("{")
        key, _, rest = after.partition("}")
        text += before
        shown, label, entity = values[key]
        if entity is not None:
            spans.append(Span(len(text), len(text) + len(shown), label))
            entity_of.append(entity)
        text += shown
    text += rest
    links, last = [], {}
    for k, e in enumerate(entity_of):
        if e in last:
            links.append((k, last[e], "coref"))
        last[e] = k
    return text, spans, links


def meet_story(rng: random.Random) -> tuple[str, list[Span], list[tuple]]:
    g_a, g_b = rng.sample(["she", "he"], 2)
    (a_first, a_last), (b_first, b_last) = rng.choice(MEET_PEOPLE[g_a]), rng.choice(MEET_PEOPLE[g_b])
    v = {"A": (f"{a_first} {a_last}", "PER", 0), "B": (f"{b_first} {b_last}", "PER", 1),
         "P": (rng.choice(MEET_PLACES), "LOC", 2), "a_last": (a_last, "PER", 0), "b_last": (b_last, "PER", 1),
         "a_pro": (g_a, "PER", 0), "b_pro": (g_b, "PER", 1)}
    return build(rng.choice(MEET), v)


def office_story(rng: random.Random) -> tuple[str, list[Span], list[tuple]]:
    genders = [rng.choice(["she", "he"]) for _ in range(3)]
    people = [rng.choice(OFFICE_PEOPLE[g]) for g in genders]
    while len({p[1] for p in people}) < 3:
        people = [rng.choice(OFFICE_PEOPLE[g]) for g in genders]
    (ga, gb, _), (a, b, c) = genders, people
    role = rng.choice(OFFICE_ROLES)
    v = {"A": (f"{a[0]} {a[1]}", "PER", 0), "B": (f"{b[0]} {b[1]}", "PER", 1), "C": (f"{c[0]} {c[1]}", "PER", 2),
         "P": (rng.choice(OFFICE_PLACES), "LOC", 3), "a_last": (a[1], "PER", 0), "b_last": (b[1], "PER", 1),
         "c_last": (c[1], "PER", 2), "b_full": (f"{b[0]} {b[1]}", "PER", 1),
         "a_pro": (PRONOUNS[ga][0], "PER", 0), "a_pro_cap": (PRONOUNS[ga][0].capitalize(), "PER", 0),
         "a_obj": (PRONOUNS[ga][1], "PER", 0), "a_pos": (PRONOUNS[ga][2], "PER", 0),
         "b_obj": (PRONOUNS[gb][1], "PER", 1), "c_role": (role, "PER", 2)}
    return build(rng.choice(OFFICE), v)


def string_match(answer: Links, text: str) -> list[tuple[int, int, str]]:
    """Each non-pronoun mention linked to the nearest earlier one that shares a word with it."""
    from labelloop.relations import PRONOUNS as PRON

    words = [{w.lower().strip(".") for w in text[s.start:s.end].split()} - PRON for s in answer.spans]
    links = []
    for j in range(len(answer.spans)):
        i = next((i for i in range(j - 1, -1, -1) if words[i] & words[j]), None)
        if i is not None and words[j]:
            links.append((j, i, "coref"))
    return links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--test", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/coreference.json"))
    args = parser.parse_args()
    (_, spec) = parse_label_config(CONFIG).controls
    learner = Features(lambda: load_encoder(""))
    rows = []
    for name, make in (("meet", meet_story), ("office", office_story)):
        for r in range(args.repeats):
            rng = random.Random(1000 * r + len(name))
            data = [make(rng) for _ in range(args.train + args.test)]
            answers = [(t, Links(tuple(s), tuple(sorted(k)))) for t, s, k in data]
            train, test = answers[:args.train], answers[args.train:]
            started = time.perf_counter()
            linker = RelationsKind().fit(spec, [t for t, _ in train], [a for _, a in train], learner)
            seconds = time.perf_counter() - started
            found = linker.predict_links([t for t, _ in test], [list(a.spans) for _, a in test])
            gold = [a for _, a in test]
            row = {"set": name, "held_out": name == "office", "repeat": r, "train_seconds": seconds}
            systems = {
                "labelloop": [[(x.source, x.target, x.label) for x in links] for links, _ in found],
                "pairwise": [[(x.source, x.target, x.label) for x in decode(pairs, probs, linker.labels)]
                             for pairs, probs in ((_pairs(len(a.spans)), p) for a, (_, p) in zip(gold, found))],
                "string_match": [string_match(a, t) for t, a in test],
            }
            for system, predicted in systems.items():
                scores = coreference_scores(gold, predicted)
                row[system] = {"muc_f1": scores["muc"]["f1"], "b_cubed_f1": scores["b_cubed"]["f1"],
                               "link_f1": link_f1(gold, predicted)["f1"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = []
    print(f"\n{args.train} annotated texts, {args.test} held out, {args.repeats} draws (mean)")
    print(f"{'set':<18} {'system':<13} {'MUC F1':>7} {'B3 F1':>7} {'link F1':>8}")
    for name in ("meet", "office"):
        for system in ("labelloop", "pairwise", "string_match"):
            mine = [r[system] for r in rows if r["set"] == name]
            line = {"set": name, "held_out": name == "office", "system": system,
                    **{k: float(np.mean([m[k] for m in mine])) for k in ("muc_f1", "b_cubed_f1", "link_f1")},
                    "muc_f1_std": float(np.std([m["muc_f1"] for m in mine]))}
            summary.append(line)
            label = name + (" (held out)" if name == "office" else "")
            print(f"{label:<18} {system:<13} {line['muc_f1']:>7.3f} {line['b_cubed_f1']:>7.3f} {line['link_f1']:>8.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"train_texts": args.train, "test_texts": args.test, "summary": summary,
                                    "runs": rows}, indent=2) + "\n")


def _pairs(n: int):
    from labelloop.relations import candidate_pairs

    return candidate_pairs(n)


if __name__ == "__main__":
    main()
