"""Commands that make labels and data: LLM-written examples, augmentation, the LLM's prompt, weak labels."""

from __future__ import annotations

import argparse
import sys

from labelloop.cli.common import env_settings, studio
from labelloop.errors import LabelLoopError


def cmd_synthesize(args: argparse.Namespace) -> None:
    import html
    import re
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from labelloop.data.jsonl import write_jsonl
    from labelloop.encoder import load_encoder
    from labelloop.labeling.schema import parse_label_config
    from labelloop.llm import build_engine
    from labelloop.models import Features
    from labelloop.quality import insights
    from labelloop.studio import lsclient
    from labelloop.synthetic import SynthesisConfig, synthesize
    from labelloop.workflows.augment import import_variants
    from labelloop.workflows.export import approved_records

    settings = env_settings()
    config = SynthesisConfig.from_args(args)
    if not args.output and not args.add_to_project:
        raise LabelLoopError("say where the texts go: --output FILE.jsonl and/or --add-to-project")
    client = studio(args)
    project = lsclient.call("reading the project", client.projects.get, id=args.project)
    spec = parse_label_config(project.label_config).single_choice()
    if spec is None:
        raise LabelLoopError(f"project {args.project} has no single-choice classification control: synthetic "
                             "examples are written per label of one <Choices>")
    train, test = approved_records(insights.project_tasks(client, args.project), project.label_config,
                                   settings.home, args.project, audit_share=settings.audit_share,
                                   instance=settings.instance)
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
    from labelloop.data.jsonl import read_jsonl, write_jsonl

    records = read_jsonl(args.input)
    dry_run = not (args.output or args.project)
    if dry_run:
        print("neither --output nor --project: a dry run that shows a preview and writes nothing", flush=True)
    test = read_jsonl(args.exclude) if args.exclude else []
    augmenters = build_augmenters(args.methods.split(","), records, fill_mask_model=args.fill_mask_model,
                                  mt_forward=args.mt_forward, mt_backward=args.mt_backward, aug_p=args.aug_p)
    label_filter = None
    if args.filter_run:
        from labelloop.finetune.manifest import ModelManifest
        from labelloop.finetune.registry import RunRegistry
        from labelloop.models import TransformerModel

        run = RunRegistry(env_settings().home).get(args.filter_run)
        labels = list(ModelManifest.read(run.model_dir).labels)
        model = TransformerModel(run.model_dir, labels)
        label_filter = LabelFilter(model.predict_proba, labels, args.filter_threshold)
    similarity = None
    if args.min_similarity > 0:
        from labelloop.encoder import load_encoder

        settings = env_settings()
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
        from labelloop.studio import lsclient
        from labelloop.workflows.augment import import_variants

        client = studio(args)
        config = lsclient.call("reading the project", client.projects.get, id=args.project).label_config
        added = import_variants(client, args.project, variants, config)
        print(f"imported {added} augmented tasks into project {args.project}, each with its label as a "
              "prediction for annotators to accept or reject")


def cmd_llm_template(args: argparse.Namespace) -> None:
    import json

    from labelloop.llm import PromptTemplate, load_template, save_template, template_path

    home = env_settings().home
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

    from labelloop.quality.weak import WeakRules
    from labelloop.serving.service import ModelService
    from labelloop.studio import lsclient
    from labelloop.workflows.weak import weak_label_project

    try:
        text = open(args.rules, encoding="utf-8").read()
        if args.rules.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as e:
        raise LabelLoopError(f"can't read the rules {args.rules}: {e}") from e
    client = studio(args)
    service = ModelService(env_settings())
    project = lsclient.call("reading the project", client.projects.get, id=args.project)
    service.setup(args.project, project.label_config, hostname=args.url,
                  access_token=env_settings().api_key())
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
