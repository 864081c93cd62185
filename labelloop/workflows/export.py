"""Export approved labels for training, leak-free, with the audit split held out."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from labelloop.audit import AuditFrame, stored_frame
from labelloop.data.dataset import ExportConfig, build_dataset, export_dataset, load_frozen_test


def export_for_training(client, project_id: int, settings, config: ExportConfig | None = None) -> dict:
    """Export approved labels to ``$LABELLOOP_HOME/exports/<project>/<time>/``, the audit split as the test split;
    returns the report with paths (``report["test_split"]["enough"]`` is False below the gate's minimum)."""
    out = Path(settings.home) / "exports" / str(project_id) / time.strftime("%Y%m%d-%H%M%S")
    config = with_audit_share(config or ExportConfig(), settings.audit_share)
    report = export_dataset(client, project_id, out, config, state_dir=settings.home, min_test=settings.min_audit,
                            instance=settings.instance)
    return {**report, "train_file": str(out / "train.jsonl"), "test_file": str(out / "test.jsonl")}


def with_audit_share(config: ExportConfig, share: float) -> ExportConfig:
    """``config`` with the backend's audit share where it names none."""
    return config if config.audit_share is not None else dataclasses.replace(config, audit_share=share)


def approved_records(tasks: list[dict], label_config: str, home: Path, project_id: int, *,
                     audit_share: float, instance: str = "", frame: AuditFrame | None = None
                     ) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` records of the project's approved labels; test is the audit ``frame`` (by default the
    current one) and any frozen test split."""
    if frame is None:
        frame = stored_frame(home, project_id, audit_share, instance=instance)
    train, test, _, _ = build_dataset(tasks, label_config, ExportConfig(audit_share=audit_share),
                                      load_frozen_test(home, project_id), project_id=project_id, frame=frame)
    return train, test
