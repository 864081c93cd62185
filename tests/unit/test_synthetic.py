"""Synthetic examples: what is kept, what is dropped and why, and the provenance each kept text carries."""

from types import SimpleNamespace

import numpy as np
import pytest

from labelloop.errors import ConfigError
from labelloop.synthetic import SynthesisConfig, clean, messages_for, synthesize

LABELS = ["Positive", "Negative"]
APPROVED = [("I love this kettle, it boils fast.", "Positive"), ("Great value and it looks lovely.", "Positive"),
            ("It broke after two days of use.", "Negative"), ("Terrible support, never again.", "Negative")]
TEST = ["The blender is powerful and quiet, I am very happy with it."]


class Scripted:
    """An engine that answers the scripted texts in turn (what an LLM might write), recording each prompt."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts = []

    def generate(self, messages, *, max_tokens, temperature, seed):
        self.prompts.append(messages[-1]["content"])
        return SimpleNamespace(text=self.answers.pop(0) if self.answers else "")


def judge(texts):
    """Positive when a text says it is good: a stand-in for the head, deterministic."""
    return np.array([[0.9, 0.1] if ("good" in t or "happy" in t) else [0.2, 0.8] for t in texts])


def test_kept_texts_agree_with_the_judge_avoid_test_items_and_carry_provenance():
    engine = Scripted([
        '"This toaster is really good and toasts evenly."',  # kept, quotes removed
        "The blender is powerful and quiet, I am very happy with it!",  # nearly a test item
        "Awful, it stopped working.",  # the judge says Negative: not kept as Positive
        "Text: A good lamp with a warm light.",  # kept, prefix removed
        "Broken on arrival and the seller ignored me.",  # Negative, kept
        "",  # nothing
        "Broken on arrival and the seller ignored me.",  # duplicate of a kept one
        "The fan rattles and the remote is flimsy.",  # Negative, kept
    ])
    config = SynthesisConfig(per_label=2, examples=1, attempts=3, min_agreement=0.6)
    kept, report = synthesize(engine, LABELS, APPROVED, judge=judge, test_texts=TEST, guideline="Rate the review.",
                              config=config)
    assert [(k["label"], k["text"]) for k in kept] == [
        ("Positive", "This toaster is really good and toasts evenly."),
        ("Positive", "A good lamp with a warm light."),
        ("Negative", "Broken on arrival and the seller ignored me."),
        ("Negative", "The fan rattles and the remote is flimsy.")]
    assert report.dropped == {"near a test item": 1, "judge disagrees with the label": 1,
                              "empty or an echo of the prompt": 1, "duplicate": 1}
    assert report.kept == {"Positive": 2, "Negative": 2} and report.generations == 8
    first = kept[0]["provenance"]
    assert first["source"] == "synthetic" and first["model"] == "scripted" and first["label"] == "Positive"
    assert first["judge_probability"] == 0.9 and len(first["examples"]) == 1
    assert first["examples"][0] in [t for t, y in APPROVED if y == "Positive"]
    assert "Rate the review." in engine.prompts[0] and "label Positive and not Negative" in engine.prompts[0]
    assert TEST[0] not in " ".join(engine.prompts)  # test items are never shown to the LLM


def test_attempts_bound_the_generations_and_every_label_needs_an_example():
    engine = Scripted(["Awful."] * 50)
    kept, report = synthesize(engine, LABELS, APPROVED, judge=judge,
                              config=SynthesisConfig(per_label=3, attempts=2))
    assert report.generations == 2 * 3 * 2 and not report.kept["Positive"]
    engine = Scripted(["A good one, really good."] * 5)
    kept, report = synthesize(engine, LABELS, APPROVED[:2], judge=judge, config=SynthesisConfig(per_label=1))
    assert [k["label"] for k in kept] == ["Positive"] and report.skipped == ["Negative"]
    assert report.summary().endswith("; skipped Negative (no approved example yet: annotate one)")
    with pytest.raises(ConfigError, match="no approved example of any label"):
        synthesize(engine, LABELS, [], judge=judge)


def test_clean_and_messages():
    assert clean("1. \"Nice and sturdy.\"\n\nLabel: Positive") == "Nice and sturdy."
    assert clean("  New text:   fine   work  ") == "fine work"
    messages = messages_for("Billing", ["Billing", "Bug"], ["I was charged twice."])
    assert messages[0]["role"] == "system" and "- I was charged twice." in messages[1]["content"]
