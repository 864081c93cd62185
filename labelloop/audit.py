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

**Rounds: no label is wasted.** A gate's disagreement labels are the most informative a project has, so once
every challenger judged on a frame is settled (promoted and past its rollback watch, refused, stopped, or
superseded) or carried over to the next frame, the frame's labels join training and a fresh frame is drawn: round ``r`` takes the tasks not
labelled when it began (the ``released`` ones train) with a new, independent draw at the same share, and a new
random order. Because the draw never looks at the models, the labels or the earlier rounds, the new frame is a
uniform random sample of the tasks still unlabelled: the population the models will pre-annotate, and one no
model has trained on. :class:`AuditFrame` is that rule; the backend's state file keeps each project's round
(:func:`frame_from_db`), and when a round ends is :func:`labelloop.policy.new_round_due`.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

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


def _uniform(salt: str, project_id: int, key: int | str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{project_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def in_audit(project_id: int, task_id: int | str | None, share: float) -> bool:
    """Whether the task (or pool text, by its :func:`audit_key`) belongs to the project's first audit frame (a
    fixed random ``share`` of its tasks); later rounds: :class:`AuditFrame`."""
    return task_id in AuditFrame(project_id, share)


def audit_rank(project_id: int, task_id: int | str, round: int = 0) -> float:
    """A random but fixed position in [0, 1) for an audit task of a round, independent of its membership draw."""
    return _uniform(f"{AUDIT_SALT}-order" + (f"-{round}" if round else ""), project_id, task_id)


@dataclass(frozen=True)
class AuditFrame:
    """The project's audit split now: round ``round``, drawn at ``share`` over the tasks (by :func:`audit_key`)
    not among ``released``, the ones labelled before the round began, which train."""

    project_id: int
    share: float
    round: int = 0
    released: frozenset[str] = field(default_factory=frozenset)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (int, str)) or self.share <= 0:
            return False
        if self.round and str(key) in self.released:
            return False
        salt = AUDIT_SALT + (f"-round-{self.round}" if self.round else "")
        return _uniform(salt, self.project_id, key) < self.share

    def rank(self, key: int | str) -> float:
        """The task's place in the round's random order (the queue serves a round's audit tasks in it)."""
        return audit_rank(self.project_id, key, self.round)


AUDIT_TABLES = """
CREATE TABLE IF NOT EXISTS audit_rounds (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    round INTEGER NOT NULL,
    started_at REAL NOT NULL,
    released INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (instance, project_id, round)
);
CREATE TABLE IF NOT EXISTS audit_released (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    round INTEGER NOT NULL,
    PRIMARY KEY (instance, project_id, key)
)"""


@dataclass(frozen=True)
class PastFrame(AuditFrame):
    """An earlier round's frame as a test set: its tasks ``labelled`` while it was the current one (the labels it
    released to training when it ended; later labels of its tasks came by active learning, not at random), for
    the versions trained before it ended (``ended_at``), which never saw them."""

    labelled: frozenset[str] = field(default_factory=frozenset)
    ended_at: float = 0.0

    def __contains__(self, key: object) -> bool:
        return str(key) in self.labelled and super().__contains__(key)


def frame_from_db(db: sqlite3.Connection, instance: str, project_id: int, share: float) -> AuditFrame:
    """The project's current :class:`AuditFrame` from the backend's state file (round 0 when it has none)."""
    return frames_from_db(db, instance, project_id, share)[0]


def frames_from_db(db: sqlite3.Connection, instance: str, project_id: int, share: float) -> list[AuditFrame]:
    """Every audit frame the project had, the current one first, then each earlier one as a :class:`PastFrame`."""
    try:
        rounds = db.execute("SELECT round, started_at FROM audit_rounds WHERE instance=? AND project_id=? "
                            "ORDER BY round", (instance, project_id)).fetchall()
    except sqlite3.OperationalError:  # a state file from before rounds, read by a command that does not migrate
        return [AuditFrame(project_id, share)]
    if not rounds:
        return [AuditFrame(project_id, share)]
    released: dict[int, set[str]] = {}
    for key, r in db.execute("SELECT key, round FROM audit_released WHERE instance=? AND project_id=?",
                             (instance, project_id)):
        released.setdefault(int(r), set()).add(key)
    frames: list[AuditFrame] = []
    before: set[str] = set()  # keys released before a round began
    started = {int(r): float(t) for r, t in rounds}
    for r in range(0, max(started) + 1):
        if r in started:
            before |= released.get(r, set())
        if r < max(started):
            frames.append(PastFrame(project_id, share, r, frozenset(before), frozenset(released.get(r + 1, ())),
                                    started.get(r + 1, 0.0)))
    frames.append(AuditFrame(project_id, share, max(started), frozenset(before)))
    return frames[::-1]


def _read_only(home: str | Path) -> sqlite3.Connection | None:
    path = Path(home) / "state.sqlite3"
    if not path.exists():
        return None
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def stored_frame(home: str | Path, project_id: int, share: float, *, instance: str = "") -> AuditFrame:
    """The project's current audit frame as the backend at ``home`` keeps it, read without changing anything
    (round 0 where no backend has run): what exports, the dashboard and the pool use."""
    return stored_frames(home, project_id, share, instance=instance)[0]


def stored_frames(home: str | Path, project_id: int, share: float, *, instance: str = "") -> list[AuditFrame]:
    """Every audit frame of the project, the current one first (:func:`frames_from_db`), read without changing
    anything."""
    db = _read_only(home)
    if db is None:
        return [AuditFrame(project_id, share)]
    try:
        return frames_from_db(db, instance, project_id, share)
    finally:
        db.close()


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
