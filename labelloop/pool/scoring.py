"""Scoring a pool: every text's class probabilities, predicted label and confidence under one model version.

One interface, two engines. ``local`` runs in this process, batch by batch: the default, what tests and small
pools use, and all that needs no Ray. ``ray`` runs the same scorer as a Ray Data ``map_batches`` over a pool of
actors (the model loaded once per actor), streaming: ``ray.init()`` on this machine by default, or the cluster
at ``--ray-address`` / ``RAY_ADDRESS``, with CPUs and GPUs per actor as settings (fractional CPUs, so the
actors never take every CPU from the tasks that read the pool).

Results go beside the pool, ``scores/<model_version>/part-NNNNN.parquet``, one file per text shard, each
written whole or not at all: a job that is killed or cancelled resumes with the shards it has not finished.
``score.json`` says where a job stands (texts scored, rate, ETA, engine, workers) for the CLI and the dashboard;
a file ``CANCEL`` in the scores folder stops it between batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelloop._optional import require
from labelloop.errors import ConfigError, LabelLoopError
from labelloop.pool.corpus import Pool
from labelloop.pool.jobs import Cancelled, Job, Progress
from labelloop.processes import started_at

STUB = "stub"  # a scorer without an encoder: the pipeline's own cost, for benchmarks at a million texts


@dataclass(frozen=True)
class ScorerSpec:
    """What each worker loads to score texts: the project's model (``version``; None: the one serving) from
    ``home``, or the stub (probabilities from a hash of the text, over ``labels``)."""

    home: str
    project: int
    version: str | None = None
    strategy: str = "margin"
    kind: str = "project"
    labels: tuple[str, ...] = ()


class Scorer:
    """Texts -> (probabilities (n, k), labels)."""

    def __init__(self, spec: ScorerSpec) -> None:
        self.spec = spec
        if spec.kind == STUB:
            if len(spec.labels) < 2:
                raise ConfigError("the stub scorer needs at least two labels")
            self.labels = tuple(spec.labels)
            self.version = "stub"
            return
        from labelloop.serving.service import ModelService
        from labelloop.settings import LabelLoopSettings

        service = ModelService(LabelLoopSettings(home=Path(spec.home), push_predictions=False))
        control = service.schema(spec.project).single_choice()
        if control is None:
            raise ConfigError(f"project {spec.project} has no single-choice classification control: its pool can't "
                              "be scored")
        self.control = control
        self.labels = tuple(control.labels)
        self.version, self._predictor = service.version_predictor(spec.project, spec.version, spec.strategy)

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.spec.kind == STUB:
            import zlib

            codes = np.array([zlib.crc32(t.encode("utf-8", "replace")) for t in texts], dtype=np.uint64)
            logits = np.stack([((codes * (2 * k + 1)) % 1000).astype(np.float64) / 250.0
                               for k in range(len(self.labels))], axis=1)
            from labelloop.arrays import softmax

            return softmax(logits)
        return np.asarray(self._predictor.class_probs(self.control, texts), dtype=np.float64)


def scored_table(spec: ScorerSpec, scorer: Scorer, ids: list[str], texts: list[str], extra: dict | None = None):
    """The result rows of one batch as a ``pyarrow.Table``."""
    pa = require("pyarrow", "pool")
    from labelloop.al.uncertainty import confidence

    probs = scorer(texts) if texts else np.zeros((0, len(scorer.labels)))
    conf = confidence(probs, spec.strategy) if len(probs) else np.zeros(0)
    columns = {"id": pa.array(ids, pa.string()),
               "label": pa.array([scorer.labels[k] for k in probs.argmax(axis=1)] if len(probs) else [], pa.string()),
               "confidence": pa.array(conf.astype(np.float32), pa.float32()),
               "probs": pa.array([row.astype(np.float32) for row in probs], pa.list_(pa.float32())),
               "model_version": pa.array([scorer.version] * len(ids), pa.string())}
    return pa.table({**columns, **(extra or {})})


def score_pool(home: Path, project_id: int, *, engine: str = "local", version: str | None = None,
               strategy: str = "margin", batch_size: int = 256, workers: int = 1, cpus_per_worker: float = 0.5,
               gpus_per_worker: float = 0.0, ray_address: str | None = None, spec: ScorerSpec | None = None,
               progress: Callable[[int, int], None] | None = None) -> Progress:
    """Score every text of the project's pool not yet scored under the model version (resuming a stopped job);
    ``progress(done, total)`` is called as texts are scored. Returns the job's final progress."""
    pool = Pool(home, project_id)
    info = pool.info()
    spec = spec or ScorerSpec(str(home), int(project_id), version, strategy)
    scorer = Scorer(spec)  # here too: a bad project or version fails now, not inside a worker
    job = Job(pool, scorer.version)
    job.folder.mkdir(parents=True, exist_ok=True)
    job.clear_stale_cancel(started_at())  # a stop asked while this process loaded the model is not lost
    for stale in job.folder.glob("*.partial"):
        stale.unlink()
    remaining = job.remaining()
    done_rows = _rows([s for s in pool.shards() if s not in remaining])
    state = Progress(engine, workers if engine == "ray" else 1, scorer.version, info.texts, scored=done_rows,
                     resumed=done_rows, shards=len(info.shards), shards_done=len(info.shards) - len(remaining))
    job.write_progress(state)
    if progress:
        progress(state.scored, state.total)
    try:
        if engine == "local":
            _score_local(job, remaining, spec, scorer, batch_size, state, progress)
        elif engine == "ray":
            _score_ray(job, remaining, spec, batch_size, workers, cpus_per_worker, gpus_per_worker, ray_address,
                       state, progress)
        else:
            raise ConfigError(f"engine must be 'local' or 'ray', not {engine!r}")
    except Cancelled:
        state.state = "cancelled"
        job.clear_cancel()
    except BaseException as e:
        state.state, state.error = "failed", f"{type(e).__name__}: {e}"
        job.write_progress(state)
        raise
    else:
        state.state = "done"
        job.clear_cancel()  # one asked after the last batch has nothing left to stop
    job.write_progress(state)
    return state


def _rows(shards: list[Path]) -> int:
    pq = require("pyarrow.parquet", "pool")
    return sum(pq.ParquetFile(s).metadata.num_rows for s in shards)


def _score_local(job: Job, shards: list[Path], spec: ScorerSpec, scorer: Scorer, batch_size: int, state: Progress,
                 progress: Callable[[int, int], None] | None) -> None:
    pa = require("pyarrow", "pool")
    pq = require("pyarrow.parquet", "pool")
    for shard in shards:
        table = pq.read_table(shard, columns=["id", "text"])
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        parts = []
        for start in range(0, len(ids), batch_size):
            if job.cancelled():
                raise Cancelled(f"scoring {job.version} was cancelled")
            parts.append(scored_table(spec, scorer, ids[start:start + batch_size], texts[start:start + batch_size]))
            state.scored += len(parts[-1])
            job.write_progress(state)
            if progress:
                progress(state.scored, state.total)
        job.finish(shard, pa.concat_tables(parts) if parts else scored_table(spec, scorer, [], []))
        state.shards_done += 1


class RayScorer:
    """The scorer inside a Ray Data actor: loaded once, then called on each batch (a ``pyarrow.Table`` of
    ``id``, ``text`` and the ``path`` of the shard it came from)."""

    def __init__(self, spec: ScorerSpec) -> None:
        self.spec = spec
        self.scorer = Scorer(spec)

    def __call__(self, batch):
        return scored_table(self.spec, self.scorer, batch.column("id").to_pylist(), batch.column("text").to_pylist(),
                            {"path": batch.column("path")})


def _score_ray(job: Job, shards: list[Path], spec: ScorerSpec, batch_size: int, workers: int, cpus: float,
               gpus: float, address: str | None, state: Progress, progress: Callable[[int, int], None] | None) -> None:
    if not shards:
        return
    ray = require("ray", "scale")
    pa = require("pyarrow", "pool")
    require("ray.data", "scale")
    started_here = not ray.is_initialized()
    if started_here:
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # this machine only, on the loopback address
            ray.init(num_cpus=max(1, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
    try:
        expected = {s.name: n for s, n in zip(shards, [_rows([s]) for s in shards], strict=True)}
        parts: dict[str, list] = {name: [] for name in expected}
        got = dict.fromkeys(expected, 0)
        # Blocks of a few batches (streamed, no shuffle), so every actor gets work even from one large shard.
        data = ray.data.read_parquet([str(s) for s in shards], columns=["id", "text"], include_paths=True
                                     ).repartition(target_num_rows_per_block=4 * batch_size)
        scored = data.map_batches(RayScorer, fn_constructor_kwargs={"spec": spec}, batch_size=batch_size,
                                  batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=max(1, workers)),
                                  num_cpus=cpus, num_gpus=gpus or None)
        by_name = {s.name: s for s in shards}
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            if job.cancelled():
                raise Cancelled(f"scoring {job.version} was cancelled")
            paths = batch.column("path").to_pylist()
            for name in set(Path(p).name for p in paths):
                mask = pa.array([Path(p).name == name for p in paths])
                part = batch.filter(mask).drop_columns(["path"])
                parts[name].append(part)
                got[name] += len(part)
                if got[name] == expected[name]:  # actors finish blocks in any order: back to the shard's order
                    job.finish(by_name[name], _in_order(pa.concat_tables(parts.pop(name)), by_name[name]))
                    state.shards_done += 1
            state.scored += len(paths)
            job.write_progress(state)
            if progress:
                progress(state.scored, state.total)
        unfinished = [name for name in parts if got[name] != expected[name]]
        if unfinished:
            raise LabelLoopError(f"Ray returned {sum(got.values())} rows for {sum(expected.values())} texts; "
                                 f"shards {', '.join(unfinished[:3])} stay unscored and are redone on the next run")
    finally:
        if started_here:
            ray.shutdown()


def _in_order(table, shard: Path):
    """``table``'s rows in the order of the shard's ids."""
    pq = require("pyarrow.parquet", "pool")
    position = {i: k for k, i in enumerate(pq.read_table(shard, columns=["id"]).column("id").to_pylist())}
    return table.take(np.argsort([position[i] for i in table.column("id").to_pylist()], kind="stable"))
