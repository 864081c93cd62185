"""Scores of predicted links against annotated ones.

Link precision, recall and F1 (a link counts when its two spans and label match; for symmetric relations either
direction counts), and for coreference chains (the connected components of the links) MUC and B³, computed on
the gold mentions.
"""

from __future__ import annotations

from collections.abc import Sequence

from labelloop.relations import Links, chains


def link_f1(gold: Sequence[Links], predicted: Sequence[Sequence[tuple[int, int, str]]], *,
            symmetric: bool = True) -> dict:
    """Precision, recall and F1 of links on gold spans; ``symmetric``: a link and its reverse are one."""
    def keyed(links):
        return {(min(i, j), max(i, j), label) if symmetric else (i, j, label) for i, j, label in links}

    tp = fp = fn = 0
    for g, p in zip(gold, predicted, strict=True):
        g_set, p_set = keyed(g.links), keyed(p)
        tp, fp, fn = tp + len(g_set & p_set), fp + len(p_set - g_set), fn + len(g_set - p_set)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold_links": tp + fn, "predicted_links": tp + fp}


def _muc_side(keys: Sequence[list[set[int]]], responses: Sequence[list[set[int]]]) -> tuple[int, int]:
    num = den = 0
    for key, response in zip(keys, responses, strict=True):
        where = {m: k for k, chain in enumerate(response) for m in chain}
        for chain in key:
            num += len(chain) - len({where[m] for m in chain})
            den += len(chain) - 1
    return num, den


def coreference_scores(gold: Sequence[Links], predicted: Sequence[Sequence[tuple[int, int, str]]]) -> dict:
    """MUC and B³ precision, recall and F1 of the chains the links make, on the gold mentions."""
    g = [chains(len(x.spans), x.links) for x in gold]
    p = [chains(len(x.spans), links) for x, links in zip(gold, predicted, strict=True)]

    def f1(precision: float, recall: float) -> float:
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    r_num, r_den = _muc_side(g, p)
    p_num, p_den = _muc_side(p, g)
    muc_r, muc_p = (r_num / r_den if r_den else 0.0), (p_num / p_den if p_den else 0.0)
    b_p, b_r, mentions = 0.0, 0.0, 0
    for key, response in zip(g, p, strict=True):
        in_key = {m: c for c in key for m in c}
        in_response = {m: c for c in response for m in c}
        for m in in_key:
            overlap = len(in_key[m] & in_response[m])
            b_p += overlap / len(in_response[m])
            b_r += overlap / len(in_key[m])
            mentions += 1
    b_p, b_r = (b_p / mentions, b_r / mentions) if mentions else (0.0, 0.0)
    return {"muc": {"precision": muc_p, "recall": muc_r, "f1": f1(muc_p, muc_r)},
            "b_cubed": {"precision": b_p, "recall": b_r, "f1": f1(b_p, b_r)}, "mentions": mentions}
