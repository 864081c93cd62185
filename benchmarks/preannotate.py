"""Whole-project pre-annotation against a real Label Studio, interleaved, every run on texts of its own.

Four sides, each run once per round (``--rounds`` rounds, the first side rotating), each run in a project and
on texts no other run saw (the backend caches sentence vectors, so reused texts would measure that cache):
  preannotate  `preannotate` on ``--tasks`` tasks end to end (list tasks, POST /predict to a backend process,
               import_predictions in chunks)
  raw          the raw batched encoder forward on as many texts, length-sorted (its best case): the
               preannotate / raw ratio's baseline (target under 1.3)
  action       Label Studio's own "Retrieve predictions" on ``--action-tasks`` tasks, through the same backend
  ours_small   `preannotate` on ``--action-tasks`` tasks: the action / ours_small ratio is the speed-up
Reported as min and median seconds per side, and the ratios of the medians.

    python benchmarks/preannotate.py [--tasks 10000] [--action-tasks 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved, spread  # noqa: E402
from predict_overhead import make_texts, raw_forward  # noqa: E402

from labelloop.encoder import resolve_model_path  # noqa: E402
from labelloop.studio.localstudio import LocalLabelStudio, free_port, wait_healthy  # noqa: E402
from labelloop.studio.lsclient import make_client  # noqa: E402
from labelloop.studio.projects import connect_backend, create_project
from labelloop.templates import label_config  # noqa: E402
from labelloop.workflows.preannotation import (
    BackendPredictor,
    preannotate,  # noqa: E402
)

CONFIG = label_config("sentiment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--action-tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each side once per round)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/preannotate.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labelloop-bench-"))
    studio = LocalLabelStudio(work / "ls", free_port(), "bench@example.com", secrets.token_urlsafe(12),
                              secrets.token_hex(20))
    print("starting Label Studio (migrations take about a minute) ...", flush=True)
    studio.start(timeout=400)
    port = free_port()
    backend = subprocess.Popen([sys.executable, "-m", "labelloop.cli", "--log-level", "warning", "backend",
                                "--port", str(port)], env={**os.environ, "LABELLOOP_HOME": str(work / "home")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/health", timeout=120, process=backend)
        ls = make_client(studio.url, studio.token)
        predictor = BackendPredictor(url)
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path("")
        tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

        def project_of(n: int, seed: int, *, connect: bool = False) -> int:
            """A new project holding ``n`` tasks of texts of its own (not timed)."""
            project = create_project(ls, f"bench {n} #{seed}", CONFIG)
            texts = make_texts(n, seed=seed)
            for i in range(0, n, 2000):
                ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in texts[i : i + 2000]])
            if connect:
                connect_backend(ls, project.id, url)
            predictor.predict([{"id": 0, "data": {"text": f"warm up {seed}"}}], project.id, CONFIG)
            return project.id

        def ours(n: int, seed: int) -> float:
            project_id = project_of(n, seed)
            report = preannotate(ls, project_id, predictor, progress=False)
            assert report.stored == n, report
            return report.seconds

        def action(seed: int) -> float:
            project_id = project_of(args.action_tasks, seed, connect=True)
            started = time.perf_counter()
            ls.actions.create(id="retrieve_tasks_predictions", project=project_id,
                              selected_items={"all": True, "excluded": []})
            seconds = time.perf_counter() - started
            stored = sum(1 for t in ls.tasks.list(project=project_id, fields="task_only", page_size=1000).items
                         if t.total_predictions)
            assert stored == args.action_tasks, stored
            return seconds

        runs = interleaved({
            "preannotate": lambda seed: ours(args.tasks, seed),
            "raw": lambda seed: raw_forward(tokenizer, model, make_texts(args.tasks, seed=seed), sort=True),
            "action": action,
            "ours_small": lambda seed: ours(args.action_tasks, seed),
        }, args.rounds, report=lambda name, r, s: print(f"  round {r}: {name:<12} {s:7.2f} s", flush=True))
    finally:
        backend.terminate()
        backend.wait(timeout=30)
        studio.stop()
        shutil.rmtree(work, ignore_errors=True)

    seconds = {name: spread(times) for name, times in runs.items()}
    median = {name: s["median"] for name, s in seconds.items()}
    result = {
        "tasks": args.tasks, "action_tasks": args.action_tasks, "rounds": args.rounds, "seconds": seconds,
        "preannotate_tasks_per_s": args.tasks / median["preannotate"],
        "raw_tasks_per_s": args.tasks / median["raw"],
        "ratio_to_raw": median["preannotate"] / median["raw"],
        "target_ratio": 1.3,
        "speedup_over_action": median["action"] / median["ours_small"],
        "cpus": os.cpu_count(),
    }
    print(f"{args.rounds} interleaved rounds, fresh texts per run (min / median seconds):")
    for name, s in seconds.items():
        print(f"  {name:<12} {s['min']:7.2f} / {s['median']:7.2f} s")
    print(f"preannotate {args.tasks} tasks end to end: {result['preannotate_tasks_per_s']:.0f} tasks/s; ratio to the raw "
          f"forward {result['ratio_to_raw']:.2f} (target < 1.3)")
    print(f"{args.action_tasks} tasks: Label Studio's action / preannotate = {result['speedup_over_action']:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
