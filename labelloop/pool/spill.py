"""Exact duplicates among any number of texts in bounded memory: each text's 64-bit key and its row number are
spilled to disk in partitions by key, then each partition alone is sorted to find the rows whose key came at an
earlier row. Memory is one partition and one bit per row (12.5 MB for 100 million texts), whatever the corpus
size; disk is 16 bytes per text while the pool is added.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

PARTITIONS = 128  # 100 million texts: about 780,000 pairs (12 MB) per partition
FLUSH_ROWS = 262_144  # pairs buffered in memory before they are written out
RECORD = np.dtype([("key", "<u8"), ("row", "<i8")])


class RowSet:
    """A set of row numbers below ``size``, one bit per row."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._bits = np.zeros((size + 7) // 8, dtype=np.uint8)
        self.count = 0

    def add(self, rows: NDArray[np.int64]) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        fresh = rows[~self.contains(rows)]
        np.bitwise_or.at(self._bits, fresh >> 3, (1 << (fresh & 7)).astype(np.uint8))
        self.count += len(np.unique(fresh))

    def contains(self, rows: NDArray[np.int64]) -> NDArray[np.bool_]:
        rows = np.asarray(rows, dtype=np.int64)
        return (self._bits[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1 == 1

    def __len__(self) -> int:
        return self.count


class KeySpill:
    """``(key, row)`` pairs on disk, partitioned by key, in ``folder``."""

    def __init__(self, folder: Path, partitions: int = PARTITIONS, flush_rows: int = FLUSH_ROWS) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.partitions = partitions
        self.flush_rows = flush_rows
        self._keys: list[NDArray[np.uint64]] = []
        self._rows: list[NDArray[np.int64]] = []
        self._buffered = 0

    def add(self, keys: NDArray[np.uint64], rows: NDArray[np.int64]) -> None:
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys for {len(rows)} rows")
        self._keys.append(np.asarray(keys, dtype=np.uint64))
        self._rows.append(np.asarray(rows, dtype=np.int64))
        self._buffered += len(keys)
        if self._buffered >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        pairs = np.empty(self._buffered, dtype=RECORD)
        pairs["key"] = np.concatenate(self._keys)
        pairs["row"] = np.concatenate(self._rows)
        self._keys, self._rows, self._buffered = [], [], 0
        part = (pairs["key"] % np.uint64(self.partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.partitions + 1))
        for p in range(self.partitions):
            if bounds[p] < bounds[p + 1]:
                with open(self.folder / f"{p:04d}.bin", "ab") as f:
                    pairs[order[bounds[p]:bounds[p + 1]]].tofile(f)

    def groups(self, skip: RowSet | None = None) -> Iterator[tuple[NDArray[np.uint64], NDArray[np.int64]]]:
        """Partition by partition, ``(keys, rows)`` sorted by key, then row (rows in ``skip`` left out)."""
        self._flush()
        for p in range(self.partitions):
            path = self.folder / f"{p:04d}.bin"
            if not path.exists():
                continue
            pairs = np.fromfile(path, dtype=RECORD)
            if skip is not None and len(pairs):
                pairs = pairs[~skip.contains(pairs["row"])]
            order = np.lexsort((pairs["row"], pairs["key"]))
            yield pairs["key"][order], pairs["row"][order]

    def repeats(self, skip: RowSet | None = None) -> Iterator[NDArray[np.int64]]:
        """Partition by partition, the rows whose key came at an earlier row (rows in ``skip`` left out)."""
        for keys, rows in self.groups(skip):  # each key's first row leads its group
            later = np.ones(len(keys), dtype=bool)
            later[:1] = False
            later[1:] = keys[1:] == keys[:-1]
            yield rows[later]
