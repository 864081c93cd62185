"""The audit split and the promotion gate: how LabelLoop knows a model is better, under active learning.

Labels that active learning picked are a biased sample of the data (the model chose them because it was
unsure), so accuracy measured on them says little about the data as a whole. A fixed random share of the
project's tasks, decided per task from its id by :func:`in_audit`, is the **audit split**: those tasks are
placed in the queue like any other, their annotations are never trained on, and they are the one test set
of the project (learning curves, the Train page's export, the promotion gate). Membership is a property of
the task, so it holds however a task is reached (the queue, the Data Manager, an SDK script) and survives
restarts.

The gate compares a challenger with the serving champion on the same audit items: an exact one-sided
McNemar test on the items exactly one of them gets right. It promotes only when the challenger is better
beyond the noise (``p < alpha``) on at least ``min_audit`` items, and every accuracy it reports carries its
n and a 95% Wilson interval.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

AUDIT_SALT = "labelloop-audit"
DEFAULT_AUDIT_SHARE = 0.1
MIN_AUDIT = 30  # below this, a 95% interval on accuracy is wider than +-0.15: too wide to judge anything
GATE_ALPHA = 0.05

Verdict = Literal["promote", "refuse", "hold"]


def in_audit(project_id: int, task_id: int | None, share: float) -> bool:
    """Whether the task belongs to the project's audit split (a fixed random ``share`` of its tasks)."""
    if task_id is None or share <= 0:
        return False
    digest = hashlib.sha256(f"{AUDIT_SALT}\x00{project_id}\x00{task_id}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48) < share


def audit_rank(project_id: int, task_id: int) -> float:
    """A random but fixed position in [0, 1) for an audit task, independent of its membership draw."""
    digest = hashlib.sha256(f"{AUDIT_SALT}-order\x00{project_id}\x00{task_id}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``correct / n`` ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(champion_only: int, challenger_only: int) -> float:
    """One-sided exact McNemar p-value that the challenger is better.

    ``champion_only`` items only the champion got right, ``challenger_only`` only the challenger. Under the
    null (equally good) each discordant item is a fair coin; the p-value is the chance of at least
    ``challenger_only`` successes in ``champion_only + challenger_only`` tosses (1.0 with no discordant item).
    """
    n = champion_only + challenger_only
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(challenger_only, n + 1)) / 2.0**n)


@dataclass
class Score:
    """One model on the audit items: its accuracy with n and a 95% interval."""

    model_version: str
    correct: int
    n: int
    accuracy: float
    low: float
    high: float

    @classmethod
    def of(cls, model_version: str, right: np.ndarray) -> Score:
        correct, n = int(right.sum()), int(len(right))
        low, high = wilson_interval(correct, n)
        return cls(model_version, correct, n, correct / n if n else 0.0, low, high)

    def __str__(self) -> str:
        return f"{self.model_version} {self.accuracy:.3f} [{self.low:.3f}, {self.high:.3f}] on n={self.n}"


@dataclass
class Evidence:
    """What the gate saw and decided: both scores, the discordant counts, the p-value and the verdict."""

    verdict: Verdict
    reason: str
    champion: Score
    challenger: Score
    champion_only: int
    challenger_only: int
    p_value: float
    alpha: float
    min_audit: int
    forced: bool = False
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def judge(champion: str, challenger: str, champion_right: np.ndarray, challenger_right: np.ndarray, *,
          min_audit: int = MIN_AUDIT, alpha: float = GATE_ALPHA) -> Evidence:
    """The gate's verdict on two models' correctness over the same audit items, shape (n_items,) each.

    ``promote``: at least ``min_audit`` items and the challenger better with exact McNemar ``p < alpha``.
    ``refuse``: enough items and the challenger worse than the champion (fewer items right).
    ``hold``: too few items, a tie, or better but not beyond the noise yet; judge again when the audit split
    grows. (A tie used to be refused: on movie reviews the ladder then dropped, on a 20-20 tie over 30 audit
    items, a fine-tune that is 4 points better on 600 test items.)
    """
    a = np.asarray(champion_right, dtype=bool)
    b = np.asarray(challenger_right, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"champion and challenger were judged on different items: {a.shape} vs {b.shape}")
    champ, chall = Score.of(champion, a), Score.of(challenger, b)
    champion_only, challenger_only = int((a & ~b).sum()), int((b & ~a).sum())
    p = mcnemar_exact(champion_only, challenger_only)
    if len(a) < min_audit:
        verdict: Verdict = "hold"
        reason = (f"only {len(a)} audit items are annotated; the gate needs {min_audit} (annotate more tasks: "
                  "a share of the queue is audit tasks)")
    elif chall.correct < champ.correct:
        verdict, reason = "refuse", f"the challenger is worse: {chall} against {champ}"
    elif chall.correct == champ.correct:
        verdict = "hold"
        reason = (f"a tie on these items ({chall} against {champ}) says nothing yet: judged again as the audit "
                  "split grows")
    elif p >= alpha:
        verdict = "hold"
        reason = (f"the challenger is ahead ({challenger_only} items only it gets right, {champion_only} only the "
                  f"champion) but not beyond the noise: exact McNemar p={p:.3f} >= {alpha}")
    else:
        verdict = "promote"
        reason = f"better beyond the noise: {chall} against {champ}, exact McNemar p={p:.4f} < {alpha}"
    return Evidence(verdict, reason, champ, chall, champion_only, challenger_only, p, alpha, min_audit)


def describe_scores(scored: dict) -> str:
    """One line for what a word tagger or a relation model scored on the audit split (see the Trainer)."""
    if "token_accuracy" in scored:
        low, high = scored["interval"]
        return (f"token accuracy {scored['token_accuracy']:.3f} (95% interval {low:.3f}-{high:.3f}) on "
                f"{scored['words']} words of {scored['sentences']} sentences")
    return (f"link F1 {scored['f1']:.3f} (P {scored['precision']:.3f}, R {scored['recall']:.3f}) on "
            f"{scored['gold_links']} gold links of {scored['tasks']} tasks; MUC F1 {scored['muc']['f1']:.3f}, "
            f"B3 F1 {scored['b_cubed']['f1']:.3f}")
