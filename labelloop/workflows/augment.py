"""Augment a project's approved labels and import the variants."""

from __future__ import annotations

import time
from pathlib import Path

from labelloop.errors import ConfigError
from labelloop.studio import lsclient
from labelloop.workflows.export import approved_records


def augment_project(tasks: list[dict], label_config: str, home: Path, project_id: int, methods: list[str], *,
                    audit_share: float, n: int = 1, aug_p: float = 0.15, seed: int = 0, limit: int | None = None,
                    embed=None) -> dict:
    """Variants of the project's approved train records (test records are never augmented).

    Returns ``{"variants", "sources", "summary", "preview": [{"method", "source", "variant", "diff",
    "label"}]}``. ``limit`` caps the source records (for a quick preview). With ``embed`` (texts to
    sentence vectors), variants that strayed from their source are dropped (:class:`SimilarityFilter`).
    Nothing is written.
    """
    from labelloop.augment.cli import build_augmenters, word_diff
    from labelloop.augment.pipeline import SimilarityFilter, augment_records

    train, test = approved_records(tasks, label_config, home, project_id, audit_share=audit_share)
    if not train:
        raise ConfigError("no approved labels outside the test split yet: annotate some tasks first")
    sources = train[:limit] if limit else train
    augmenters = build_augmenters(methods, sources, aug_p=aug_p)
    variants, report = augment_records(sources, augmenters, n=n, seed=seed, test_records=test, progress=False,
                                       similarity=SimilarityFilter(embed) if embed is not None else None)
    by_id = {f"task {r['task_id']}": r for r in sources}
    rows = []
    for v in variants:
        source = by_id.get(v["provenance"]["source"], {})
        label = v.get("label") or ", ".join(v.get("labels", [])) or ", ".join(
            f"{v['text'][s['start']:s['end']]} ({s['label']})" for s in v.get("spans", []))
        rows.append({"method": v["provenance"]["method"], "source": source.get("text", ""), "variant": v["text"],
                     "diff": word_diff(source.get("text", ""), v["text"]), "label": label})
    return {"variants": variants, "sources": len(sources), "summary": report.summary(), "preview": rows}


def import_variants(client, project_id: int, variants: list[dict], label_config: str) -> int:
    """Add variants to the project as new tasks, each carrying its label as a prediction; returns how many."""
    from labelloop.augment.pipeline import variant_tasks

    tasks = variant_tasks(variants, label_config)
    for i in range(0, len(tasks), 500):
        lsclient.call("importing augmented tasks", client.projects.import_tasks, id=project_id,
                      request=tasks[i : i + 500], retry=None)
    return len(tasks)


def save_variants(home: Path, project_id: int, variants: list[dict]) -> Path:
    """Write variants to ``$LABELLOOP_HOME/augment/<project>/<time>.jsonl`` (the originals stay untouched)."""
    from labelloop.data.jsonl import write_jsonl

    path = Path(home) / "augment" / str(project_id) / (time.strftime("%Y%m%d-%H%M%S") + ".jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, variants)
    return path
