"""Near duplicates in a pool of any size, in bounded memory.

The same rule as :class:`labelloop.quality.dedup.NearDuplicateIndex` (Jaccard similarity of shingles, candidates
from MinHash and LSH bands, every candidate checked exactly), with what the index keeps in memory kept on disk:

1. one pass over the pool writes each text's shingles (sorted 32-bit hashes) to a file, and each of its band keys,
   with its row number, to a :class:`~labelloop.pool.spill.KeySpill`;
2. each spill partition alone is sorted by key: rows that share a band key are candidates, every row against the
   first row of its bucket and the ``window`` rows before it (a bucket of a million copies of a boilerplate line
   costs a million checks, not a million squared);
3. each candidate pair is checked exactly on the two texts' shingles, read back from the file, and each text keeps
   its most similar earlier text (ties: the earliest).

Memory is one spill partition, one batch of texts and 12 bytes per text (each text's best match so far: 1.2 GB
for 100 million texts); disk, while it runs, is about 4 bytes per shingle plus 280 bytes per text (about 40 GB for
100 million texts of 100 words), in the pool's own folder.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from labelloop._optional import require
from labelloop.errors import ConfigError
from labelloop.pool.spill import KeySpill
from labelloop.quality.dedup import NearDuplicateIndex, shingle_hashes

if TYPE_CHECKING:
    from labelloop.pool.corpus import Pool

WINDOW = 8  # earlier rows of a bucket each row is checked against, beside the bucket's first
PARTITIONS = 1024  # 100 million texts: about 1.6 million band keys (25 MB) per partition
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x85EBCA77C2B2AE63, 0x94D049BB133111EB], dtype=np.uint64)


def band_keys(signatures: NDArray[np.int64], bands: int) -> NDArray[np.uint64]:
    """``(n, bands)`` 64-bit keys of each signature's bands: equal bands give equal keys, and a band's index is
    part of its key, so band 3 of one text never meets band 5 of another."""
    n, perms = signatures.shape
    rows = perms // bands
    if rows > len(_MIX):
        raise ValueError(f"at most {len(_MIX)} rows per band")
    parts = signatures.reshape(n, bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = (parts * _MIX[:rows]).sum(axis=2, dtype=np.uint64) + np.arange(bands, dtype=np.uint64) * _MIX[-1]
        key ^= key >> np.uint64(31)
        key *= np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(29)
    return key


def candidate_pairs(keys: NDArray[np.uint64], rows: NDArray[np.int64], window: int = WINDOW
                    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(later, earlier)`` rows that share a key: with keys and rows sorted by key then row, each row against its
    bucket's first row and the ``window`` rows before it; each pair once."""
    if not len(keys):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    fresh = np.ones(len(keys), dtype=bool)
    fresh[1:] = keys[1:] != keys[:-1]
    start = np.maximum.accumulate(np.where(fresh, np.arange(len(keys)), 0))
    position = np.arange(len(keys)) - start
    later, earlier = [rows[position >= 1]], [rows[start[position >= 1]]]
    for back in range(1, window + 1):
        take = position - back >= 1  # the bucket's first row is paired above
        index = np.nonzero(take)[0]
        later.append(rows[index])
        earlier.append(rows[index - back])
    pairs = np.unique(np.stack([np.concatenate(later), np.concatenate(earlier)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


class _Shingles:
    """Each row's sorted shingle hashes, appended to a file while the pool is read, then read back a row at a time."""

    def __init__(self, folder: Path) -> None:
        self.values_path, self.offsets_path = folder / "shingles.u32", folder / "offsets.i64"
        self._values = open(self.values_path, "wb")  # noqa: SIM115 - closed by finish() or close()
        self._offsets: list[int] = [0]
        self._offsets_file = open(self.offsets_path, "wb")  # noqa: SIM115 - closed by finish() or close()
        self._end = 0

    def add(self, hashes: list[NDArray[np.uint32]]) -> None:
        for h in hashes:
            self._end += len(h)
            self._offsets.append(self._end)
        if hashes:
            np.concatenate(hashes).astype(np.uint32).tofile(self._values)
        np.asarray(self._offsets[:-1], dtype=np.int64).tofile(self._offsets_file)
        self._offsets = self._offsets[-1:]

    def finish(self) -> _Shingles:
        np.asarray(self._offsets, dtype=np.int64).tofile(self._offsets_file)
        self._values.close()
        self._offsets_file.close()
        self._values_fd = os.open(self.values_path, os.O_RDONLY)
        self._offsets_fd = os.open(self.offsets_path, os.O_RDONLY)
        return self

    def of(self, row: int) -> NDArray[np.uint32]:
        """The shingle hashes of ``row``, read from disk (reads, not a mapping: memory stays that of one pair)."""
        start, end = np.frombuffer(os.pread(self._offsets_fd, 16, 8 * row), dtype=np.int64)
        return np.frombuffer(os.pread(self._values_fd, 4 * int(end - start), 4 * int(start)), dtype=np.uint32)

    def close(self) -> None:
        self._values.close()
        self._offsets_file.close()
        for fd in (getattr(self, "_values_fd", None), getattr(self, "_offsets_fd", None)):
            if fd is not None:
                os.close(fd)


def check_threshold(threshold: float) -> float:
    """``threshold`` when it is a Jaccard similarity a search can use: above 0 and at most 1."""
    if not 0 < threshold <= 1:
        raise ConfigError(f"a near-duplicate threshold is a Jaccard similarity above 0 and at most 1, not {threshold}: "
                          "try 0.8")
    return threshold


def near_duplicate_rows(texts: Iterator[list[str]], folder: Path, *, threshold: float, window: int = WINDOW,
                        progress: Callable[[int], None] | None = None
                        ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """``(row, earlier row, similarity)`` of every text at least ``threshold`` similar to an earlier one, in row
    order, for texts given in batches; ``folder`` holds the working files and is emptied after."""
    index = NearDuplicateIndex(check_threshold(threshold))
    folder.mkdir(parents=True, exist_ok=True)
    shingles: _Shingles | None = None
    try:
        shingles, spill = _Shingles(folder), KeySpill(folder / "bands", partitions=PARTITIONS)
        n = 0
        for batch in texts:
            hashes = [shingle_hashes(t) for t in batch]
            if not hashes:
                continue
            signatures = np.stack([index.minhash(h) for h in hashes])
            keys = band_keys(signatures, index.bands)
            rows = np.repeat(np.arange(n, n + len(batch), dtype=np.int64), index.bands)
            spill.add(keys.reshape(-1), rows)
            shingles.add(hashes)
            n += len(batch)
            if progress:
                progress(len(batch))
        shingles.finish()
        best = np.zeros(n, dtype=np.float32)
        best_row = np.full(n, -1, dtype=np.int64)
        for keys, rows in spill.groups():
            for a, b in zip(*candidate_pairs(keys, rows, window), strict=True):
                if best_row[a] == b:  # the pair met in an earlier band
                    continue
                x, y = shingles.of(a), shingles.of(b)
                both = len(np.intersect1d(x, y, assume_unique=True))
                similarity = both / (len(x) + len(y) - both) if len(x) or len(y) else 1.0
                if similarity >= threshold and (similarity > best[a] or (similarity == best[a] and b < best_row[a])):
                    best[a], best_row[a] = similarity, b
        found = np.nonzero(best_row >= 0)[0]
        return found, best_row[found], best[found]
    finally:
        if shingles is not None:
            shingles.close()
        shutil.rmtree(folder, ignore_errors=True)


def near_duplicates(pool: Pool, *, threshold: float = 0.8, progress: Callable[[int], None] | None = None
                    ) -> Iterator[tuple[str, str, float]]:
    """``(id, earlier id, similarity)`` of every text of the pool at least ``threshold`` similar to an earlier text
    (MinHash and LSH bands, each candidate checked exactly), in pool order. ``progress(n)`` follows the reading."""
    pq = require("pyarrow.parquet", "pool")
    shards = pool.shards()
    folder = pool.folder.resolve() / f"near-{time.time_ns()}"
    rows, earlier, similarity = near_duplicate_rows(
        (table.column("text").to_pylist() for _, table in pool.read(("text",))), folder, threshold=threshold,
        progress=progress)
    wanted = np.unique(np.concatenate([rows, earlier]))
    ids: dict[int, str] = {}
    start = 0
    for shard in shards:  # ids of the rows reported only, one shard's id column at a time
        size = pq.ParquetFile(shard).metadata.num_rows
        inside = wanted[(wanted >= start) & (wanted < start + size)]
        if len(inside):
            column = pq.read_table(shard, columns=["id"]).column("id")
            ids.update((int(r), str(column[int(r) - start].as_py())) for r in inside)
        start += size
    for a, b, s in zip(rows.tolist(), earlier.tolist(), similarity.tolist(), strict=True):
        yield ids[a], ids[b], float(s)
