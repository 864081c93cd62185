"""`labelloop eval human`: a blind side-by-side project in a real Label Studio, judged, then collected."""

import json
import os
import subprocess
import sys

import pytest

from labelloop.studio import lsclient

pytest.importorskip("peft")


@pytest.fixture
def tiny_llama(tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from labelloop.encoder import resolve_model_path

    root = tmp_path / "llama"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(""))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                 max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.sep_token_id)).save_pretrained(root)
    tokenizer.eos_token = tokenizer.sep_token
    tokenizer.save_pretrained(root)
    return root


def test_blind_side_by_side_project_then_win_rate_and_preference_pairs(ls, label_studio, tmp_path, tiny_llama):
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "labelloop.cli", *args], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    rows = [{"prompt": f"Say the number {i}", "response": str(i)} for i in range(6)]
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli("train", "--task", "sft", "--base-model", str(tiny_llama), "--train-file", str(tmp_path / "sft.jsonl"),
        "--test-file", str(tmp_path / "sft.jsonl"), "--epochs", "1", "--name", "tiny-sft")
    out = cli("eval", "human", "create", "--run", "tiny-sft", "--no-forgetting", "--max-tokens", "6", "--seed", "1")
    project_id = int(out.split("created evaluation project ")[1].split(":")[0])
    tasks = list(lsclient.iter_tasks(ls, project_id, fields="all"))
    assert len(tasks) == 6
    for task in tasks:  # the side mapping is never in the task data
        assert set(task.data) == {"prompt", "answer_a", "answer_b", "item"}
        assert "tiny-sft" not in json.dumps(task.data) and "base" not in json.dumps(task.data)
    state_file = tmp_path / "home" / "human_eval" / f"{project_id}.json"
    assert state_file.stat().st_mode & 0o777 == 0o600  # the blind mapping: its owner's eyes only
    state = json.loads(state_file.read_text())
    assert {v["a"] for v in state["items"].values()} == {"tiny-sft", "base"}  # sides drawn per task
    for task in tasks:  # a judge who always prefers the fine-tuned run, whichever side it is on
        side = "A is better" if state["items"][task.data["item"]]["a"] == "tiny-sft" else "B is better"
        ls.annotations.create(id=task.id, project=project_id, result=[
            {"from_name": "preference", "to_name": "prompt", "type": "choices", "value": {"choices": [side]}}])
    for _ in range(3):  # Label Studio takes more annotations of a task from the same judge: they don't vote again
        ls.annotations.create(id=tasks[0].id, project=project_id, result=[
            {"from_name": "preference", "to_name": "prompt", "type": "choices", "value": {"choices": [
                "A is better" if state["items"][tasks[0].data["item"]]["a"] == "tiny-sft" else "B is better"]}}])
    out = cli("eval", "human", "collect", "--project", str(project_id), "--preferences",
              str(tmp_path / "prefs.jsonl"))
    assert "win rate 1.000" in out and "over 6 decided judgments" in out
    human = json.loads((tmp_path / "home" / "runs" / "tiny-sft" / "eval.json").read_text())["rows"]["human"]
    assert human["wins"] == 6 and human["win_low"] > 0.5 and human["project_id"] == project_id
    pairs = [json.loads(line) for line in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    assert len(pairs) == 6 and all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    # The forgetting check: both models' perplexity on general text (here a file; by default WSJ sentences).
    (tmp_path / "general.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in [
        "The company said its profit rose sharply in the third quarter.", "Shares fell in early trading."]))
    out = cli("eval", "human", "create", "--run", "tiny-sft", "--general-text", str(tmp_path / "general.jsonl"),
              "--max-tokens", "4", "--n", "2")
    assert "perplexity on general text: tiny-sft" in out and "perplexity on general text: base" in out
