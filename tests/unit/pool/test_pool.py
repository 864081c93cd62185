"""The pool beside Label Studio, in this process (no Ray, no server): registering corpora of every format with
stable ids, scoring with resume and cancel, and choosing the working set (audit texts by pool id, then the least
confident)."""

from __future__ import annotations

import json

import pytest

from labelloop.audit import AuditFrame, audit_key, in_audit
from labelloop.errors import ConfigError
from labelloop.pool.corpus import Pool, add_corpus
from labelloop.pool.jobs import Job, read_scores, status
from labelloop.pool.near import near_duplicates
from labelloop.pool.scoring import STUB, ScorerSpec, score_pool
from labelloop.pool.working_set import choose
from labelloop.quality.dedup import content_key

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TEXTS = [f"review number {i}: {'great' if i % 3 else 'awful'} battery, {'fast' if i % 2 else 'slow'} screen"
         for i in range(120)]


def stub(home, project=1):
    return ScorerSpec(str(home), project, kind=STUB, labels=("good", "bad"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_corpus_is_registered_from_each_format_with_the_same_stable_ids(tmp_path):
    rows = [{"body": t, "ref": f"r{i}"} for i, t in enumerate(TEXTS)]
    rows += [{"body": TEXTS[0].upper() + "  ", "ref": "dup"}, {"body": "   ", "ref": "blank"}]
    jsonl = write_jsonl(tmp_path / "c.jsonl", rows)
    csv = tmp_path / "c.csv"
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa.Table.from_pylist(rows), csv)
    parquet = tmp_path / "parts"
    parquet.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:60]), parquet / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[60:]), parquet / "b.parquet")
    datasets = pytest.importorskip("datasets")
    hf = tmp_path / "hf"
    datasets.Dataset.from_list(rows).save_to_disk(str(hf))
    seen = []
    for k, source in enumerate([jsonl, csv, parquet, hf]):
        info = add_corpus(tmp_path / f"home{k}", 1, source, text_field="body", shard_rows=50)
        assert (info.texts, info.duplicates, info.empty) == (120, 1, 1)  # case and spacing aside, one text
        assert len(info.shards) == 3
        ids = [i for _, t in Pool(tmp_path / f"home{k}", 1).read(("id",)) for i in t.column("id").to_pylist()]
        seen.append(ids)
    assert seen[0] == seen[1] == seen[2] == seen[3] and len(set(seen[0])) == 120
    assert seen[0][:3] == [content_key(t) for t in TEXTS[:3]]  # the id `dedup` and `import` give the same text
    given = add_corpus(tmp_path / "given", 1, jsonl, text_field="body", id_field="ref")
    assert given.texts == 120 and Pool(tmp_path / "given", 1).texts(["r5"]) == {"r5": TEXTS[5]}
    with pytest.raises(ConfigError, match="no column 'text'.*--text-field"):
        add_corpus(tmp_path / "x", 1, jsonl)
    with pytest.raises(ConfigError, match="does not exist"):
        add_corpus(tmp_path / "x", 1, tmp_path / "missing.jsonl")


def test_adding_again_replaces_the_pool_whole_and_near_duplicates_are_reported(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in TEXTS[:10]])
    add_corpus(tmp_path, 2, first)
    second = write_jsonl(tmp_path / "b.jsonl", [{"text": "the battery lasts two full days of heavy use"},
                                                {"text": "the battery lasts two full days of heavy use!!"},
                                                {"text": "an unrelated sentence about the weather in spring"}])
    info = add_corpus(tmp_path, 2, second)
    pool = Pool(tmp_path, 2)
    assert info.texts == 3 and pool.info().texts == 3 and len(list(pool.folder.parent.glob("2@*"))) == 1
    (found,) = list(near_duplicates(pool, threshold=0.8))
    assert found[2] >= 0.8


def test_scoring_in_process_resumes_after_a_cancel_and_gives_what_one_run_gives(tmp_path):
    source = write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in TEXTS])
    for home in (tmp_path / "once", tmp_path / "twice"):
        add_corpus(home, 1, source, shard_rows=40)
    once = score_pool(tmp_path / "once", 1, spec=stub(tmp_path / "once"), batch_size=16)
    assert (once.state, once.scored, once.shards_done) == ("done", 120, 3)

    home = tmp_path / "twice"
    job = Job(Pool(home, 1), "stub")

    def cancel_midway(done, total):
        if done >= 50:
            (job.folder / "CANCEL").touch()

    stopped = score_pool(home, 1, spec=stub(home), batch_size=16, progress=cancel_midway)
    assert stopped.state == "cancelled" and stopped.shards_done == 1 and len(job.remaining()) == 2
    assert status(Pool(home, 1))["state"] == "cancelled"
    resumed = score_pool(home, 1, spec=stub(home), batch_size=16)
    assert resumed.state == "done" and resumed.scored == 120 and resumed.shards_done == 3
    assert resumed.resumed == 40 and resumed.rate > 0  # its rate counts only what it scored itself
    a = read_scores(Pool(tmp_path / "once", 1), "stub", ("id", "label", "confidence", "probs"))
    b = read_scores(Pool(home, 1), "stub", ("id", "label", "confidence", "probs"))
    assert a.to_pylist() == b.to_pylist()
    with pytest.raises(ConfigError, match="engine must be"):
        score_pool(home, 1, spec=stub(home), engine="spark")


def test_the_working_set_takes_audit_texts_by_pool_id_then_the_least_confident(tmp_path):
    source = write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in TEXTS])
    add_corpus(tmp_path, 1, source, shard_rows=40)
    pool = Pool(tmp_path, 1)
    score_pool(tmp_path, 1, spec=stub(tmp_path))
    scores = read_scores(pool, "stub")
    confidence = dict(zip(scores.column("id").to_pylist(), scores.column("confidence").to_pylist(), strict=True))
    held = set(list(confidence)[:5])
    rows, version = choose(pool, held, 20, frame=AuditFrame(pool.project, 0.2), version="stub")
    assert version == "stub" and len(rows) == 20 and not held & {r["id"] for r in rows}
    audit = [r for r in rows if r["audit"]]
    assert len(audit) == 4 and all(in_audit(1, r["id"], 0.2) for r in audit)
    rest = [r["confidence"] for r in rows if not r["audit"]]
    free = sorted(c for i, c in confidence.items() if i not in held and not in_audit(1, i, 0.2))
    assert rest == pytest.approx(free[:16])  # the least confident first
    cold, none = choose(pool, set(), 10, frame=AuditFrame(pool.project, 0.0), version=None)
    assert none is None and len(cold) == 10 and all(r["confidence"] is None for r in cold)
    assert all(pool.texts([r["id"]])[r["id"]] == r["text"] for r in cold)


def test_a_pool_task_is_in_the_audit_split_by_its_pool_id_whatever_its_task_id():
    assert audit_key(7, {"text": "x", "pool_id": "abc"}) == "abc" and audit_key(7, {"text": "x"}) == 7
    assert audit_key(7, None) == 7 and audit_key(7, {"pool_id": " "}) == 7
    ids = [f"text-{i}" for i in range(2000)]
    share = sum(in_audit(3, i, 0.1) for i in ids) / len(ids)
    assert 0.07 < share < 0.13


def test_a_job_is_described_in_one_line_and_only_a_running_one_is_cancelled(tmp_path):
    from labelloop.pool.jobs import cancel, describe

    add_corpus(tmp_path, 1, write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in TEXTS]))
    pool = Pool(tmp_path, 1)
    assert cancel(pool) is None  # never scored
    score_pool(tmp_path, 1, spec=stub(tmp_path))
    assert cancel(pool) is None and not (Job(pool, "stub").folder / "CANCEL").exists()  # done: nothing to stop
    line = describe(status(pool))
    assert line.startswith("scores of stub: done, 120 of 120 texts") and "on local with 1 workers" in line
    running = {**status(pool), "state": "running", "scored": 60, "eta_seconds": 300.0}
    (Job(pool, "stub").folder / "score.json").write_text(json.dumps(running))
    assert describe(running).endswith("with 1 workers, about 5 min left)")
    assert cancel(pool) == "stub" and Job(pool, "stub").cancelled()


@pytest.mark.model  # the re-scoring process loads the packaged encoder
def test_a_new_version_re_scores_the_pool_in_a_process_of_its_own_that_stop_ends(tmp_path):
    import time

    from labelloop.pool.background import Rescorer
    from labelloop.serving.service import ModelService
    from labelloop.settings import LabelLoopSettings

    home = tmp_path / "home"
    ModelService(LabelLoopSettings(home=home, push_predictions=False)).store.save_label_config(1, (
        '<View><Text name="text" value="$text"/><Choices name="verdict" toName="text"><Choice value="good"/>'
        '<Choice value="bad"/></Choices></View>'))
    add_corpus(home, 1, write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in TEXTS]), shard_rows=20)
    rescorer = Rescorer(home)
    assert not rescorer.start(2, "labelloop-v0")  # no pool there: nothing to do

    # A stop while it runs ends the process; its finished shards are kept and the next start resumes.
    assert rescorer.start(1, "labelloop-v0")
    assert not rescorer.start(1, "labelloop-v0")  # under way already
    (process,) = [p for _, p in rescorer._children.values()]
    rescorer.stop(timeout=5)
    assert process.poll() is not None and rescorer.running() == {}

    assert rescorer.start(1, "labelloop-v0")
    deadline = time.monotonic() + 180
    while rescorer.running() and time.monotonic() < deadline:
        time.sleep(0.5)
    job = status(Pool(home, 1), "labelloop-v0")
    assert job["state"] == "done" and job["scored"] == len(TEXTS), job
    assert len(read_scores(Pool(home, 1), "labelloop-v0")) == len(TEXTS)
    assert not rescorer.start(1, "labelloop-v0")  # done: not scored twice
    assert "0600" == oct(((Job(Pool(home, 1), "labelloop-v0").folder / "rescore.log").stat().st_mode) & 0o777)[2:].zfill(4)


def test_a_re_add_swaps_the_pool_in_one_step_and_a_kill_at_any_point_leaves_a_pool(tmp_path, monkeypatch):
    from labelloop.pool import corpus

    first = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in TEXTS[:10]])
    second = write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in TEXTS[10:15]])
    pools = tmp_path / "pools"
    add_corpus(tmp_path, 3, first)
    pool = Pool(tmp_path, 3)
    assert pool.folder.is_symlink() and pool.info().texts == 10

    # Killed after writing the new generation, before the swap: the old pool serves; the next add tidies up.
    def killed(pool, staging):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus, "_swap_in", killed)
    with pytest.raises(KeyboardInterrupt):
        add_corpus(tmp_path, 3, second)
    monkeypatch.undo()
    assert pool.info().texts == 10 and len(list(pools.glob("3@*"))) == 2
    (pools / ".3.link-1").symlink_to("3@1")  # a link made and never renamed into place
    add_corpus(tmp_path, 3, second)
    assert pool.info().texts == 5 and len(list(pools.glob("3@*"))) == 1 and not list(pools.glob(".3.link-*"))

    # A pool written before generations (a plain folder) becomes one on the next add...
    current = pool.folder.resolve()
    pool.folder.unlink()
    current.rename(pool.folder)
    add_corpus(tmp_path, 3, first)
    assert pool.folder.is_symlink() and pool.info().texts == 10 and len(list(pools.glob("3@*"))) == 1
    # ...and an add killed after moving it aside, before linking it, leaves it found by the next reader.
    current = pool.folder.resolve()
    pool.folder.unlink()
    current.rename(pools / "3@0")
    assert Pool(tmp_path, 3).exists() and Pool(tmp_path, 3).info().texts == 10


def test_a_cancel_asked_while_a_job_starts_stands_and_one_left_by_an_earlier_run_does_not(tmp_path):
    """The re-scorer may ask a job to stop while its process still loads the model: that request must not be
    taken for one left over by an earlier run, which a new run forgets."""
    import os
    import time

    from labelloop.processes import started_at

    assert started_at() <= time.time()
    add_corpus(tmp_path, 1, write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in TEXTS[:5]]))
    job = Job(Pool(tmp_path, 1), "labelloop-v0")
    job.folder.mkdir(parents=True)
    job.request_cancel()
    job.clear_stale_cancel(since=time.time() - 60)  # asked after this run started: it stands
    assert job.cancelled()
    past = time.time() - 3600
    os.utime(job.folder / "CANCEL", (past, past))  # asked an hour before this run started: forgotten
    job.clear_stale_cancel(since=time.time() - 60)
    assert not job.cancelled()


def test_duplicates_are_found_on_disk_as_the_first_of_each_text_and_id_would_keep_them(tmp_path):
    """Exact duplicates are found by spilling keys to disk in partitions (memory flat in the corpus size): the
    result is the one a pass that remembers every text and id would give."""
    import random

    import numpy as np

    from labelloop.pool.spill import KeySpill, RowSet
    from labelloop.quality.dedup import normalize

    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    rows = []
    for _ in range(3000):
        text = " ".join(rng.choice(words) for _ in range(3))  # 125 distinct texts: many repeats
        text = text.upper() if rng.random() < 0.2 else text
        rows.append({"text": text if rng.random() > 0.02 else "  ", "ref": f"id{rng.randrange(2500)}"})
    source = write_jsonl(tmp_path / "c.jsonl", rows)

    def reference(with_ids):
        seen, kept = set(), []
        for r in rows:
            if r["text"].strip() and normalize(r["text"]) not in seen:
                seen.add(normalize(r["text"]))
                kept.append(r)
        taken, out = set(), []
        for r in kept:  # then an id taken by an earlier text kept
            if not with_ids or r["ref"] not in taken:
                taken.add(r["ref"])
                out.append(r)
        return out

    for with_ids in (False, True):
        home = tmp_path / f"home-{with_ids}"
        info = add_corpus(home, 1, source, id_field="ref" if with_ids else None, shard_rows=40)
        got = [t for _, table in Pool(home, 1).read(("text",)) for t in table.column("text").to_pylist()]
        want = reference(with_ids)
        assert got == [r["text"] for r in want]
        assert info.texts == len(want) and info.texts + info.duplicates + info.empty == len(rows)
        assert not (Pool(home, 1).folder / "spill").exists()
        assert len(info.shards) < 3000 / 40  # the shards left empty by duplicates are gone

    # the spill itself, across many flushes and partitions, against a set
    spill = KeySpill(tmp_path / "spill", partitions=7, flush_rows=100)
    keys = np.array([rng.randrange(50) for _ in range(1000)], dtype=np.uint64)
    for start in range(0, 1000, 64):
        spill.add(keys[start:start + 64], np.arange(start, min(start + 64, 1000)))
    repeated = RowSet(1000)
    for found in spill.repeats():
        repeated.add(found)
    first = {}
    for row, key in enumerate(keys.tolist()):
        first.setdefault(key, row)
    assert set(np.flatnonzero(repeated.contains(np.arange(1000))).tolist()) == set(range(1000)) - set(first.values())
    assert len(repeated) == 1000 - len(first)


def test_a_broken_json_line_is_named_with_its_fix(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{"text": "cut off\n')
    with pytest.raises(ConfigError, match=r"c.jsonl, line 4: not JSON .*fix or remove that line"):
        add_corpus(tmp_path / "home", 1, source)
    source.write_text('["a list, not an object"]\n')
    with pytest.raises(ConfigError, match="line 1: expected one JSON object per line"):
        add_corpus(tmp_path / "home", 1, source)
    assert not Pool(tmp_path / "home", 1).exists()  # nothing half-added
    assert not list((tmp_path / "home" / "pools").glob("1@*"))  # nor a staging folder


def test_refills_of_one_project_take_turns_and_the_backend_skips_a_project_without_a_pool(tmp_path, caplog):
    from labelloop.pool.working_set import AutoRefill, _refilling

    add_corpus(tmp_path, 1, write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in TEXTS]))
    pool = Pool(tmp_path, 1)
    with _refilling(pool, wait=False) as first:
        assert first
        with _refilling(pool, wait=False) as second:
            assert not second  # a lead's refill holds the project: the backend's skips it
    with _refilling(pool, wait=False) as again:
        assert again  # released when the first one ended
    auto = AutoRefill(tmp_path, size=200, at=0.5, audit_share=0.1)
    assert auto.below == 100
    # No pool, or no labeling config known: nothing is asked of Label Studio (there is none here).
    assert auto(None, 2, "<View/>") is None and auto(None, 1, None) is None
    # A pool on a project it can't fill (no single-choice control): said once, and Label Studio isn't asked.
    ner = '<View><Labels name="l" toName="t"><Label value="A"/></Labels><Text name="t" value="$text"/></View>'
    with caplog.at_level("WARNING", logger="labelloop.pool.working_set"):
        assert not auto.needed(None, 1, ner) and not auto.needed(None, 1, ner)
    assert sum("not refilled" in r.getMessage() for r in caplog.records) == 1
    assert AutoRefill(tmp_path, size=3, at=0.01, audit_share=0.1).below == 1


def test_a_refill_that_failed_is_not_tried_again_for_a_while(tmp_path, monkeypatch):
    from labelloop.pool import working_set

    add_corpus(tmp_path, 1, write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in TEXTS]))
    config = ('<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="good"/>'
              '<Choice value="bad"/></Choices></View>')
    monkeypatch.setattr(working_set.lsclient, "count_tasks", lambda *args, **kwargs: 0)  # no open pool task
    auto = working_set.AutoRefill(tmp_path, size=10, at=0.5, audit_share=0.0)
    assert auto.needed(None, 1, config)
    with pytest.raises(AttributeError):  # no Label Studio client to list the open tasks with
        auto(None, 1, config)
    assert not auto.needed(None, 1, config)  # ...so the publish loop doesn't publish every 30 s meanwhile
    monkeypatch.setattr(working_set.time, "monotonic", lambda: 1e12)
    assert auto.needed(None, 1, config)  # five minutes later it is tried again
