"""JSON Lines in and out: one object per line, blank lines skipped, a bad line named by number."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from labelloop.errors import ConfigError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """``(line_number, value)`` for each non-blank line; invalid JSON raises :class:`ConfigError` naming the line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{n}: not valid JSON ({e.msg})") from e


def read_jsonl(path: str | Path) -> list:
    return [value for _, value in iter_jsonl(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
