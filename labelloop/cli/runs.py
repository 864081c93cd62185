"""Commands on fine-tuning runs and the ladder: train, evaluate, list, promote, roll back, where the gate stands."""

from __future__ import annotations

import argparse
import sys

from labelloop.cli.common import env_settings, studio
from labelloop.errors import LabelLoopError


def cmd_train(args: argparse.Namespace) -> None:
    import json
    import subprocess

    from labelloop.finetune.config import RunConfig
    from labelloop.finetune.data import check_data
    from labelloop.finetune.registry import RunRegistry

    config = RunConfig.from_args(args, RunConfig.load(args.config) if args.config else None)
    check_data(config)  # a missing or empty file is refused before a run folder exists
    registry = RunRegistry(env_settings().home)
    run = registry.create(config, name=args.name)
    print(f"run {run.run_id}: {run.folder}", flush=True)
    if args.processes > 1:
        # accelerate's torchrun launcher; without GPUs the processes train over gloo on the CPU.
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(args.processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "labelloop.finetune.launch", str(run.folder)]
        result = subprocess.run(cmd)
        if result.returncode != 0 and registry.get(run.run_id).status in ("queued", "running"):
            registry.set_status(run.run_id, "failed", error=f"accelerate launch exited with {result.returncode}")
    else:
        from labelloop.finetune.launch import main as launch

        try:
            launch([str(run.folder)])
        except Exception as e:
            raise LabelLoopError(f"run {run.run_id} failed: {type(e).__name__}: {e}") from e
    record = registry.get(run.run_id)
    print(f"run {run.run_id}: {record.status}" + (f" ({record.error})" if record.error else ""))
    if (record.folder / "eval.json").exists():
        _print_eval(json.loads((record.folder / "eval.json").read_text()))
    if record.status != "succeeded":
        raise SystemExit(1)


def _print_eval(report: dict) -> None:
    keys = [k for k in ("accuracy", "macro_f1", "entity_f1", "entity_precision", "entity_recall", "exact_match",
                        "micro_f1", "preference_accuracy", "win_rate", "loss", "perplexity")
            if any(k in row for row in report["rows"].values())]
    print(f"{'':<10}" + "".join(f"{k:>18}" for k in keys))
    for name, row in report["rows"].items():
        print(f"{name:<10}" + "".join(f"{row[k]:>18.4f}" if k in row else f"{'':>18}" for k in keys))


def cmd_eval_human(args: argparse.Namespace) -> None:
    from pathlib import Path

    from labelloop.data.jsonl import read_jsonl, write_jsonl
    from labelloop.finetune.registry import RunRegistry
    from labelloop.quality import human_eval

    registry = RunRegistry(env_settings().home)
    if args.action == "create":
        if not args.run:
            raise LabelLoopError("name the fine-tuned run to evaluate: --run RUN (an sft run)")
        source = args.prompts or registry.config(args.run).test_file
        if not source:
            raise LabelLoopError(f"run {args.run} has no test file: give --prompts FILE.jsonl with a \"prompt\" per line")
        rows = read_jsonl(source)
        prompts = [str(r["prompt"]) for r in rows if isinstance(r, dict) and r.get("prompt")][: args.n]
        general = (None if args.no_forgetting else
                   [str(r.get("text", r)) for r in read_jsonl(args.general_text)] if args.general_text
                   else human_eval.general_text(env_settings().home))
        out = human_eval.create(studio(args), registry, args.run, prompts, against=args.against,
                                max_new_tokens=args.max_tokens, general=general, seed=args.seed)
        print(f"created evaluation project {out['project_id']}: {out['tasks']} prompts, {args.run} against "
              f"{args.against}, sides drawn at random per task (the mapping stays in $LABELLOOP_HOME/human_eval)")
        for who, ppl in out["forgetting"].items():
            print(f"  perplexity on general text: {who} {ppl:.2f}")
        if out["identical"]:
            print(f"warning: both models gave the same answer to {out['identical']} of {out['tasks']} prompts; judges "
                  "can only call those a tie (is the run's adapter loaded, and did it train long enough?)")
        return
    if args.project is None:
        raise LabelLoopError("say which evaluation project to collect: --project N")
    row, pairs = human_eval.collect(studio(args), registry, args.project)
    print(f"{row['kind']}: win rate {row['win_rate']:.3f} (95% {row['win_low']:.3f}-{row['win_high']:.3f}) over "
          f"{row['wins'] + row['losses']} decided judgments; {row['ties']} ties; judges agree on "
          + (f"{row['judge_agreement']:.0%} of {row['items_with_several_judges']} tasks judged twice"
             if row["judge_agreement"] is not None else "(no task has two judges yet)"))
    if args.preferences:
        write_jsonl(Path(args.preferences), pairs)
        print(f"wrote {len(pairs)} preference pairs to {args.preferences} ({{prompt, chosen, rejected}}, TRL's format)")


def cmd_eval(args: argparse.Namespace) -> None:
    from labelloop.finetune.evaluate import evaluate_run
    from labelloop.finetune.registry import RunRegistry
    from labelloop.serving.store import Store

    home = env_settings().home
    registry = RunRegistry(home)
    serving = Store(home).serving_everywhere() if (home / "state.sqlite3").exists() else set()
    against = registry.promoted_run(serving, task=registry.config(args.run).task)  # the run serving now, if any
    _print_eval(evaluate_run(registry, args.run, test_file=args.test, against=against))


def cmd_runs(args: argparse.Namespace) -> None:
    import time

    from labelloop.finetune.registry import RunRegistry

    runs = RunRegistry(env_settings().home).list()
    if not runs:
        print("no runs yet: `labelloop train --task classification --train-file train.jsonl --test-file test.jsonl`")
    for r in runs:
        metric = r.summary.get("eval", {})
        shown = ", ".join(f"{k}={v:.3f}" for k, v in metric.items() if isinstance(v, float))
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        print(f"{r.run_id:<26} {r.task:<15} {r.status:<10} {created}  {shown or r.error or ''}")


def cmd_promote(args: argparse.Namespace) -> None:
    from labelloop.finetune.registry import RunRegistry
    from labelloop.serving.service import ModelService
    from labelloop.workflows.promotion import promote_run

    settings = env_settings()
    print(promote_run(ModelService(settings), RunRegistry(settings.home), args.run, args.project,
                      force=args.force).message())


def cmd_ladder(args: argparse.Namespace) -> None:
    import time

    from labelloop.serving.service import ModelService

    service = ModelService(env_settings())
    status = service.ladder_status(args.project)
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(status["since"])) if status["since"] else "the start"
    print(f"project {args.project} serves {status['model_version']} ({status['rung']}) since {since}")
    print(status["frame"]["line"]
          + (f"; {status['serve_first']} disagreement tasks are served first for the gate" if status["serve_first"]
             else ""))
    print(f"next fine-tune: {status['next_finetune']}")
    for run in status["finetune_running"]:
        print(f"fine-tuning now: run {run}")
    for gate in status["gates"]:
        print(gate["line"])
    for d in service.decisions(args.project)[-args.last:]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.decided_at))
        print(f"  {when}  {d.action:<10} {d.champion or '-'} -> {d.challenger or '-'}: "
              f"{d.evidence.get('reason', '')}")


def cmd_rollback(args: argparse.Namespace) -> None:
    from labelloop.serving.service import ModelService
    from labelloop.workflows.promotion import rollback_project

    print(rollback_project(ModelService(env_settings()), args.project).message())
