"""NER fine-tuning with the default settings on WNUT-16, against the all-O baseline, on CPU.

A small encoder with LoRA tends to collapse to predicting no entity at all. This trains `labelloop train
--task ner` with its defaults (full fine-tuning for small encoders, class-weighted loss) on 1,900 tweets and
reports entity-level F1 on the other 494 beside the all-O baseline (F1 0 by definition: it finds nothing)
and the untrained head. A LoRA run with the same budget is shown too.

    python benchmarks/finetune_ner.py [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, wnut16  # noqa: E402
from finetune_cpu import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune_ner.json"))
    args = parser.parse_args()
    rows = wnut16(DEFAULT_OUT).read_text().splitlines()
    random.Random(0).shuffle(rows)
    home = Path(tempfile.mkdtemp(prefix="labelloop-ner-"))
    (home / "data").mkdir()
    (home / "data/train.jsonl").write_text("\n".join(rows[:1900]) + "\n")
    (home / "data/test.jsonl").write_text("\n".join(rows[1900:]) + "\n")
    result = {"epochs": args.epochs, "all_o_baseline_entity_f1": 0.0, "runs": {}}
    for name, extra in (("default", []), ("lora", ["--method", "lora"])):
        r = train(home, name, home / "data/train.jsonl", home / "data/test.jsonl", args.epochs,
                  ["--task", "ner", "--max-length", "64", *extra])
        run = r["eval"]["run"]
        result["runs"][name] = {"method": r["summary"]["method"], "entity_f1": run["entity_f1"],
                                "entity_precision": run["entity_precision"], "entity_recall": run["entity_recall"],
                                "predicted_entity_tokens": run["predicted_entity_tokens"],
                                "seconds": r["summary"]["seconds"]}
        result["untrained_head_entity_f1"] = r["eval"]["base"]["entity_f1"]
    print(f"all-O baseline entity F1 0.000; untrained head {result['untrained_head_entity_f1']:.3f}")
    for name, r in result["runs"].items():
        print(f"{name:<8} ({r['method']}): entity F1 {r['entity_f1']:.3f}  P {r['entity_precision']:.3f}  "
              f"R {r['entity_recall']:.3f}  entity tokens predicted {r['predicted_entity_tokens']}  {r['seconds']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
