"""The ladder's durable state, in the backend's state file: fine-tunes started, gates with their frozen audit
frames, and every decision with its evidence. :class:`~labelloop.serving.store.Store` includes it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from labelloop.audit import AuditFrame, frame_from_db
from labelloop.serving.db import Database


@dataclass(frozen=True)
class Decision:
    """A promotion, refusal, hold or rollback, with the evidence it was made on."""

    project_id: int
    decided_at: float
    action: str
    champion: str | None
    challenger: str | None
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Finetune:
    """A challenger: a fine-tune the ladder started (or a run a lead sent to the gate), the training labels it
    started at, and whether it is settled (promoted, refused, stopped, failed or superseded)."""

    project_id: int
    run_id: str
    labels: int
    started_at: float
    done: bool


@dataclass(frozen=True)
class Gate:
    """A challenger before the gate: the frozen champion version it meets, the audit frame both predicted
    (``frame`` tasks, over every frame it was judged on), its state (``open`` while judged, ``carried`` from a
    frame that ran out undecided until a fresh frame is drawn, ``watch`` after a promotion while the rollback test
    runs, ``closed``), the version it was promoted as, and how many disagreement labels the last verdict counted."""

    project_id: int
    run_id: str
    champion: str
    challenger: str
    frame: int
    opened_at: float
    state: str
    promoted: str | None
    promoted_at: float | None
    labels_seen: int
    round: int = 0  # the audit round whose frame it judges on


@dataclass(frozen=True)
class AuditRound:
    """A fresh audit frame: when it was drawn, how many labelled tasks it released to training, and why."""

    round: int
    started_at: float
    released: int
    reason: str


@dataclass(frozen=True)
class GateItem:
    """One audit task of a gate's frame: the class each model predicts (indices into the control's labels) and
    whether its label was already counted when the challenger was promoted."""

    task_id: int
    champion: int
    challenger: int
    before_promotion: bool

    @property
    def disagree(self) -> bool:
        return self.champion != self.challenger


class LadderState(Database):
    """The ladder's tables: ``decisions``, ``finetunes``, ``gates`` and ``gate_items``."""

    # -- the ladder: decisions and fine-tunes ------------------------------------------------------

    def add_decision(self, project_id: int, action: str, champion: str | None, challenger: str | None,
                     evidence: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.instance, project_id, time.time(), action, champion, challenger,
                        json.dumps(evidence, default=str)))

    def decisions(self, project_id: int) -> list[Decision]:
        """The project's promotions, refusals, holds and rollbacks, oldest first."""
        rows = self._query("SELECT project_id, decided_at, action, champion, challenger, evidence FROM decisions "
                           "WHERE instance=? AND project_id=? ORDER BY decided_at, rowid", (self.instance, project_id))
        return [Decision(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def add_finetune(self, project_id: int, run_id: str, labels: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO finetunes(instance, project_id, run_id, labels, started_at) VALUES (?, ?, ?, ?, ?)",
                       (self.instance, project_id, run_id, labels, time.time()))

    def update_finetune(self, project_id: int, run_id: str, *, done: bool | None = None) -> None:
        with self._tx() as db:
            if done is not None:
                db.execute("UPDATE finetunes SET done=? WHERE instance=? AND project_id=? AND run_id=?",
                           (int(done), self.instance, project_id, run_id))

    def finetunes(self, project_id: int | None = None) -> list[Finetune]:
        """Fine-tunes the ladder started (of one project, or all of this instance), oldest first."""
        sql = "SELECT project_id, run_id, labels, started_at, done FROM finetunes WHERE instance=?"
        args: tuple[Any, ...] = (self.instance,)
        if project_id is not None:
            sql += " AND project_id=?"
            args += (project_id,)
        rows = self._query(sql + " ORDER BY started_at, rowid", args)
        return [Finetune(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    # -- the gate: frozen frames of audit predictions ----------------------------------------------

    def open_gate(self, project_id: int, run_id: str, champion: str, challenger: str,
                  items: list[tuple[int, int, int]], *, round: int = 0) -> None:
        """Record a challenger's audit frame (of audit round ``round``): ``(task_id, champion class, challenger
        class)`` per audit task."""
        with self._tx() as db:
            db.execute("DELETE FROM gate_items WHERE instance=? AND project_id=? AND run_id=?",
                       (self.instance, project_id, run_id))
            db.execute("INSERT OR REPLACE INTO gates(instance, project_id, run_id, champion, challenger, frame, "
                       "opened_at, round) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (self.instance, project_id, run_id, champion, challenger, len(items), time.time(), round))
            db.executemany("INSERT INTO gate_items(instance, project_id, run_id, task_id, champion, challenger) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(self.instance, project_id, run_id, t, a, b) for t, a, b in items])

    def extend_gate(self, project_id: int, run_id: str, items: list[tuple[int, int, int]], *, round: int) -> None:
        """A carried gate goes on over the fresh frame of audit round ``round``: its items are added to those of
        the frames before (whose labels keep counting), and it is open again."""
        with self._tx() as db:
            key = (self.instance, project_id, run_id)
            db.execute("UPDATE gates SET state='open', round=?, frame=frame+? WHERE instance=? AND project_id=? AND "
                       "run_id=?", (round, len(items), *key))
            db.executemany("INSERT OR IGNORE INTO gate_items(instance, project_id, run_id, task_id, champion, "
                           "challenger) VALUES (?, ?, ?, ?, ?, ?)", [(*key, t, a, b) for t, a, b in items])

    def gates(self, project_id: int, *, states: tuple[str, ...] = ("open", "carried", "watch", "closed")
              ) -> list[Gate]:
        """The project's gates in the given states, oldest first."""
        marks = ",".join("?" * len(states))
        rows = self._query(f"SELECT project_id, run_id, champion, challenger, frame, opened_at, state, promoted, "
                           f"promoted_at, labels_seen, round FROM gates WHERE instance=? AND project_id=? AND state IN "
                           f"({marks}) ORDER BY opened_at, rowid", (self.instance, project_id, *states))
        return [Gate(*r) for r in rows]

    def gate(self, project_id: int, run_id: str) -> Gate | None:
        return next((g for g in self.gates(project_id) if g.run_id == run_id), None)

    def gate_items(self, project_id: int, run_id: str) -> list[GateItem]:
        rows = self._query("SELECT task_id, champion, challenger, before_promotion FROM gate_items WHERE instance=? "
                           "AND project_id=? AND run_id=? ORDER BY task_id", (self.instance, project_id, run_id))
        return [GateItem(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def update_gate(self, project_id: int, run_id: str, *, state: str | None = None, labels_seen: int | None = None,
                    promoted: str | None = None, counted: list[int] | None = None) -> None:
        """Change a gate's state or the label count it last judged; ``promoted`` records the promotion (and marks
        the ``counted`` tasks, whose labels the promotion used, so the rollback test judges on new ones)."""
        with self._tx() as db:
            key = (self.instance, project_id, run_id)
            if state is not None:
                db.execute("UPDATE gates SET state=? WHERE instance=? AND project_id=? AND run_id=?", (state, *key))
            if labels_seen is not None:
                db.execute("UPDATE gates SET labels_seen=? WHERE instance=? AND project_id=? AND run_id=?",
                           (labels_seen, *key))
            if promoted is not None:
                db.execute("UPDATE gates SET promoted=?, promoted_at=? WHERE instance=? AND project_id=? AND "
                           "run_id=?", (promoted, time.time(), *key))
                db.executemany("UPDATE gate_items SET before_promotion=1 WHERE instance=? AND project_id=? AND "
                               "run_id=? AND task_id=?", [(*key, t) for t in counted or ()])

    def pinned_versions(self, project_id: int) -> set[str]:
        """Versions an open gate or rollback watch may need again: the champions they judge against."""
        return {r[0] for r in self._query("SELECT champion FROM gates WHERE instance=? AND project_id=? AND state IN "
                                          "('open', 'carried', 'watch')", (self.instance, project_id))}

    # -- audit rounds: a fresh frame once a frame's challengers are settled (labelloop.audit) ------------

    def audit_frame(self, project_id: int, share: float) -> AuditFrame:
        """The project's current audit frame at ``share``."""
        with self._lock, self._errors():
            current = self._db.execute("SELECT MAX(round) FROM audit_rounds WHERE instance=? AND project_id=?",
                                       (self.instance, project_id)).fetchone()[0] or 0
            cached = self._frames.get(project_id)
            if cached is not None and cached.round == current and cached.share == share:
                return cached
            frame = frame_from_db(self._db, self.instance, project_id, share)
            self._frames[project_id] = frame
            return frame

    def new_audit_round(self, project_id: int, labelled: set[str], reason: str) -> int:
        """Start the next audit round: the ``labelled`` tasks (audit keys) join training for good, and a fresh
        frame is drawn over the rest. Returns the new round's number."""
        with self._tx() as db:
            current = db.execute("SELECT MAX(round) FROM audit_rounds WHERE instance=? AND project_id=?",
                                 (self.instance, project_id)).fetchone()[0] or 0
            new = current + 1
            before = db.execute("SELECT COUNT(*) FROM audit_released WHERE instance=? AND project_id=?",
                                (self.instance, project_id)).fetchone()[0]
            db.executemany("INSERT OR IGNORE INTO audit_released VALUES (?, ?, ?, ?)",
                           [(self.instance, project_id, key, new) for key in sorted(labelled)])
            after = db.execute("SELECT COUNT(*) FROM audit_released WHERE instance=? AND project_id=?",
                               (self.instance, project_id)).fetchone()[0]
            db.execute("INSERT INTO audit_rounds VALUES (?, ?, ?, ?, ?, ?)",
                       (self.instance, project_id, new, time.time(), after - before, reason))
        return new

    def audit_rounds(self, project_id: int) -> list[AuditRound]:
        """The project's audit rounds after the first, oldest first."""
        rows = self._query("SELECT round, started_at, released, reason FROM audit_rounds WHERE instance=? AND "
                           "project_id=? ORDER BY round", (self.instance, project_id))
        return [AuditRound(*r) for r in rows]
