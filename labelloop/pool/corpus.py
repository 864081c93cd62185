"""A project's pool of texts: registered from JSONL, CSV, Parquet or a Hugging Face dataset folder, kept as
Parquet shards of ``(id, text)`` under ``$LABELLOOP_HOME/pools/<project>/``.

Ids are stable: the source's own id column when named, else the text's content key (so the same text gets the
same id whatever file it comes from, and exact duplicates, case and spacing aside, collapse into one). Near
duplicates are reported by :mod:`labelloop.pool.near` (MinHash and LSH bands, on disk). The source is read in batches
and exact duplicates are found on disk (:mod:`labelloop.pool.spill`), so memory stays flat in the corpus size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelloop._optional import require
from labelloop.errors import ConfigError
from labelloop.quality.dedup import normalize

if TYPE_CHECKING:
    from labelloop.pool.spill import RowSet

log = logging.getLogger(__name__)

SHARD_ROWS = 50_000  # texts per shard: the unit a scoring job resumes from
READ_BATCH = 10_000
FORMATS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}


@dataclass
class PoolInfo:
    project: int
    source: str
    text_field: str
    id_field: str | None
    texts: int
    duplicates: int
    empty: int
    shards: list[str]
    added_at: float


class Pool:
    """The pool of one project, in its folder."""

    def __init__(self, home: Path, project_id: int) -> None:
        self.project = int(project_id)
        self.folder = Path(home) / "pools" / str(self.project)

    @property
    def info_path(self) -> Path:
        return self.folder / "pool.json"

    def exists(self) -> bool:
        if not self.info_path.exists():
            _relink(self)
        return self.info_path.exists()

    def info(self) -> PoolInfo:
        if not self.exists():
            raise ConfigError(f"project {self.project} has no pool: add one with `labelloop pool add --project "
                              f"{self.project} --data PATH`")
        return PoolInfo(**json.loads(self.info_path.read_text()))

    def shards(self) -> list[Path]:
        return [self.folder / "texts" / name for name in self.info().shards]

    def read(self, columns: tuple[str, ...] = ("id", "text")) -> Iterator[tuple[Path, Any]]:
        """``(shard, pyarrow.Table)`` for every shard, in order."""
        pq = require("pyarrow.parquet", "pool")
        for shard in self.shards():
            yield shard, pq.read_table(shard, columns=list(columns))

    def texts(self, ids: list[str]) -> dict[str, str]:
        """The texts of ``ids`` (those the pool holds)."""
        wanted = set(ids)
        out: dict[str, str] = {}
        for _, table in self.read():
            for i, t in zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True):
                if i in wanted:
                    out[i] = t
        return out


def source_batches(path: Path, text_field: str, id_field: str | None, batch: int = READ_BATCH
                   ) -> Iterator[tuple[list, list]]:
    """``(texts, ids)`` batches from a file or folder of JSONL, CSV or Parquet, or a dataset saved by Hugging
    Face ``datasets`` (``save_to_disk``); ids are None where no id column is named."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist: give a JSONL, CSV or Parquet file or folder, or a Hugging Face "
                          "dataset folder")
    columns = [text_field] + ([id_field] if id_field else [])
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        datasets = require("datasets", "pool")
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            raise ConfigError(f"{path} holds several splits ({', '.join(loaded)}): give one split's folder")
        _check_columns(loaded.column_names, columns, path)
        for start in range(0, len(loaded), batch):
            part = loaded[start:start + batch]
            yield part[text_field], part[id_field] if id_field else [None] * len(part[text_field])
        return
    ds = require("pyarrow.dataset", "pool")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in FORMATS) if path.is_dir() else [path]
    kinds = {FORMATS.get(p.suffix.lower()) for p in files}
    if not files or None in kinds or len(kinds) > 1:
        raise ConfigError(f"{path}: expected .jsonl, .csv or .parquet files of one kind (found "
                          f"{', '.join(sorted(str(k) for k in kinds)) or 'none'})")
    if kinds == {"json"}:  # pyarrow's JSON readers hold more memory the longer the file (147 MB at a million lines)
        yield from _json_lines(files, text_field, id_field, batch)
        return
    dataset = ds.dataset([str(p) for p in files], format=kinds.pop())
    _check_columns(dataset.schema.names, columns, path)
    for record_batch in dataset.to_batches(columns=columns, batch_size=batch):
        texts = record_batch.column(text_field).to_pylist()
        yield texts, record_batch.column(id_field).to_pylist() if id_field else [None] * len(texts)


def _json_lines(files: list[Path], text_field: str, id_field: str | None, batch: int
                ) -> Iterator[tuple[list, list]]:
    """``(texts, ids)`` batches from JSON Lines files, one line at a time: memory is one batch's."""
    texts: list = []
    ids: list = []
    checked = False
    for file in files:
        with open(file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{file}, line {number}: not JSON ({e.msg}): fix or remove that line, then add "
                                      "the pool again") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{file}, line {number}: expected one JSON object per line")
                if not checked:
                    _check_columns(list(row), [text_field] + ([id_field] if id_field else []), file)
                    checked = True
                texts.append(row.get(text_field))
                ids.append(row.get(id_field) if id_field else None)
                if len(texts) >= batch:
                    yield texts, ids
                    texts, ids = [], []
    if texts:
        yield texts, ids


def _check_columns(names: list[str], wanted: list[str], path: Path) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ConfigError(f"{path} has no column {missing[0]!r} (it has {', '.join(names[:12])}): name the text "
                          "column with --text-field and the id column with --id-field")


def add_corpus(home: Path, project_id: int, path: str | Path, *, text_field: str = "text", id_field: str | None = None,
               shard_rows: int = SHARD_ROWS, progress: Callable[[int], None] | None = None) -> PoolInfo:
    """Register ``path`` as the project's pool (replacing an earlier one): its texts, with stable ids, exact
    duplicates and empty texts left out, written as Parquet shards. Written to a new folder and swapped in
    whole (:func:`_swap_in`), so an interrupted add leaves the previous pool as it was.

    A text is a duplicate when an earlier text is the same, case and spacing aside, or (with the source's own
    ids) when an earlier text kept has its id. Duplicates are found in bounded memory whatever the corpus size
    (:mod:`labelloop.pool.spill`): every text is written, then the shards that held duplicates are rewritten
    without them."""
    import numpy as np

    from labelloop.pool.spill import KeySpill, RowSet

    pa = require("pyarrow", "pool")
    pq = require("pyarrow.parquet", "pool")
    pool = Pool(home, project_id)
    _recover(pool)
    staging = pool.folder.with_name(f"{pool.folder.name}{GENERATION}{time.time_ns()}")
    (staging / "texts").mkdir(parents=True)
    os.chmod(staging, 0o700)
    contents, given_ids = KeySpill(staging / "spill" / "content"), KeySpill(staging / "spill" / "ids")
    shards: list[tuple[str, int, int]] = []  # (file, first row, end row)
    rows_ids: list[str] = []
    rows_texts: list[str] = []
    rows = empty = 0

    def flush() -> None:
        if rows_ids:
            name = f"part-{len(shards):05d}.parquet"
            pq.write_table(pa.table({"id": rows_ids, "text": rows_texts}), staging / "texts" / name)
            shards.append((name, rows - len(rows_ids), rows))
            rows_ids.clear()
            rows_texts.clear()

    try:
        for texts, ids in source_batches(Path(path), text_field, id_field):
            keys: list[int] = []
            id_keys: list[int] = []
            id_rows: list[int] = []
            first = rows
            for text, given in zip(texts, ids, strict=True):
                if not isinstance(text, str) or not text.strip():
                    empty += 1
                    continue
                digest = hashlib.sha1(normalize(text).encode("utf-8"))  # content_key's, from one normalization
                keys.append(int.from_bytes(digest.digest()[:8], "big"))
                own_id = given is not None and str(given).strip()
                text_id = str(given) if own_id else digest.hexdigest()
                if own_id:  # an id made from the content is unique with its text; the source's own ids must be checked
                    id_keys.append(int.from_bytes(hashlib.blake2b(text_id.encode("utf-8"), digest_size=8).digest(), "big"))
                    id_rows.append(rows)
                rows_ids.append(text_id)
                rows_texts.append(text)
                rows += 1
                if len(rows_ids) >= shard_rows:
                    flush()
            contents.add(np.array(keys, dtype=np.uint64), np.arange(first, rows, dtype=np.int64))
            given_ids.add(np.array(id_keys, dtype=np.uint64), np.array(id_rows, dtype=np.int64))
            if progress:
                progress(len(texts))
    except BaseException:  # a broken source or an interrupt: nothing half-written stays behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    flush()
    repeated = RowSet(rows)
    for found in contents.repeats():
        repeated.add(found)
    for found in given_ids.repeats(skip=repeated):  # an id taken by an earlier text that is kept
        repeated.add(found)
    shutil.rmtree(staging / "spill", ignore_errors=True)
    kept_shards = _drop_rows(staging / "texts", shards, repeated)
    kept = rows - len(repeated)
    if not kept:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"{path}: no text to add (column {text_field!r} is empty or missing in every row)")
    info = PoolInfo(pool.project, str(Path(path).resolve()), text_field, id_field, kept, len(repeated), empty,
                    kept_shards, time.time())
    (staging / "pool.json").write_text(json.dumps(asdict(info), indent=2))
    _swap_in(pool, staging)
    return info


def _drop_rows(folder: Path, shards: list[tuple[str, int, int]], rows: RowSet) -> list[str]:
    """Rewrite the shards that hold any of ``rows`` without them;
    returns the shards left, in order (one left empty is removed)."""
    import numpy as np

    pq = require("pyarrow.parquet", "pool")
    left = []
    for name, start, end in shards:
        drop = rows.contains(np.arange(start, end, dtype=np.int64))
        if drop.any():
            table = pq.read_table(folder / name)
            if drop.all():
                (folder / name).unlink()
                continue
            pq.write_table(table.filter(~drop), folder / f"{name}.partial")
            os.replace(folder / f"{name}.partial", folder / name)
        left.append(name)
    return left


GENERATION = "@"  # pools/7 links to pools/7@<time>, the folder of its current generation


def _legacy(pool: Pool) -> Path:
    return pool.folder.with_name(f"{pool.folder.name}{GENERATION}0")


def _relink(pool: Pool) -> None:
    """A pool folder from before generations, moved aside by an add that was killed before it linked it again,
    is linked again (safe for readers: it touches nothing else)."""
    link, legacy = pool.folder, _legacy(pool)
    if not link.exists() and not link.is_symlink() and legacy.is_dir():
        try:
            os.symlink(legacy.name, link)
        except FileExistsError:  # another process did it first
            pass
        except OSError as e:  # a reader that may not write here: the next add relinks it
            log.warning("the pool of project %s is at %s; it can't be linked as %s (%s)", pool.project, legacy, link, e)


def _recover(pool: Pool) -> None:
    """Before an add: finish what a killed add left (see :func:`_relink`), and remove generation folders that
    never became current or were replaced and not yet removed, and links never renamed into place."""
    _relink(pool)
    link = pool.folder
    current = link.resolve() if link.is_symlink() else None
    for folder in link.parent.glob(f"{link.name}{GENERATION}*"):
        if folder != current and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
    for stray in link.parent.glob(f".{link.name}.link-*"):
        stray.unlink(missing_ok=True)


def _swap_in(pool: Pool, staging: Path) -> None:
    """Make ``staging`` the pool in one step: ``pools/<project>`` is a symbolic link to a generation folder,
    replaced by renaming a new link over it (atomic), so a reader finds the old pool or the new one, never
    none, and a kill at any point leaves one of them in place. The replaced generation is removed after."""
    link = pool.folder
    if link.is_dir() and not link.is_symlink():  # a pool written before generations becomes generation 0
        os.replace(link, _legacy(pool))
        _relink(pool)
    before = link.resolve() if link.is_symlink() else None
    fresh = link.with_name(f".{link.name}.link-{time.time_ns()}")
    os.symlink(staging.name, fresh)  # relative: the home can move
    os.replace(fresh, link)
    if before is not None and before != staging:
        shutil.rmtree(before, ignore_errors=True)
