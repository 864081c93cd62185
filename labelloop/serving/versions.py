"""The one record of what serves each project: model versions, promotion, rollback, fallback, pruning.

A version is a folder ``models/<project>/labelloop-vN`` (``meta.json`` plus one ``.npz`` per trained
control, or a pointer to a fine-tuned run) and a row in the store; the project's row names the version
that serves. Choosing N, writing the folder and recording it happen under the project's cross-process
lock, so two processes never race for a number, and a folder left by a crash (a ``.partial`` one, or one
without its row) is cleaned or skipped instead of blocking every later training. A version whose files
can't be loaded is marked broken with the reason, and the project serves its last good version (or
zero-shot) until the next training.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelloop.errors import ConfigError, LabelLoopError, ModelError
from labelloop.labeling.kinds import kind_of
from labelloop.labeling.schema import ControlSpec, TaskSchema
from labelloop.models import Features, TransformerModel, TunedHead
from labelloop.serving.store import Store, VersionRecord

log = logging.getLogger(__name__)

UNTRAINED_VERSION = "labelloop-v0"
_NUMBERED = re.compile(r"labelloop-v(\d+)$")


def version_name(number: int) -> str:
    return f"labelloop-v{number}"


@dataclass
class Bundle:
    """The models serving one project, under one ``model_version``."""

    version: str
    models: dict[str, Any] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)
    n_annotations: int = 0

    def serves(self, schema: TaskSchema) -> bool:
        """Whether this bundle was trained for ``schema`` as it is now (same controls and labels)."""
        return all(self.signatures.get(c.from_name) == c.signature for c in schema.controls if kind_of(c).trainable)

    def model(self, spec: ControlSpec) -> Any:
        """The trained model for ``spec``, or None (never trained, or trained for other labels)."""
        return self.models.get(spec.from_name) if self.signatures.get(spec.from_name) == spec.signature else None


class VersionRegistry:
    """Versions of every project of one store; loaded bundles are cached by project and version."""

    def __init__(self, store: Store, features: Features, *, keep: int = 3) -> None:
        self.store = store
        self._features = features  # loads its encoder on first use: listing versions needs none
        self.keep = keep
        self._cache: dict[tuple[int, str], Bundle] = {}
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------------

    def current(self, project_id: int) -> Bundle:
        """What serves the project now: its recorded version, else its newest good one, else zero-shot."""
        wanted = self.store.current_name(project_id)
        records = self.store.versions(project_id)
        candidates = [r for r in records if r.model_version == wanted] + \
            [r for r in reversed(records) if r.model_version != wanted]
        for record in candidates:
            if record.broken:
                continue
            bundle = self._load(record)
            if bundle is not None:
                return bundle
        return Bundle(UNTRAINED_VERSION)

    def stored(self, project_id: int, version: str) -> Bundle:
        """One stored version of the project (zero-shot for ``labelloop-v0``)."""
        if version == UNTRAINED_VERSION:
            return Bundle(UNTRAINED_VERSION)
        record = next((v for v in self.store.versions(project_id) if v.model_version == version), None)
        if record is None:
            known = ", ".join(v.model_version for v in self.store.versions(project_id)) or "none yet"
            raise ConfigError(f"project {project_id} has no model version {version!r}; known: {known}")
        bundle = self._load(record)
        if bundle is None:
            raise ModelError(f"project {project_id}: {version} can't be loaded: {self.problems(project_id)[version]}")
        return bundle

    def record(self, project_id: int, version: str) -> VersionRecord | None:
        return next((v for v in self.store.versions(project_id) if v.model_version == version), None)

    def names(self) -> list[str]:
        """Every loadable version of every project, zero-shot first (for ``GET /versions``)."""
        return [UNTRAINED_VERSION] + [v.model_version for v in self.store.versions() if not v.broken]

    def problems(self, project_id: int | None = None) -> dict[str, str]:
        """``{model_version: why it can't be served}`` for broken versions."""
        return {v.model_version: v.broken for v in self.store.versions(project_id) if v.broken}

    def _load(self, record: VersionRecord) -> Bundle | None:
        key = (record.project_id, record.model_version)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            meta = json.loads((record.path / "meta.json").read_text())
            models = {c["from_name"]: self._features.load(record.path, c) for c in meta["controls"]}
            signatures = meta.get("signatures") or {c["from_name"]: c["signature"] for c in meta["controls"]}
        except (OSError, KeyError, TypeError, ValueError, RecursionError, LabelLoopError) as e:
            reason = f"{type(e).__name__}: {e}"[:500]
            log.error("project %s: model %s at %s can't be loaded (%s); serving the last good version instead. "
                      "The next training replaces it.", record.project_id, record.model_version, record.path, reason)
            self.store.mark_broken(record.project_id, record.model_version, reason)
            return None
        bundle = Bundle(record.model_version, models, signatures, record.n_annotations)
        with self._lock:
            self._cache[key] = bundle
        return bundle

    # -- writing ----------------------------------------------------------------------------------

    def save(self, project_id: int, schema: TaskSchema, models: dict[str, Any], n_annotations: int, *, encoder: str,
             audit: dict[str, Any] | None = None, trained_on: str | None = None) -> str:
        """Write ``models`` (by ``from_name``) as the project's next version, make it serve; returns its name.
        ``audit`` (by ``from_name``) is what the models scored on the audit split, and ``trained_on`` a digest of
        the training data, both kept in ``meta.json``."""
        folder = self.store.models_dir / str(project_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.store.project_lock(project_id):
            for stale in folder.glob("*.partial*"):  # left by a crash: nobody else writes while we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            on_disk = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
            number = max([self.store.max_version_number(project_id), *on_disk]) + 1
            version = version_name(number)
            tmp = folder / f"{version}.partial-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(mode=0o700)
            try:
                controls = []
                for i, control in enumerate(schema.controls):
                    if control.from_name in models:
                        meta = self._features.save(models[control.from_name], tmp, f"control{i}")
                        controls.append({**meta, "from_name": control.from_name, "signature": control.signature})
                (tmp / "meta.json").write_text(json.dumps({
                    "model_version": version, "encoder": encoder, "n_annotations": n_annotations,
                    "created_at": time.time(), "controls": controls, "audit": audit or {}, "trained_on": trained_on,
                    "signatures": {c.from_name: c.signature for c in schema.controls}}, indent=2, ensure_ascii=False))
                tmp.rename(folder / version)  # a half-written model is never visible under its version name
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self.store.add_version(project_id, number, version, folder / version, n_annotations)
            self._prune(project_id)
        return version

    def promote(self, project_id: int, schema: TaskSchema, model_dir: Path, *, task: str, encoder: str,
                n_annotations: int = 0) -> str:
        """Serve a fine-tuned model for the project's matching control, under a new model_version.

        The matching control is the one whose kind and labels the model predicts; other controls keep
        what serves them now. A sentence classifier serves as a :class:`TunedHead` (exactly the fine-tuned
        model until the next annotation retrains its head); a tagger serves as it is. ``n_annotations`` is
        how many labels the run learned from. Returns the new version; a running backend switches on its
        next request.
        """
        current = self.current(project_id)
        errors = []
        for spec in schema.controls:
            if not kind_of(spec).serves_task(spec, task):
                continue
            try:
                model = TransformerModel(model_dir, spec.labels)
            except LabelLoopError as e:
                errors.append(f"{spec.from_name}: {e}")
                continue
            served: TransformerModel | TunedHead = model
            if model.task != "ner":
                try:
                    served = self._features.tuned(model)
                except ModelError as e:  # an architecture we can't put a head on: serve it as it is
                    log.info("project %s: serving %s without a head on top (%s)", project_id, model_dir, e)
            models = {c.from_name: current.model(c) for c in schema.controls if current.model(c) is not None}
            models[spec.from_name] = served
            return self.save(project_id, schema, models, n_annotations, encoder=encoder)
        raise ConfigError(f"No control of project {project_id} matches this {task} model"
                          + (f" ({'; '.join(errors)})" if errors else "") + ".")

    def serve(self, project_id: int, version: str) -> None:
        """Make a stored, loadable ``version`` serve the project again (a rollback to a named version)."""
        self.stored(project_id, version)  # raises when it is unknown or can't be loaded
        self.store.set_current(project_id, version)

    def rollback(self, project_id: int) -> str:
        """Serve the good version before the one serving now; returns it."""
        records = [v for v in self.store.versions(project_id) if not v.broken]
        names = [v.model_version for v in records]
        current = self.store.current_name(project_id)
        position = names.index(current) if current in names else len(names)
        if position == 0 or not names:
            raise ConfigError(f"Project {project_id} has no earlier model version to roll back to.")
        previous = names[position - 1]
        self.store.set_current(project_id, previous)
        return previous

    def _prune(self, project_id: int) -> list[str]:
        """Remove model folders beyond the newest ``keep``, except the one serving, its rollback target and the
        champions that an open gate or a rollback watch may serve again."""
        if self.keep <= 0:
            return []
        records = self.store.versions(project_id)
        names = [r.model_version for r in records]
        current = self.store.current_name(project_id)
        keep = set(names[-self.keep:]) | self.store.pinned_versions(project_id)
        if current in names:
            keep.add(current)
            good = [r.model_version for r in records if not r.broken]
            if current in good and good.index(current) > 0:
                keep.add(good[good.index(current) - 1])
        drop = [r for r in records if r.model_version not in keep]
        for r in drop:
            shutil.rmtree(r.path, ignore_errors=True)
            with self._lock:
                self._cache.pop((project_id, r.model_version), None)
        self.store.mark_pruned(project_id, [r.number for r in drop])
        return [r.model_version for r in drop]
