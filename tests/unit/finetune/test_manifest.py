import json

import pytest

from labelloop.errors import ConfigError
from labelloop.finetune.manifest import ModelManifest


def test_a_manifest_reads_back_what_was_written(tmp_path):
    ModelManifest("classification", ("neg", "pos"), "setfit").write(tmp_path)
    manifest = ModelManifest.read(tmp_path)
    assert manifest == ModelManifest("classification", ("neg", "pos"), "setfit") and manifest.setfit


def test_a_manifest_without_a_method_is_a_transformers_model(tmp_path):
    (tmp_path / "labelloop.json").write_text(json.dumps({"task": "ner", "labels": ["PER"]}))
    manifest = ModelManifest.read(tmp_path)
    assert manifest.method == "full" and not manifest.setfit and manifest.labels == ("PER",)


@pytest.mark.parametrize("content, says", [(None, "not a model saved by a LabelLoop run"),
                                           ("{not json", "damaged"), ('{"task": "ner"}', "damaged")])
def test_a_missing_or_damaged_manifest_says_what_to_do(tmp_path, content, says):
    if content is not None:
        (tmp_path / "labelloop.json").write_text(content)
    with pytest.raises(ConfigError, match=says):
        ModelManifest.read(tmp_path)
