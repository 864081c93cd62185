"""Every verdict of simulated ladder runs, checked against the held-out test.

``labelloop al simulate --learner auto`` records, for each decided gate, both models' accuracy on the test texts
(``held_out``: never served, so never judged on). This reads result files and says, verdict by verdict, whether it
was right: a promotion of a challenger worse on the test is a false promotion; a refusal of one at least
``--gain`` better is a miss.

    python benchmarks/ladder_verdicts.py benchmarks/results/al_wordnet_senses_ladder_held_out*.json

Prints a table and the counts; ``--json`` writes them too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DECIDED = ("promote", "refuse", "futility", "rollback", "keep")


def verdicts(path: Path) -> list[dict]:
    """The decided gate events of one result file that carry a held-out check."""
    data = json.loads(path.read_text())
    rows = []
    for event in data.get("learners", {}).get("auto", {}).get("events", []):
        held_out = event.get("evidence", {}).get("held_out")
        if event["what"] in DECIDED and held_out:
            rows.append({"file": path.name, "repeat": event.get("repeat", 0), "labels": event["labels"],
                         "verdict": event["what"], "challenger": event["evidence"].get("challenger_version"),
                         "serving_test": held_out["champion"], "challenger_test": held_out["challenger"],
                         "gain": held_out["challenger"] - held_out["champion"], "n_test": held_out["n"]})
    return rows


def judge(row: dict, gain: float) -> str:
    """Whether the verdict was right, by the test. A rollback watch compares the promoted model (challenger) with
    the one it replaced (serving): "keep" is right when the promoted one is not worse, "rollback" when it is."""
    verdict, delta = row["verdict"], row["gain"]
    if verdict == "promote":
        return "right" if delta >= 0 else "false promotion"
    if verdict in ("refuse", "futility"):
        return "missed gain" if delta >= gain else "right"
    if verdict == "keep":
        return "right" if delta >= 0 else "kept a worse model"
    return "right" if delta < 0 else "rolled back a better model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--gain", type=float, default=0.05, help="a refused gain at least this large is a miss")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [dict(row, outcome=judge(row, args.gain)) for path in args.files for row in verdicts(path)]
    if not rows:
        raise SystemExit("no verdict with a held-out check in these files (runs before it was recorded have none)")
    print(f"{'file':<44} {'labels':>6}  {'verdict':<9} {'serving':>7} {'challenger':>10} {'gain':>6}  outcome")
    for row in rows:
        print(f"{row['file']:<44} {row['labels']:>6}  {row['verdict']:<9} {row['serving_test']:>7.3f} "
              f"{row['challenger_test']:>10.3f} {row['gain']:>+6.3f}  {row['outcome']}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    promotions = sum(row["verdict"] == "promote" for row in rows)
    print(f"{len(rows)} verdicts: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
          + f"; false promotions {counts.get('false promotion', 0)} of {promotions} promotions")
    if args.json:
        args.json.write_text(json.dumps({"verdicts": rows, "counts": counts, "gain": args.gain}, indent=2))


if __name__ == "__main__":
    main()
