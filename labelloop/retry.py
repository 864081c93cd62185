"""When to try a call again: the one backoff policy of every HTTP client in the package (Label Studio's and the
LLM server's). Waits grow exponentially to a cap, with jitter so that clients that failed together do not come
back together, and a server's own ``Retry-After`` is honoured when it gives one."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Retry:
    """Exponential backoff for calls that are safe to repeat: ``attempts`` tries in all, waiting ``base * 2**k``
    seconds (capped at ``cap``) times a random factor within ``1 ± jitter`` between them."""

    attempts: int = 8
    base: float = 0.5
    cap: float = 20.0
    jitter: float = 0.2

    def waits(self) -> Iterator[float]:
        for k in range(self.attempts - 1):
            wait = min(self.cap, self.base * 2**k)
            yield wait * (1.0 + self.jitter * (2.0 * random.random() - 1.0))


def retry_after(headers: Mapping[str, str], *, cap: float = 60.0) -> float | None:
    """The wait a server asked for in its ``Retry-After`` header (seconds, or an HTTP date), at most ``cap``;
    None when it asked for none (or for something unreadable)."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(cap, max(0.0, seconds))
