"""The promotion gate: is a challenger better than the champion, judged on the fewest audit labels?

Both models predict every task of the audit split (no labels needed). Where they agree, the accuracy difference
gains nothing whatever the truth, so the gate spends labels only on **D**, the audit tasks where they disagree,
served in a uniformly random order. With the outcome ``o = [challenger right] - [champion right]`` of a labelled
disagreement (``-1``, ``0`` or ``1``: "both wrong" is 0 in multi-class), the accuracy difference is

    Δ = P(D) · E[o | D]

where P(D), the share of audit tasks in D, is known from the predictions alone. On uniformly random audit items an
exact McNemar test has 4-19% power for a +5 to +8 point gain at 20-40 items; spent on D, the same labels decide.

**The test** is a betting e-process (Waudby-Smith & Ramdas 2023): bettors each stake a fixed fraction ``λ`` of
their wealth on every labelled disagreement, ``W ← W · (1 + λ o)``, and the evidence ``W`` is their mean wealth
(a grid of stakes from 0.25 to 0.75, so nobody has to guess the effect). While the challenger is not better
(E[o | D] ≤ 0) every bettor's wealth, and so their mean, is a nonnegative supermartingale, and Ville's inequality
bounds the chance that ``W`` ever reaches ``1 / alpha`` by ``alpha``. So the gate may look after every label and
stop whenever it likes without inflating false promotions. A product does not depend on the order of its
factors: the evidence is a function of the counts of wins, losses and draws.

**A frame that runs out undecided** hands its evidence on (``carry``): while the challenger has budget left, a
fresh audit frame is drawn, both frozen models predict it, and the same wealth goes on over its disagreements.
The bettors' wealth stays a supermartingale under "the challenger is no better on each frame" because every frame
is a uniform sample of the tasks not labelled yet and its disagreements are served in a random order; P(D) and
the estimates pool the frames. With frames of 150 tasks (a project of 1,500) this raised the chance of promoting
a challenger 5.5 to 9 points better from 35-87% to 77-98%, with no false promotion (``benchmarks/gate.py``).

**Futility**: the same bet against "the challenger gains at least ``min_gain``" (E[o | D] ≥ min_gain / P(D))
stops a challenger that can't be worth it; when the models disagree on fewer than ``min_gain`` of the audit
tasks, no label is spent at all. **Budget**: a challenger gets at most ``budget`` disagreement labels.

**Rollback** runs the same test the other way round, on disagreements labelled after a promotion: the previous
champion back in service when it is better beyond the noise.

Every accuracy reported beside the evidence is stratified: D and the audit tasks where the models agree are
each a uniform sample of their own stratum, weighted by their known shares, so the estimate stays unbiased while
D is over-sampled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

STAKES = np.linspace(0.25, 0.75, 11)  # the bettors' fractions λ; simulated power and error: benchmarks/gate.py
Z95 = 1.959964

GateVerdict = Literal["promote", "rollback", "futility", "refuse", "keep", "hold", "carry"]


def wealth(outcomes: np.ndarray, *, null: float = 0.0, side: Literal["greater", "less"] = "greater") -> float:
    """Evidence against ``E[o] <= null`` (``side="greater"``) or ``E[o] >= null`` (``"less"``), as the mean wealth
    of bettors who stake :data:`STAKES` on every outcome in ``outcomes`` (shape (n,), values in [-1, 1]).

    Starts at 1 and never depends on the order of ``outcomes``. Under the null its chance of ever reaching
    ``1 / alpha`` is at most ``alpha`` (Ville's inequality). ``null`` must lie in [0, 1).
    """
    o = np.asarray(outcomes, dtype=np.float64)
    if not 0.0 <= null < 1.0:
        raise ValueError(f"null must be in [0, 1), got {null}")
    if len(o) == 0:
        return 1.0
    step = (o - null) if side == "greater" else (null - o)  # >= -1 - null > -2; the stakes keep factors > 0
    logs = np.log1p(STAKES[:, None] * step[None, :]).sum(axis=1)
    top = logs.max()
    return float(math.exp(top) * np.exp(logs - top).mean()) if top < 700 else math.inf


@dataclass
class Estimate:
    """An accuracy (or a difference of accuracies) with its 95% interval and the labels it rests on."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:+.3f} [{self.low:+.3f}, {self.high:+.3f}] on {self.n} labels"


@dataclass
class GateEvidence:
    """What the gate saw and decided about one challenger (or, for a rollback, one promoted champion).

    ``labels`` disagreements are labelled of ``disagreements`` in an audit frame of ``frame`` tasks; ``wealth``
    is the evidence for the challenger (it decides at ``1 / alpha``), ``futility_wealth`` the evidence that it
    gains less than ``min_gain``; ``delta`` the estimated accuracy difference (challenger minus champion) and
    ``champion``/``challenger`` their stratified audit accuracies.
    """

    verdict: GateVerdict
    reason: str
    champion_version: str
    challenger_version: str
    labels: int
    budget: int
    frame: int
    disagreements: int
    p_disagree: float
    wealth: float
    futility_wealth: float
    alpha: float
    min_gain: float
    delta: Estimate
    champion: Estimate
    challenger: Estimate
    wins: int = 0
    losses: int = 0
    draws: int = 0
    direction: Literal["promote", "rollback"] = "promote"
    forced: bool = False
    details: dict = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return 1.0 / self.alpha

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("wealth", "futility_wealth"):  # JSON has no infinity
            out[key] = min(out[key], 1e300)
        return out

    def summary(self) -> str:
        """One line for a lead: where the gate stands."""
        return (f"{self.labels} disagreement labels of a budget of {self.budget}, evidence W = {self.wealth:.1f} "
                f"(decides at {self.threshold:.0f}); accuracy difference {self.delta}")


def stratified_accuracy(right_disagree: np.ndarray, right_agree: np.ndarray, p_disagree: float) -> Estimate:
    """Accuracy over the whole audit frame from a uniform sample of each stratum: the labelled disagreements'
    correctness (shape (n_d,)) and the labelled agreements' (shape (n_a,)), weighted by the known share of D."""
    parts = [(p_disagree, np.asarray(right_disagree, dtype=float)),
             (1.0 - p_disagree, np.asarray(right_agree, dtype=float))]
    n = sum(len(right) for _, right in parts)
    value = variance = 0.0
    for weight, right in parts:
        if weight <= 0:
            continue
        if len(right) == 0:  # a stratum nobody labelled yet: anything is possible there
            return Estimate(float("nan"), 0.0, 1.0, n)
        value += weight * float(right.mean())
        # Laplace's shrinkage keeps a 10-out-of-10 stratum from claiming zero variance.
        p = (right.sum() + 1.0) / (len(right) + 2.0)
        variance += weight * weight * p * (1.0 - p) / len(right)
    half = Z95 * math.sqrt(variance)
    return Estimate(value, max(0.0, value - half), min(1.0, value + half), n)


def difference(outcomes: np.ndarray, p_disagree: float) -> Estimate:
    """Δ̂ = P(D) · mean(o) with a normal 95% interval, clipped to what D allows ([-P(D), P(D)])."""
    o = np.asarray(outcomes, dtype=float)
    if len(o) == 0:
        return Estimate(0.0, -p_disagree, p_disagree, 0)
    mean = float(o.mean())
    sd = float(o.std(ddof=1)) if len(o) > 1 else 1.0
    sd = max(sd, 1.0 / len(o))  # all-alike outcomes are not certainty
    half = Z95 * sd / math.sqrt(len(o))
    return Estimate(p_disagree * mean, max(-p_disagree, p_disagree * (mean - half)),
                    min(p_disagree, p_disagree * (mean + half)), len(o))


def decide(champion_right: np.ndarray, challenger_right: np.ndarray, disagree: np.ndarray, *, p_disagree: float,
           frame: int, disagreements: int, remaining: int, champion_version: str, challenger_version: str,
           alpha: float = 0.05, min_gain: float = 0.01, budget: int = 40,
           direction: Literal["promote", "rollback"] = "promote", carry: bool = False) -> GateEvidence:
    """The gate's verdict from the labelled audit items of a frame, each shape (n_labelled,).

    ``disagree`` marks the labelled items in D (their order does not matter); ``p_disagree`` is the share of D in
    the frame of ``frame`` audit tasks (``disagreements`` of them), ``remaining`` how many of D are still
    unlabelled. ``direction="promote"``: ``promote`` at ``W >= 1 / alpha``; ``futility`` when the challenger can't
    gain ``min_gain``; ``refuse`` when ``budget`` labels are spent or D is exhausted, but ``carry`` when D is
    exhausted with budget left and ``carry`` is set (the evidence goes on over a fresh frame); else ``hold``.
    The labelled items may come from several frames: ``frame``, ``disagreements`` and ``p_disagree`` then pool them.
    ``direction="rollback"`` judges a promoted challenger against the champion it replaced, on labels that came
    after the promotion: ``rollback`` when it is worse beyond the noise, ``keep`` when it is not worse by
    ``min_gain``, ``hold`` while labels come in.
    """
    a = np.asarray(champion_right, dtype=bool)
    b = np.asarray(challenger_right, dtype=bool)
    d = np.asarray(disagree, dtype=bool)
    if not a.shape == b.shape == d.shape:
        raise ValueError(f"champion, challenger and disagreement marks differ in shape: {a.shape} {b.shape} {d.shape}")
    if not 0.0 <= p_disagree <= 1.0:
        raise ValueError(f"p_disagree must be a share in [0, 1], got {p_disagree}")
    outcomes = b[d].astype(int) - a[d].astype(int)
    for_rollback = direction == "rollback"
    bet = -outcomes if for_rollback else outcomes  # evidence that the side that must prove itself is ahead
    w = wealth(bet)
    target = min_gain / p_disagree if p_disagree > 0 else math.inf
    w_futile = wealth(bet, null=target, side="less") if target < 1.0 else math.inf
    delta = difference(outcomes, p_disagree)
    evidence = GateEvidence(
        "hold", "", champion_version, challenger_version, int(d.sum()), budget, frame, disagreements, p_disagree,
        w, w_futile, alpha, min_gain, delta,
        stratified_accuracy(a[d], a[~d], p_disagree), stratified_accuracy(b[d], b[~d], p_disagree),
        int((outcomes > 0).sum()), int((outcomes < 0).sum()), int((outcomes == 0).sum()), direction)
    ahead, behind = ((champion_version, challenger_version) if for_rollback
                     else (challenger_version, champion_version))
    where = f"{evidence.labels} disagreement labels, W = {w:.1f}, accuracy difference {delta}"
    if w >= 1.0 / alpha:
        evidence.verdict = "rollback" if for_rollback else "promote"
        evidence.reason = f"{ahead} is better than {behind} beyond the noise: {where} >= {1 / alpha:.0f}"
    elif target >= 1.0:
        evidence.verdict = "keep" if for_rollback else "futility"
        evidence.reason = (f"the two models disagree on {p_disagree:.1%} of {frame} audit tasks, less than the "
                           f"minimum worthwhile gain of {min_gain:.1%}: nothing to win by labelling")
    elif w_futile >= 1.0 / alpha:
        evidence.verdict = "keep" if for_rollback else "futility"
        evidence.reason = f"{ahead} can't gain {min_gain:.1%} over {behind}: {where}"
    elif carry and not for_rollback and remaining <= 0 and evidence.labels < budget:
        evidence.verdict = "carry"
        evidence.reason = (f"every disagreement of the audit frame is labelled and {ahead} is not better than {behind} "
                           f"beyond the noise yet: {where}; the evidence carries over to a fresh audit frame "
                           f"({budget - evidence.labels} labels of the budget left)")
    elif evidence.labels >= budget or remaining <= 0:
        evidence.verdict = "keep" if for_rollback else "refuse"
        spent = f"the budget of {budget} labels is spent" if evidence.labels >= budget else \
            "every disagreement of the audit frame is labelled"
        evidence.reason = f"{spent} and {ahead} is not better than {behind} beyond the noise: {where}"
    else:
        evidence.reason = f"judging: {where} (decides at {1 / alpha:.0f}; {remaining} disagreements left to label)"
    return evidence
