"""Augmentation with WordNet provisioned from PyPI, and variants pushed into a real Label Studio."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("nlpaug")

from labelloop.studio import lsclient
from labelloop.studio.projects import create_project  # noqa: E402
from labelloop.templates import label_config  # noqa: E402

TRAIN = [{"text": "The acting was wonderful and the story moved me deeply.", "label": "Positive", "task_id": 1},
         {"text": "A boring plot with terrible dialogue and a weak ending.", "label": "Negative", "task_id": 2}]
TEST = [{"text": "An excellent film with a clever script.", "label": "Positive", "task_id": 3}]
NER = {"text": "Maria Lopez visited the old harbour in Lisbon with her brother.",
       "spans": [{"start": 0, "end": 11, "label": "PER"}, {"start": 39, "end": 45, "label": "LOC"}]}


@pytest.fixture(scope="module")
def nltk_data(tmp_path_factory):
    from labelloop.augment.wordnet import ensure_wordnet

    return ensure_wordnet(tmp_path_factory.mktemp("nltk_data"))


def test_wordnet_is_provisioned_and_synonyms_keep_labels_and_spans(nltk_data):
    from nltk.corpus import wordnet

    from labelloop.augment.augmenters import SynonymAugmenter

    assert len(list(wordnet.all_synsets("n"))) == 82115  # WordNet 3.0, data.noun re-joined intact
    for action in ("substitute", "insert"):
        aug = SynonymAugmenter(action, 0.3, nltk_data=str(nltk_data))
        variants = aug.augment(TRAIN + [NER], n=2, seed=3)
        assert variants
        for v in variants:
            if "spans" in v:
                assert [v["text"][s["start"] : s["end"]] for s in v["spans"]] == ["Maria Lopez", "Lisbon"]
            else:
                assert v["label"] in ("Positive", "Negative")


def test_cli_augments_without_touching_test_items_and_pushes_to_label_studio(ls, label_studio, tmp_path, nltk_data):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN + TEST))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEST))
    project = create_project(ls, "augmented", label_config("sentiment"), uncertainty_sampling=False)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(nltk_data.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "labelloop.cli", "augment", "--input", str(tmp_path / "train.jsonl"), "--exclude",
         str(tmp_path / "test.jsonl"), "--methods", "swap,synonym,backtranslate", "--output",
         str(tmp_path / "aug.jsonl"), "--project", str(project.id), "--preview", "2",
         "--min-similarity", "0"],  # keep every variant of these few sentences; the filter has unit tests
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 records left out because their text is a test item's; 1 test items never augmented" in result.stdout
    assert "[synonym]" in result.stdout
    variants = [json.loads(line) for line in (tmp_path / "aug.jsonl").read_text().splitlines()]
    assert variants and all(v["provenance"]["source"] in ("task 1", "task 2") for v in variants)
    tasks = list(lsclient.iter_tasks(ls, project.id, fields="all"))
    assert len(tasks) == len(variants)
    for task in tasks:
        assert task.data["augmented"] is True
        pred = task.predictions[0] if isinstance(task.predictions[0], dict) else task.predictions[0].model_dump()
        assert pred["model_version"] == "augmentation"
        assert pred["result"][0]["value"]["choices"][0] in ("Positive", "Negative")
