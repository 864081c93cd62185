"""What a lead does to a project, one function each, returning a report: the CLI, the dashboard and the
playground call these and nothing below them.

Each takes its Label Studio client and the model service as arguments (nothing is read from the
environment here), so the same call works from a notebook.
"""

from labelloop.workflows.augment import augment_project, import_variants, save_variants
from labelloop.workflows.compare import learning_curve, try_versions
from labelloop.workflows.export import approved_records, export_for_training, with_audit_share
from labelloop.workflows.preannotation import BackendPredictor, LocalPredictor, PreannotateReport, preannotate
from labelloop.workflows.promotion import Promotion, promote_run, rollback_project
from labelloop.workflows.weak import WeakLabels, weak_label_project

__all__ = [
    "BackendPredictor", "LocalPredictor", "PreannotateReport", "Promotion", "WeakLabels", "approved_records",
    "augment_project", "export_for_training", "import_variants", "learning_curve", "preannotate", "promote_run",
    "rollback_project", "save_variants", "try_versions", "weak_label_project", "with_audit_share",
]
