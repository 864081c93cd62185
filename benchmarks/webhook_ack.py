"""How fast webhooks are acknowledged while trainings run, and how many trainings a flood costs.

Label Studio gives up on a webhook after 1 s and never retries it, so the acknowledgement must stay
fast while the backend trains. Each flood starts a fresh `labelloop backend` process and sends it 500 new
annotations from 16 senders at once, in one of three conditions:
  baseline   retraining off (LABELLOOP_RETRAIN_EVERY=0): the cost of storing and acknowledging alone
  training   retraining after every annotation (the default), so trainings run during the flood
  finetune   retraining off, and the ladder's background fine-tune of the encoder (its own process, CPU
             priority lowered, as the backend starts it) running through the flood
The conditions are interleaved (``--rounds`` rounds, each condition once per round, the first one rotating),
every flood on texts of its own. It prints min and median of each condition's p50/p99 acknowledgement times,
the p99 ratios of the medians, and the trainings per flood (coalescing: events that arrive during a training
become one follow-up run). Every process a flood starts (the backend, its trainings, the fine-tune) is
stopped by its PID before the next flood.

    python benchmarks/webhook_ack.py [--events 500] [--senders 16] [--rounds 3] [--out benchmarks/results/webhook_ack.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved, spread  # noqa: E402
from predict_overhead import CONFIG, make_texts  # noqa: E402

from labelloop.studio.localstudio import free_port, wait_healthy  # noqa: E402


def metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def start_finetune(home: Path, texts: list[str], labels: list[str]):
    """The fine-tune the backend's ladder would start on these labels, started the way it starts it."""
    from labelloop.data.jsonl import write_jsonl
    from labelloop.finetune.launch import start_run
    from labelloop.finetune.registry import RunRegistry
    from labelloop.policy import finetune_config

    write_jsonl(home / "finetune.jsonl", [{"text": t, "label": y} for t, y in zip(texts, labels)])
    registry = RunRegistry(home)
    run = start_run(registry, finetune_config(len(texts), home / "finetune.jsonl"), name="bench", niceness=10)
    deadline = time.monotonic() + 300
    while not registry.metrics(run.run_id) and time.monotonic() < deadline:  # its first steps are logged
        time.sleep(0.5)
    return registry, run


def flood(events: int, senders: int, retrain_every: int, seed: int, seeded: int, *, finetune: bool = False) -> dict:
    home = Path(tempfile.mkdtemp(prefix="labelloop-bench-"))
    port = free_port()
    env = {**os.environ, "LABELLOOP_HOME": str(home), "LABELLOOP_PUSH_PREDICTIONS": "false",
           "LABELLOOP_RETRAIN_EVERY": str(retrain_every), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "labelloop.cli", "--log-level", "warning", "backend", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    runs = None
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health", timeout=120)
        httpx.post(f"{base}/setup", json={"project": "1.1", "schema": CONFIG}, timeout=120).raise_for_status()
        texts = make_texts(events + seeded, seed=seed)
        labels = ["Positive", "Negative", "Neutral"]
        # Warm the encoder so both runs start from a loaded model.
        httpx.post(f"{base}/predict", json={"project": "1.1", "tasks": [{"data": {"text": "warm up"}}]}, timeout=120)

        local = threading.local()

        def send(i: int) -> float:
            body = {"action": "ANNOTATION_CREATED", "project": {"id": 1},
                    "task": {"id": i, "data": {"text": texts[i]}},
                    "annotation": {"id": i, "task": i, "result": [{"from_name": "sentiment", "to_name": "text",
                                   "type": "choices", "value": {"choices": [labels[i % 3]]}}]}}
            if not hasattr(local, "client"):  # one keep-alive connection per sender, as a client library keeps
                local.client = httpx.Client(timeout=30)
            started = time.perf_counter()
            r = local.client.post(f"{base}/webhook", json=body)
            r.raise_for_status()
            return time.perf_counter() - started

        # Annotations already in the project: with retraining on, a training over all of them is running
        # (embedding every text, then fitting) when the flood starts.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, range(events, events + seeded)))
        runs = start_finetune(home, texts[events:], [labels[i % 3] for i in range(events, events + seeded)]) \
            if finetune else None
        running = metric(base, "labelloop_trainings_running") or (runs and runs[0].get("bench").status == "running")
        started = time.perf_counter()
        with ThreadPoolExecutor(senders) as pool:
            times = np.array(list(pool.map(send, range(events))))
        seconds = time.perf_counter() - started
        running_after = metric(base, "labelloop_trainings_running") or (
            runs and runs[0].get("bench").status == "running")
        if runs:
            (runs[1].folder / "CANCEL").touch()
        deadline = time.monotonic() + 300
        while metric(base, "labelloop_training_queue") and time.monotonic() < deadline:
            time.sleep(0.5)
        return {"events": events, "senders": senders, "retrain_every": retrain_every, "seconds": round(seconds, 2),
                "p50_ms": round(1000 * float(np.percentile(times, 50)), 1),
                "p99_ms": round(1000 * float(np.percentile(times, 99)), 1),
                "max_ms": round(1000 * float(times.max()), 1),
                "over_1s": int((times > 1.0).sum()), "seeded_annotations": seeded,
                "training_running_at_start": bool(running), "training_running_at_end": bool(running_after),
                "trainings": int(metric(base, "labelloop_trainings_total"))}
    finally:
        proc.terminate()  # the backend stops the fine-tunes it started itself
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        stop_group(proc.pid)
        if runs:
            stop_group(int((runs[1].folder / "pid").read_text()))
        shutil.rmtree(home, ignore_errors=True)


def stop_group(pid: int) -> None:
    """Kill what is left of the process group ``pid`` leads (started in a session of its own)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--seeded", type=int, default=1500, help="annotations stored before the flood")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each condition once per round)")
    parser.add_argument("--out", default="benchmarks/results/webhook_ack.json")
    args = parser.parse_args()
    floods = interleaved({
        "baseline": lambda seed: flood(args.events, args.senders, 0, seed=seed, seeded=args.seeded),
        "training": lambda seed: flood(args.events, args.senders, 1, seed=seed, seeded=args.seeded),
        "finetune": lambda seed: flood(args.events, args.senders, 0, seed=seed, seeded=args.seeded, finetune=True),
    }, args.rounds, report=lambda name, r, f: print(f"  round {r}: {name:<9} p50 {f['p50_ms']:6.1f} ms  p99 "
                                                    f"{f['p99_ms']:6.1f} ms  trainings {f['trainings']}", flush=True))
    summary = {name: {"p50_ms": spread([f["p50_ms"] for f in runs]), "p99_ms": spread([f["p99_ms"] for f in runs]),
                      "max_ms": max(f["max_ms"] for f in runs), "over_1s": sum(f["over_1s"] for f in runs),
                      "trainings": [f["trainings"] for f in runs],
                      "training_running_at_start": [f["training_running_at_start"] for f in runs],
                      "training_running_at_end": [f["training_running_at_end"] for f in runs]}
               for name, runs in floods.items()}
    p99 = {name: s["p99_ms"]["median"] for name, s in summary.items()}
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "events": args.events, "senders": args.senders, "seeded": args.seeded, "rounds": args.rounds,
              **summary, "floods": floods,
              "p99_ratio": round(p99["training"] / max(p99["baseline"], 1e-9), 2),
              "p99_ratio_finetune": round(p99["finetune"] / max(p99["baseline"], 1e-9), 2),
              "trainings_per_event": round(float(sum(summary["training"]["trainings"]))
                                           / (args.rounds * (args.events + args.seeded)), 4)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"webhook acknowledgement, {args.events} events from {args.senders} senders, {args.rounds} interleaved rounds "
          "(min / median over rounds)")
    for name, r in summary.items():
        print(f"  {name:9s} p50 {r['p50_ms']['min']:6.1f} / {r['p50_ms']['median']:6.1f} ms   p99 "
              f"{r['p99_ms']['min']:6.1f} / {r['p99_ms']['median']:6.1f} ms   max {r['max_ms']:7.1f} ms   over 1 s: "
              f"{r['over_1s']}   trainings: {r['trainings']}   training during the flood (start/end): "
              f"{r['training_running_at_start']}/{r['training_running_at_end']}")
    print(f"  median p99 while training / baseline: {result['p99_ratio']}; while fine-tuning / baseline: "
          f"{result['p99_ratio_finetune']}  (target: p99 under 250 ms)")
    print(f"  trainings per event: {result['trainings_per_event']} (coalescing; 1.0 would be one per event)")


if __name__ == "__main__":
    main()
