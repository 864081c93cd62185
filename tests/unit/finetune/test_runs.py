"""Fine-tuning runs end to end on tiny random models built here (CPU, seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from labelloop.errors import ConfigError  # noqa: E402
from labelloop.finetune.config import RunConfig  # noqa: E402
from labelloop.finetune.data import encode_ner_row, encode_sft_row  # noqa: E402
from labelloop.finetune.launch import main as launch  # noqa: E402
from labelloop.finetune.registry import RunRegistry  # noqa: E402
from labelloop.models import TunedHead  # noqa: E402

pytestmark = pytest.mark.model  # real fine-tune processes

POS = ["great fun", "a lovely film", "truly wonderful", "superb acting", "really enjoyable", "brilliant and warm"]
NEG = ["boring mess", "awful script", "truly dreadful", "wooden acting", "really tedious", "dull and cold"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny BERT and Llama models with the packaged MiniLM tokenizer (fast, with offsets)."""
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from labelloop.encoder import resolve_model_path

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(""))
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    bert.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                                         eos_token_id=tokenizer.sep_token_id))
    llama.save_pretrained(root / "llama")
    tokenizer.eos_token = tokenizer.sep_token
    tokenizer.save_pretrained(root / "llama")
    return root


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def data(tmp_path):
    cls = [{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]
    ner_rows = [{"text": f"{p} met {q} in Oslo", "spans": [{"start": 0, "end": len(p), "label": "PER"},
                                                          {"start": len(p) + 5, "end": len(p) + 5 + len(q), "label": "PER"},
                                                          {"start": len(p) + len(q) + 9, "end": len(p) + len(q) + 13,
                                                           "label": "LOC"}]}
                for p, q in [("Anna", "Tom"), ("Maria", "Luis"), ("Sara", "John")]]
    sft = [{"prompt": "Say yes", "response": "yes"}, {"prompt": "Say no", "response": "no"}]
    return {
        "cls": (write(tmp_path / "cls.jsonl", cls), write(tmp_path / "cls_test.jsonl", cls[::3])),
        "ner": (write(tmp_path / "ner.jsonl", ner_rows), write(tmp_path / "ner_test.jsonl", ner_rows[:1])),
        "sft": (write(tmp_path / "sft.jsonl", sft), write(tmp_path / "sft_test.jsonl", sft)),
    }


def run(registry, **kwargs):
    record = registry.create(RunConfig(epochs=2, batch_size=4, save_steps=1000, **kwargs))
    launch([str(record.folder)])
    return registry.get(record.run_id)


def test_config_round_trips_and_validates(tmp_path):
    config = RunConfig(task="ner", lora_r=4, target_modules=["query", "value"], learning_rate=1e-3)
    for name in ("c.json", "c.yaml"):
        config.save(tmp_path / name)
        assert RunConfig.load(tmp_path / name) == config
    with pytest.raises(ConfigError, match="task must be"):
        RunConfig(task="vision")
    with pytest.raises(ConfigError, match="unknown run settings"):
        RunConfig.from_dict({"taks": "ner"})
    with pytest.raises(ConfigError, match="qlora"):
        RunConfig(method="full", qlora=True)


def test_ner_labels_sit_on_first_subwords_and_sft_masks_the_prompt(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny / "bert")
    tags = ["O", "B-PER", "I-PER"]
    row = encode_ner_row(tok, "Zyxwvut Smith ran", [{"start": 0, "end": 13, "label": "PER"}], tags, 32)
    kept = [(tok.convert_ids_to_tokens(i), t) for i, t in zip(row["input_ids"], row["labels"]) if t != -100]
    assert kept == [("zy", 1), ("smith", 2), ("ran", 0)] or [t for _, t in kept] == [1, 2, 0]
    sft = encode_sft_row(AutoTokenizer.from_pretrained(tiny / "llama"), "Say yes", "yes", 64)
    n_masked = sum(t == -100 for t in sft["labels"])
    assert 0 < n_masked < len(sft["labels"]) and sft["labels"][n_masked:] == sft["input_ids"][n_masked:]


def test_classification_lora_run_is_registered_evaluated_and_servable(tiny, data, tmp_path):
    registry = RunRegistry(tmp_path)
    record = run(registry, task="classification", base_model=str(tiny / "bert"), train_file=data["cls"][0],
                 test_file=data["cls"][1], learning_rate=5e-3)
    assert record.status == "succeeded", record.error
    assert record.summary["method"] == "lora"
    assert (record.folder / "adapter").is_dir() and (record.model_dir / "labelloop.json").exists()
    assert not (record.folder / "model.partial").exists()
    metrics = [json.loads(line) for line in (record.folder / "metrics.jsonl").read_text().splitlines()]
    assert metrics and "loss" in metrics[0]
    report = json.loads((record.folder / "eval.json").read_text())
    assert set(report["rows"]) == {"base", "run"} and report["rows"]["base"]["kind"].startswith("zero-shot")
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(report["rows"]["run"])
    assert json.loads((record.folder / "dataset.json").read_text())[data["cls"][0]]["lines"] == 12


def test_setfit_run_serves_as_a_classifier_whose_head_keeps_learning_on_its_encoder(tiny, data, tmp_path):
    pytest.importorskip("setfit")
    import numpy as np

    from labelloop.models import ChoicesModel, TransformerModel

    registry = RunRegistry(tmp_path)
    record = run(registry, task="classification", method="setfit", base_model=str(tiny / "bert"),
                 train_file=data["cls"][0], test_file=data["cls"][1])
    assert record.status == "succeeded", record.error
    assert record.summary["method"] == "setfit" and (record.model_dir / "head.npz").exists()
    assert not list(record.model_dir.rglob("*.pkl"))  # the head is plain arrays, never a pickle
    report = json.loads((record.folder / "eval.json").read_text())
    assert {"accuracy", "macro_f1"} <= set(report["rows"]["run"]) and report["rows"]["run"]["n"] == 4
    model = TransformerModel(record.model_dir, ["pos", "neg"])  # the control's order, not the run's
    texts = POS[:2] + NEG[:2]
    probs = model.predict_proba(texts)
    weight, bias = model.classifier()
    z = model.features(texts) @ weight + bias
    assert np.allclose(probs, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), atol=1e-5)
    head = ChoicesModel.from_classifier(model)  # what a promoted run serves, retrained after each annotation
    assert np.allclose(head.predict_proba(model.features(texts)), probs, atol=1e-5)
    with pytest.raises(Exception, match="BALD"):
        model.mc_proba(texts)
    with pytest.raises(ConfigError, match="setfit trains single-label classifiers"):
        RunConfig(task="ner", method="setfit")


def test_a_run_is_evaluated_against_the_run_serving_now_as_the_backend_says(tiny, data, tmp_path):
    from labelloop.finetune.evaluate import evaluate_run

    registry = RunRegistry(tmp_path)
    first = run(registry, task="classification", base_model=str(tiny / "bert"), train_file=data["cls"][0],
                test_file=data["cls"][1], learning_rate=5e-3)
    second = run(registry, task="classification", base_model=str(tiny / "bert"), train_file=data["cls"][0],
                 test_file=data["cls"][1], learning_rate=5e-3)
    registry.record_promotion(3, first.run_id, "labelloop-v4")
    assert registry.promoted_run({(3, "labelloop-v4")}, task="classification") == first.run_id
    assert registry.promoted_run({(3, "labelloop-v5")}) is None  # rolled back or replaced since: not serving
    assert registry.promoted_run(set()) is None
    report = evaluate_run(registry, second.run_id, against=first.run_id)
    assert report["rows"]["promoted"]["run"] == first.run_id and report["rows"]["run"]["run"] == second.run_id


def test_ner_defaults_to_full_fine_tuning_on_small_encoders(tiny, data, tmp_path):
    record = run(RunRegistry(tmp_path), task="ner", base_model=str(tiny / "bert"), train_file=data["ner"][0],
                 test_file=data["ner"][1])
    assert record.status == "succeeded", record.error
    assert record.summary["method"] == "full"
    rows = json.loads((record.folder / "eval.json").read_text())["rows"]
    assert rows["base"]["kind"] == "untrained head" and "entity_f1" in rows["run"]


def test_sft_lora_run_reports_loss_perplexity_and_exact_match(tiny, data, tmp_path):
    record = run(RunRegistry(tmp_path), task="sft", base_model=str(tiny / "llama"), train_file=data["sft"][0],
                 test_file=data["sft"][1])
    assert record.status == "succeeded", record.error
    row = json.loads((record.folder / "eval.json").read_text())["rows"]["run"]
    assert row["perplexity"] > 1 and 0 <= row["exact_match"] <= 1


def test_cancelled_run_resumes_from_its_checkpoint(tiny, data, tmp_path):
    registry = RunRegistry(tmp_path)
    record = registry.create(RunConfig(task="classification", base_model=str(tiny / "bert"), train_file=data["cls"][0],
                                       epochs=3, batch_size=4, save_steps=1))
    (record.folder / "CANCEL").touch()
    launch([str(record.folder)])
    assert registry.get(record.run_id).status == "cancelled"
    assert not (record.folder / "model").exists()  # nothing half-written is ever promotable
    (record.folder / "CANCEL").unlink()
    launch([str(record.folder)])
    done = registry.get(record.run_id)
    assert done.status == "succeeded" and done.summary["resumed_from"].startswith("checkpoint-")


def test_a_cancelled_setfit_run_stops_and_leaves_no_model(tiny, data, tmp_path):
    pytest.importorskip("setfit")
    registry = RunRegistry(tmp_path)
    record = registry.create(RunConfig(task="classification", method="setfit", base_model=str(tiny / "bert"),
                                       train_file=data["cls"][0], epochs=50, batch_size=4))
    (record.folder / "CANCEL").touch()
    launch([str(record.folder)])
    cancelled = registry.get(record.run_id)
    assert cancelled.status == "cancelled" and cancelled.summary["cancelled"]
    assert not (record.folder / "model").exists() and not (record.folder / "model.partial").exists()


def test_failed_run_is_marked_with_its_error(tmp_path):
    registry = RunRegistry(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no label here"}\n')
    record = registry.create(RunConfig(task="classification", train_file=str(bad)))
    with pytest.raises(ConfigError):
        launch([str(record.folder)])
    failed = registry.get(record.run_id)
    assert failed.status == "failed" and "lacks ['label']" in failed.error
    assert (record.folder / "error.txt").exists()


def test_two_process_cpu_run_through_accelerate(tiny, data, tmp_path):
    env = {**os.environ, "LABELLOOP_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "labelloop.cli", "train", "--processes", "2", "--name", "ddp", "--task",
         "classification", "--base-model", str(tiny / "bert"), "--train-file", data["cls"][0], "--epochs", "1",
         "--batch-size", "2", "--method", "full"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = RunRegistry(tmp_path).get("ddp")
    assert record.status == "succeeded" and record.summary["processes"] == 2


def test_promote_swaps_the_served_model_and_rollback_restores_it(tiny, data, tmp_path):
    from fastapi.testclient import TestClient

    from labelloop.backend.app import create_app
    from labelloop.serving.service import ModelService
    from labelloop.settings import LabelLoopSettings

    registry = RunRegistry(tmp_path)
    record = run(registry, task="classification", base_model=str(tiny / "bert"), train_file=data["cls"][0])
    config = ('<View><Text name="text" value="$text"/><Choices name="s" toName="text">'
              '<Choice value="pos"/><Choice value="neg"/></Choices></View>')
    settings = LabelLoopSettings(home=tmp_path, push_predictions=False)
    with TestClient(create_app(settings, train_in_background=False)) as client:
        client.post("/setup", json={"project": "3.1", "schema": config})
        before = client.post("/predict", json={"tasks": [{"data": {"text": "great fun"}}], "project": "3.1"}).json()
        assert before["model_version"] == "labelloop-v0"

        other_process = ModelService(settings)  # what `labelloop promote` does, in its own process
        version = other_process.ladder.promote(3, record, evidence=None, forced=True, by="lead")
        after = client.post("/predict", json={"tasks": [{"data": {"text": "great fun"}}], "project": "3.1"}).json()
        assert after["model_version"] == version == "labelloop-v1"
        assert after["results"][0]["result"][0]["value"]["choices"][0] in ("pos", "neg")

        with pytest.raises(ConfigError, match="no earlier"):
            ModelService(settings).rollback(4)
        wrong = ('<View><Text name="text" value="$text"/><Choices name="s" toName="text">'
                 '<Choice value="yes"/><Choice value="no"/></Choices></View>')
        other_process.store.save_label_config(5, wrong)
        with pytest.raises(ConfigError, match="No control"):
            other_process.ladder.promote(5, record, evidence=None, forced=True, by="lead")
        # A background retrain keeps the promoted encoder and retrains the head on its features.
        client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 3},
                                      "task": {"id": 1, "data": {"text": "great fun"}},
                                      "annotation": {"id": 1, "result": [{"from_name": "s", "to_name": "text",
                                                     "type": "choices", "value": {"choices": ["pos"]}}]}})
        service = client.app.state.service
        assert service.fit(3) == "labelloop-v2"
        retrained = service.registry.current(3).model(service.schema(3).controls[0])
        assert isinstance(retrained, TunedHead) and retrained.path == str(record.model_dir)
        assert retrained.trained_on == 1
        assert ModelService(settings).rollback(3) == "labelloop-v1"
        rolled = client.post("/predict", json={"tasks": [{"data": {"text": "great fun"}}], "project": "3.1"}).json()
        assert rolled["model_version"] == "labelloop-v1"


def test_a_killed_run_is_marked_failed_and_qlora_needs_a_gpu(tiny, data, tmp_path):
    registry = RunRegistry(tmp_path)
    record = registry.create(RunConfig(task="classification", train_file=data["cls"][0]))
    registry.set_status(record.run_id, "running")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (record.folder / "pid").write_text(str(dead.pid))
    assert registry.get(record.run_id).status == "failed" and "died" in registry.get(record.run_id).error
    if not torch.cuda.is_available():
        from labelloop.finetune.train import load_model

        with pytest.raises(ConfigError, match="QLoRA needs a CUDA GPU"):
            load_model("classification", str(tiny / "bert"), ["a", "b"], qlora=True)


def _settled(registry, run_id, timeout=180):
    deadline = time.monotonic() + timeout
    while registry.get(run_id).status in ("queued", "running"):
        assert time.monotonic() < deadline, registry.log_tail(run_id)
        time.sleep(0.5)
    return registry.get(run_id)


def test_a_detached_run_streams_metrics_and_a_cancel_keeps_a_checkpoint(tiny, data, tmp_path, monkeypatch):
    from labelloop.finetune.launch import cancel_run, start_run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registry = RunRegistry(tmp_path)
    config = RunConfig(task="classification", base_model=str(tiny / "bert"), train_file=data["cls"][0],
                       test_file=data["cls"][1], epochs=2, batch_size=2, method="full")
    started = start_run(registry, config, name="bg")
    assert registry.get(started.run_id).status in ("queued", "running")  # returned before training
    done = _settled(registry, "bg")
    assert done.status == "succeeded", done.error
    assert any("loss" in m for m in registry.metrics("bg")) and registry.report("bg")["rows"]["run"]["n"] > 0
    with pytest.raises(ConfigError, match="succeeded"):
        cancel_run(registry, "bg")

    long = start_run(registry, RunConfig(**{**config.__dict__, "epochs": 500.0, "save_steps": 100000}), name="long")
    deadline = time.monotonic() + 120
    while not registry.metrics(long.run_id):  # wait until it really trains
        assert time.monotonic() < deadline and registry.get("long").status in ("queued", "running")
        time.sleep(0.2)
    cancel_run(registry, "long")
    cancelled = _settled(registry, "long")
    assert cancelled.status == "cancelled"
    assert list((cancelled.folder / "checkpoints").glob("checkpoint-*")) and not cancelled.model_dir.exists()
    assert registry.log_tail("long").strip()  # the training log, kept for the dashboard


def test_a_queued_run_whose_process_died_is_failed(tmp_path, data):
    registry = RunRegistry(tmp_path)
    record = registry.create(RunConfig(task="classification", train_file=data["cls"][0]))
    assert registry.get(record.run_id).status == "queued"  # no process yet: still waiting
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (record.folder / "pid").write_text(str(dead.pid))
    assert registry.get(record.run_id).status == "failed"


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "a/b", "..", ".hidden", "", "x" * 101, "a\x00b"])
def test_run_names_are_names_never_paths(tmp_path, name):
    registry = RunRegistry(tmp_path / "home")
    with pytest.raises(ConfigError, match="not allowed"):
        registry.create(RunConfig(task="classification"), name=name)
    assert not (tmp_path / "escaped").exists() and registry.list() == []
    assert registry.create(RunConfig(task="classification"), name="ok-run_1.2").run_id == "ok-run_1.2"


@pytest.mark.parametrize("content, test_content, message", [
    (None, None, "train_file {train} does not exist: export the project's approved labels first"),
    ("", None, "train_file {train} has no records: annotate tasks in Label Studio and export again"),
    ("\n\n", None, "train_file {train} has no records"),
    ('{"text": "a", "label": "x"}\n', "", "test_file {test} has no records: annotate tasks in Label Studio and "
                                          "export again, or leave test_file empty"),
    ('{"text": "a"}\n', None, "{train}:1: a classification row needs ('text', 'label'), this one lacks ['label']"),
])
def test_a_run_on_no_records_is_refused_before_it_starts(tmp_path, monkeypatch, content, test_content, message):
    """The Train page (start_run) and `labelloop train` both refuse it, and no run folder is made."""
    from labelloop.cli import main
    from labelloop.finetune.launch import start_run

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    if content is not None:
        train.write_text(content)
    if test_content is not None:
        test.write_text(test_content)
    config = RunConfig(task="classification", train_file=str(train), test_file=str(test) if test_content is not None
                       else "")
    registry = RunRegistry(tmp_path / "home")
    with pytest.raises(ConfigError) as e:
        start_run(registry, config)
    assert message.format(train=train, test=test) in str(e.value)
    monkeypatch.setenv("LABELLOOP_HOME", str(tmp_path / "home"))
    argv = ["train", "--task", "classification", "--train-file", str(train)]
    with pytest.raises(SystemExit) as stop:
        main(argv + (["--test-file", str(test)] if test_content is not None else []))
    assert message.format(train=train, test=test) in str(stop.value)
    assert registry.list() == []


def test_dpo_lora_run_on_preference_pairs_reports_preference_accuracy(tiny, tmp_path):
    pytest.importorskip("trl")
    pairs = [{"prompt": f"Say {w}", "chosen": w, "rejected": "no idea"} for w in ("yes", "sure", "fine", "ok")]
    train = write(tmp_path / "prefs.jsonl", pairs)
    record = run(RunRegistry(tmp_path), task="dpo", base_model=str(tiny / "llama"), train_file=train, test_file=train)
    assert record.status == "succeeded", record.error
    report = json.loads((record.folder / "eval.json").read_text())
    for row in ("base", "run"):
        assert 0.0 <= report["rows"][row]["preference_accuracy"] <= 1.0 and report["rows"][row]["perplexity"] > 1
    assert report["rows"]["base"]["kind"] == "base model"
    assert json.loads((record.model_dir / "labelloop.json").read_text())["task"] == "dpo"
    assert (record.folder / "adapter").exists()  # LoRA by default: the adapter kept beside the merged model
