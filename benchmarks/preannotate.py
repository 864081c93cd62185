"""Whole-project pre-annotation against a real Label Studio, in one run.

  ours      `preannotate` (list tasks, POST /predict to a backend process, import_predictions in chunks)
            on 10,000 tasks, end to end, against the raw batched encoder forward on the same texts
            (length-sorted, its best case); target ratio under 1.3
  LS action Label Studio's own "Retrieve predictions" on 500 tasks, against `preannotate` on 500 tasks

    python benchmarks/preannotate.py [--tasks 10000] [--action-tasks 500]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_overhead import make_texts, raw_forward  # noqa: E402

from labelloop.encoder import resolve_model_path  # noqa: E402
from labelloop.localstudio import LocalLabelStudio, free_port, wait_healthy  # noqa: E402
from labelloop.lsclient import make_client  # noqa: E402
from labelloop.sync import BackendPredictor, connect_backend, create_project, preannotate  # noqa: E402
from labelloop.templates import label_config  # noqa: E402

CONFIG = label_config("sentiment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--action-tasks", type=int, default=500)
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
        texts = make_texts(args.tasks, seed=1)

        big = create_project(ls, "bench 10k", CONFIG)
        for i in range(0, len(texts), 2000):
            ls.projects.import_tasks(id=big.id, request=[{"text": t} for t in texts[i : i + 2000]])
        predictor.predict([{"id": 0, "data": {"text": "warm up"}}], big.id, CONFIG)
        report = preannotate(ls, big.id, predictor)
        assert report.stored == args.tasks, report

        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path("")
        tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
        raw_s = raw_forward(tokenizer, model, texts, sort=True)

        small_texts = make_texts(args.action_tasks, seed=2)
        action_project = create_project(ls, "bench action", CONFIG)
        ls.projects.import_tasks(id=action_project.id, request=[{"text": t} for t in small_texts])
        connect_backend(ls, action_project.id, url)
        started = time.perf_counter()
        ls.actions.create(id="retrieve_tasks_predictions", project=action_project.id,
                          selected_items={"all": True, "excluded": []})
        action_s = time.perf_counter() - started
        stored = sum(1 for t in ls.tasks.list(project=action_project.id, fields="task_only", page_size=1000).items
                     if t.total_predictions)
        ours_project = create_project(ls, "bench ours", CONFIG)
        ls.projects.import_tasks(id=ours_project.id, request=[{"text": t} for t in small_texts])
        ours_small = preannotate(ls, ours_project.id, predictor, progress=False)
    finally:
        backend.terminate()
        backend.wait(timeout=30)
        studio.stop()

    result = {
        "tasks": args.tasks,
        "preannotate_s": report.seconds,
        "preannotate_tasks_per_s": args.tasks / report.seconds,
        "raw_forward_s": raw_s,
        "raw_tasks_per_s": args.tasks / raw_s,
        "ratio_to_raw": report.seconds / raw_s,
        "target_ratio": 1.3,
        "action_tasks": args.action_tasks,
        "label_studio_action_s": action_s,
        "label_studio_action_stored": stored,
        "preannotate_small_s": ours_small.seconds,
        "speedup_over_action": action_s / ours_small.seconds,
        "cpus": os.cpu_count(),
    }
    print(f"preannotate {args.tasks} tasks end to end: {report.seconds:.1f} s ({result['preannotate_tasks_per_s']:.0f}"
          f" tasks/s); raw forward {raw_s:.1f} s; ratio {result['ratio_to_raw']:.2f} (target < 1.3)")
    print(f"{args.action_tasks} tasks: Label Studio's action {action_s:.1f} s ({stored} stored), preannotate "
          f"{ours_small.seconds:.1f} s: {result['speedup_over_action']:.0f}x faster")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
