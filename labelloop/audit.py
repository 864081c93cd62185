"""The audit split and the promotion gate: how LabelLoop knows a model is better, under active learning.

Labels that active learning picked are a biased sample of the data (the model chose them because it was
unsure), so accuracy measured on them says little about the data as a whole. A fixed random share of the
project's tasks, decided per task from its id by :func:`in_audit`, is the **audit split**: those tasks are
placed in the queue like any other, their annotations are never trained on, and they are the one test set
of the project (learning curves, the Train page's export, the promotion gate). Membership is a property of
the task, so it holds however a task is reached (the queue, the Data Manager, an SDK script) and survives
restarts.

The promotion gate (:mod:`labelloop.gate`) judges a challenger on the audit tasks where it and the champion
disagree; every accuracy reported on the audit split carries its n and a 95% Wilson interval.
"""

from __future__ import annotations

import hashlib
import math

AUDIT_SALT = "labelloop-audit"
DEFAULT_AUDIT_SHARE = 0.1
MIN_AUDIT = 30  # below this, a 95% interval on accuracy is wider than +-0.15: too wide for a learning curve


POOL_ID = "pool_id"  # a task's text id in the project's pool (see labelloop.pool)


def audit_key(task_id: int | None, data: object) -> int | str | None:
    """What decides a task's membership of the audit split: the text's pool id when the task came from the
    project's pool (so the split is drawn over the pool's texts, however many of them reach Label Studio), else
    the task id."""
    pool_id = data.get(POOL_ID) if isinstance(data, dict) else None
    return str(pool_id) if isinstance(pool_id, (str, int)) and str(pool_id).strip() else task_id


def in_audit(project_id: int, task_id: int | str | None, share: float) -> bool:
    """Whether the task (or pool text, by its :func:`audit_key`) belongs to the project's audit split (a fixed
    random ``share`` of its tasks)."""
    if task_id is None or share <= 0:
        return False
    digest = hashlib.sha256(f"{AUDIT_SALT}\x00{project_id}\x00{task_id}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48) < share


def audit_rank(project_id: int, task_id: int | str) -> float:
    """A random but fixed position in [0, 1) for an audit task, independent of its membership draw."""
    digest = hashlib.sha256(f"{AUDIT_SALT}-order\x00{project_id}\x00{task_id}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``correct / n`` ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def describe_scores(scored: dict) -> str:
    """One line for what a word tagger or a relation model scored on the audit split (see the Trainer)."""
    if "token_accuracy" in scored:
        low, high = scored["interval"]
        return (f"token accuracy {scored['token_accuracy']:.3f} (95% interval {low:.3f}-{high:.3f}) on "
                f"{scored['words']} words of {scored['sentences']} sentences")
    return (f"link F1 {scored['f1']:.3f} (P {scored['precision']:.3f}, R {scored['recall']:.3f}) on "
            f"{scored['gold_links']} gold links of {scored['tasks']} tasks; MUC F1 {scored['muc']['f1']:.3f}, "
            f"B3 F1 {scored['b_cubed']['f1']:.3f}")
