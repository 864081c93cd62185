"""Commands on Label Studio projects: connect, pre-annotate, the queue, create, import, export."""

from __future__ import annotations

import argparse

from labelloop.cli.common import backend_auth, env_settings, studio
from labelloop.errors import LabelLoopError


def cmd_connect(args: argparse.Namespace) -> None:
    from labelloop.studio.projects import connect_backend, probe_backend

    probe_backend(args.backend, basic_auth=backend_auth())
    backend = connect_backend(studio(args), args.project, args.backend, title=args.title, basic_auth=backend_auth())
    print(f"connected ML backend {backend.id} ({args.backend}) to project {args.project}")


def cmd_preannotate(args: argparse.Namespace) -> None:
    from labelloop.workflows.preannotation import BackendPredictor, LocalPredictor, preannotate

    service = None
    if args.backend:
        if args.predictor:
            raise LabelLoopError("--predictor applies to local predictions; a running backend predicts with its own "
                                 "LABELLOOP_PREDICTOR")
        predictor: BackendPredictor | LocalPredictor = BackendPredictor(args.backend, basic_auth=backend_auth())
    else:
        from labelloop.serving.service import ModelService

        settings = env_settings()
        if args.predictor:
            settings = settings.model_copy(update={"predictor": args.predictor})
        service = ModelService(settings)
        predictor = LocalPredictor(service)
    report = preannotate(studio(args), args.project, predictor, only_unlabeled=args.only_unlabeled)
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


def cmd_queue(args: argparse.Namespace) -> None:
    from labelloop.studio.projects import setup_uncertainty_queue

    view = setup_uncertainty_queue(studio(args), args.project)
    print(f"project {args.project}: Uncertainty sampling on; Data Manager tab {view.id} lists unlabeled tasks, "
          "least confident first")


def cmd_project_create(args: argparse.Namespace) -> None:
    from labelloop.studio.projects import connect_backend, create_project, delete_project, probe_backend, setup_uncertainty_queue
    from labelloop.templates import label_config

    client = studio(args)
    config = label_config(args.template, args.labels.split(","), text_field=args.text_field)
    if args.connect:
        probe_backend(args.connect, basic_auth=backend_auth())  # a wrong address fails before the project exists
    project = create_project(client, args.title, config)
    if args.connect:
        try:
            connect_backend(client, project.id, args.connect, basic_auth=backend_auth())
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
    from labelloop.studio.importing import import_tasks, read_tasks

    tasks = read_tasks(args.file, text_field=args.text_field)  # a bad file fails before any call to Label Studio
    report = import_tasks(studio(args), args.project, tasks, text_field=args.text_field,
                          duplicates=args.duplicates, threshold=args.threshold)
    print(report.summary())


def cmd_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from labelloop.data.dataset import ExportConfig, export_dataset
    from labelloop.workflows.export import with_audit_share

    settings = env_settings()
    config = with_audit_share(ExportConfig.from_args(args), settings.audit_share)
    report = export_dataset(studio(args), args.project, Path(args.out), config, state_dir=settings.home,
                            min_test=settings.min_audit, instance=settings.instance)
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
