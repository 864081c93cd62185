"""Entry point for one run, in one process or under ``accelerate launch``:

    accelerate launch --multi_gpu --num_processes 2 -m labelloop.finetune.launch RUN_DIR

(``--multi_gpu`` selects accelerate's torchrun launcher; on a machine without GPUs the processes use gloo.)

The main process records the outcome in the run registry (succeeded, cancelled, or failed with its error).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from pathlib import Path

from labelloop.errors import ConfigError
from labelloop.finetune.config import RunConfig
from labelloop.finetune.registry import RunRecord, RunRegistry


def start_run(registry: RunRegistry, config: RunConfig, *, name: str | None = None, niceness: int = 0) -> RunRecord:
    """Register a run and train it in a detached process; returns at once.

    ``niceness`` lowers the process's CPU priority (the backend's background fine-tunes use 10, so requests
    and webhook acknowledgements keep the cores they need).

    Everything about the run lives in its folder and the registry (status, ``metrics.jsonl``, ``log.txt``),
    so whoever started it (a dashboard session, a shell) may go away. :func:`cancel_run` stops it.
    """
    import subprocess

    from labelloop.finetune.data import check_data

    check_data(config)
    run = registry.create(config, name=name)
    with open(run.folder / "log.txt", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "labelloop.finetune.launch", str(run.folder)],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, "TQDM_MININTERVAL": "2"})
    if niceness:
        try:  # before the interpreter starts its worker threads, which inherit it
            os.setpriority(os.PRIO_PROCESS, process.pid, niceness)
        except (AttributeError, OSError):
            pass
    (run.folder / "pid").write_text(str(process.pid))
    # Reap the child when it ends, so a finished process never lingers as a zombie that looks alive.
    threading.Thread(target=process.wait, daemon=True).start()
    return run


def cancel_run(registry: RunRegistry, run_id: str) -> None:
    """Ask a queued or running run to stop; it saves a checkpoint and ends as cancelled."""
    run = registry.get(run_id)
    if run.status not in ("queued", "running"):
        raise ConfigError(f"run {run_id} is {run.status}; only a queued or running run can be cancelled")
    (run.folder / "CANCEL").touch()


def main(argv: list[str] | None = None) -> int:
    import torch
    from accelerate import PartialState

    run_dir = Path((argv or sys.argv[1:])[0]).resolve()
    registry = RunRegistry(run_dir.parent.parent)
    # Without a GPU, several processes train together over gloo; accelerate needs to be told so before
    # the Trainer creates its own (shared) state.
    state = PartialState(cpu=not torch.cuda.is_available())
    run_id = run_dir.name
    if state.is_main_process:
        registry.set_status(run_id, "running")
        (run_dir / "pid").write_text(str(os.getpid()))
    try:
        from labelloop.finetune.train import run_training

        config = RunConfig.load(run_dir / "config.json")
        summary = run_training(config, run_dir)
        if state.is_main_process and not summary["cancelled"] and config.test_file:
            from labelloop.finetune.evaluate import evaluate_run

            summary["eval"] = evaluate_run(registry, run_id)["run"]
    except BaseException as e:
        if state.is_main_process:
            registry.set_status(run_id, "failed", error=f"{type(e).__name__}: {e}")
            (run_dir / "error.txt").write_text(traceback.format_exc())
        raise
    if state.is_main_process:
        registry.set_status(run_id, "cancelled" if summary["cancelled"] else "succeeded", summary=summary)
        print(json.dumps({"run": run_id, **{k: v for k, v in summary.items() if k != "labels"}}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
