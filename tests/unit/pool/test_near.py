"""Near duplicates of a pool found on disk: the same answers as the in-memory index, a bounded number of checks in
a bucket of copies, ids joined back from the shards, and no working file left behind."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from labelloop.errors import ConfigError
from labelloop.pool.corpus import Pool, add_corpus
from labelloop.pool.near import band_keys, candidate_pairs, near_duplicate_rows, near_duplicates
from labelloop.quality.dedup import NearDuplicateIndex

pytest.importorskip("pyarrow")

WORDS = ("battery screen delivery refund support price quality update crash login invoice shipping order account "
         "password warranty return broken slow fast great awful cheap helpful rude").split()


def corpus(seed: int, n: int = 400) -> list[str]:
    """Texts with near copies (a word changed, dropped or added) planted among them, at random distances."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.3:
            words = rng.choice(texts).split()
            i = rng.randrange(len(words))
            edit = rng.choice(("swap", "drop", "add"))
            if edit == "swap":
                words[i] = rng.choice(WORDS)
            elif edit == "drop" and len(words) > 6:
                del words[i]
            else:
                words.insert(i, rng.choice(WORDS))
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30))))
    return texts


def in_memory(texts: list[str], threshold: float) -> dict[int, float]:
    index, found = NearDuplicateIndex(threshold), {}
    for row, text in enumerate(texts):
        near = index.find(text)
        if near:
            found[row] = near[0][1]
        index.add(row, text)
    return found


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_disk_finds_what_the_in_memory_index_finds(tmp_path, seed):
    texts = corpus(seed)
    rows, earlier, similarity = near_duplicate_rows(iter([texts[:150], texts[150:]]), tmp_path / "work",
                                                    threshold=0.7)
    expected = in_memory(texts, 0.7)
    assert len(expected) > 40  # the planted copies are there to be found
    assert rows.tolist() == sorted(expected)
    assert similarity.tolist() == pytest.approx([expected[r] for r in rows.tolist()], abs=1e-6)
    assert (earlier < rows).all()
    assert not (tmp_path / "work").exists()


def test_a_bucket_of_copies_costs_a_window_of_checks_per_row_not_all_pairs():
    keys = np.array([7] * 100 + [9] * 2, dtype=np.uint64)
    rows = np.arange(102, dtype=np.int64)
    later, earlier = candidate_pairs(keys, rows, window=3)
    assert len(later) == 99 + 98 + 97 + 96 + 1  # the first row, and the 3 rows before (the first not twice)
    assert set(zip(later.tolist(), earlier.tolist(), strict=True)) >= {(99, 0), (99, 98), (99, 96), (101, 100)}
    assert (0, 0) not in set(zip(later.tolist(), earlier.tolist(), strict=True)) and (earlier < later).all()
    assert not any(a >= 100 > b or b >= 100 > a for a, b in zip(later.tolist(), earlier.tolist(), strict=True))


def test_band_keys_are_equal_for_equal_bands_and_differ_across_bands():
    signatures = np.array([[1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8]], dtype=np.int64)
    keys = band_keys(signatures, bands=2)
    assert keys.shape == (2, 2) and keys[0, 0] == keys[1, 0]
    assert keys[0, 1] != keys[1, 1] and keys[0, 0] != keys[0, 1]  # same values in band 0 and 1: different keys


def test_the_pool_report_names_ids_in_pool_order_and_cleans_up(tmp_path):
    texts = corpus(5, 200)
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": t, "ref": f"r{i}"}) + "\n" for i, t in enumerate(texts)))
    add_corpus(tmp_path / "home", 3, path, id_field="ref", shard_rows=64)
    pool = Pool(tmp_path / "home", 3)
    kept = [t for _, table in pool.read() for t in table.column("text").to_pylist()]
    ids = [i for _, table in pool.read() for i in table.column("id").to_pylist()]
    found = list(near_duplicates(pool, threshold=0.75))
    expected = in_memory(kept, 0.75)
    assert [f[0] for f in found] == [ids[r] for r in sorted(expected)]
    assert all(ids.index(other) < ids.index(text_id) for text_id, other, _ in found)
    assert not list(pool.folder.resolve().glob("near-*"))
    with pytest.raises(ConfigError, match="try 0.8"):
        list(near_duplicates(pool, threshold=1.5))


def test_pool_add_writes_every_near_duplicate_to_a_report_only_its_owner_reads(tmp_path, monkeypatch, capsys):
    from labelloop.cli import main

    texts = corpus(7, 150)
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    monkeypatch.setenv("LABELLOOP_HOME", str(tmp_path / "home"))
    main(["pool", "add", "--project", "4", "--data", str(path), "--near-duplicates", "0.75"])
    report = Pool(tmp_path / "home", 4).folder / "near_duplicates.jsonl"
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(rows) == len(list(near_duplicates(Pool(tmp_path / "home", 4), threshold=0.75))) > 5
    assert set(rows[0]) == {"id", "near", "similarity"} and rows[0]["similarity"] >= 0.75
    assert report.stat().st_mode & 0o077 == 0
    assert f"{len(rows):,} near duplicates" in capsys.readouterr().out
    assert not list(report.parent.glob(".near_duplicates*"))
    with pytest.raises(SystemExit):  # refused before the corpus is read, not after
        main(["pool", "add", "--project", "5", "--data", str(path), "--near-duplicates", "80"])
    assert "try 0.8" in capsys.readouterr().err and not Pool(tmp_path / "home", 5).exists()
