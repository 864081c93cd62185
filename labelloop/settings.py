"""Settings read from the environment once, when a server or command starts.

Every field can be set as an environment variable (``LABELLOOP_<FIELD>``, or the Label Studio
names ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``). Nothing here is read at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from labelloop.al.uncertainty import STRATEGIES

PREDICTORS = ("model", "llm", "cold-start", "ensemble")


def default_home() -> Path:
    """The folder LabelLoop keeps its state in when ``LABELLOOP_HOME`` is not set."""
    return Path(platformdirs.user_data_dir("labelloop", appauthor=False))


class LabelLoopSettings(BaseSettings):
    """Configuration of the backend and the command line, from the environment."""

    model_config = SettingsConfigDict(env_prefix="LABELLOOP_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="State folder: models, annotations, queue.")
    model: str = Field(
        default="",
        description="Encoder: a Hugging Face model id or a local path. Empty: the packaged all-MiniLM-L6-v2.",
    )
    label_studio_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LABEL_STUDIO_URL", "LABELLOOP_LABEL_STUDIO_URL"),
        description="Label Studio address used after training. Default: the hostname /setup sends.",
    )
    label_studio_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("LABEL_STUDIO_API_KEY", "LABELLOOP_LABEL_STUDIO_API_KEY"),
        description="Legacy token or personal access token. Default: the token /setup sends.",
    )
    label_studio_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Without LABEL_STUDIO_URL: the Label Studio addresses a /setup may bind a "
        "project to, comma-separated (empty: the first one that sets a project up keeps it).")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Addresses of reverse proxies whose X-Forwarded-For the servers believe, "
        "comma-separated (empty: none; the client address is the TCP peer's, so nobody picks their throttle key).")
    basic_auth_user: str | None = Field(default=None, description="Require HTTP basic auth with this user.")
    basic_auth_pass: SecretStr | None = Field(default=None, description="Password for basic auth.")
    strategy: str = Field(default="margin", description="Uncertainty strategy the prediction score comes from.")
    retrain_every: int = Field(
        default=1, ge=0, description="Retrain after this many new annotations (0: only on START_TRAINING)."
    )
    retrain_interval: float = Field(
        default=0.0, ge=0, description="Also retrain every this many seconds when there are new annotations (0: off)."
    )
    queue_batch: int = Field(
        default=25, ge=0, description="Tasks placed first in the queue: for coverage before any label, for diversity "
        "after (0: order by confidence alone)."
    )
    diversity: str = Field(
        default="cluster", description="'cluster': the next batch is the least confident task of each of queue_batch "
        "clusters; 'none': the least confident tasks."
    )
    push_predictions: bool = Field(
        default=True, description="After a retrain, push fresh predictions and set the project's model_version."
    )
    max_text_chars: int = Field(default=200_000, gt=0, description="Longer task texts get no prediction.")
    max_length: int = Field(default=256, ge=16, le=512, description="Encoder window in tokens.")
    batch_size: int = Field(default=32, ge=1, description="Windows per encoder forward pass.")
    predictor: str = Field(
        default="model", description="What predicts: 'model' (zero-shot encoder, then the trained heads), 'llm' "
        "(the LLM for every control), 'cold-start' (the LLM until cold_start_labels tasks are annotated, then the "
        "model) or 'ensemble' (the mean of model and LLM probabilities). TextArea drafts need the LLM."
    )
    cold_start_labels: int = Field(default=20, ge=0, description="Annotated tasks after which 'cold-start' hands "
                                   "over from the LLM to the trained model.")
    llm_model: str = Field(
        default="", description="LLM: a local path or Hugging Face id of a causal LM, or the model name an "
        "endpoint serves. Empty: the packaged SmolLM2-135M-Instruct (local) or the endpoint's default."
    )
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1. Unset: the LLM runs on "
        "this machine and no task text leaves it."
    )
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LABELLOOP_LLM_API_KEY", "OPENAI_API_KEY"),
        description="API key for the endpoint (sent only to llm_base_url)."
    )
    llm_concurrency: int = Field(default=4, ge=1, description="Requests in flight to the endpoint at once.")
    llm_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one endpoint answer.")
    llm_retries: int = Field(default=3, ge=0, description="Retries after a timeout, HTTP 429 or 5xx.")
    instance: str = Field(
        default="", max_length=200, description="Name of the Label Studio server this backend serves, when one "
        "LABELLOOP_HOME serves several: state is kept apart per instance (give every command the same name).")
    label_studio_timeout: float = Field(
        default=30.0, gt=0, description="Seconds the backend waits for one Label Studio answer in the background "
        "(pulling annotations, publishing): a hung Label Studio can hold a training no longer than this.")
    training_threads: int = Field(
        default=2, ge=1, le=32, description="Trainings run at once (each on its own project), so a slow project "
        "or a hung Label Studio never holds the others.")
    keep_versions: int = Field(
        default=3, ge=0, description="Model versions kept: older model folders (except the one serving and its "
        "rollback target) and their predictions in Label Studio are removed (0: keep everything).")
    audit_share: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Share of tasks that form the audit frame: random tasks placed in "
        "the queue like any other, not trained on while the frame is judged on, the project's test set and the "
        "promotion gate's; once its challenger is settled its labels train and a fresh frame is drawn (0: none).")
    working_set: int = Field(default=200, ge=1, le=100_000, description="Unlabelled tasks from the project's pool "
                             "that `labelloop pool refill` keeps in Label Studio (see labelloop.pool).")
    refill_at: float = Field(default=0.5, ge=0.0, le=1.0, description="The backend refills a project's working set "
                             "from its pool before a publish once fewer than this share of `working_set` pool tasks "
                             "are open (at most 500 tasks every 30 s; 0: only `labelloop pool refill` does).")
    pool_rescore: str = Field(default="local", description="Once a new version serves a project that has a pool, "
                              "the backend re-scores the pool in the background on this engine: 'local' (a process "
                              "of its own), 'ray' (Ray Data, at RAY_ADDRESS or on this machine), or 'off'.")
    min_audit: int = Field(default=30, ge=1, description="Annotated audit tasks below which no accuracy, curve or "
                           "promotion verdict is given.")
    gate_alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="The gate's error rate: a challenger is "
                              "promoted (and a promotion rolled back) when the evidence of the betting test on the "
                              "audit tasks where the two models disagree reaches 1/alpha.")
    gate_budget: int = Field(default=40, ge=1, description="Disagreement labels a challenger may spend at the gate; "
                             "not better beyond the noise by then, it is refused.")
    gate_min_gain: float = Field(default=0.01, ge=0.0, lt=1.0, description="Smallest accuracy gain worth a "
                                 "promotion: a challenger that can't reach it stops early (futility).")
    finetune: str = Field(default="auto", description="'auto': fine-tune the encoder in the background once "
                          "finetune_at labels are in, then each time labels double, and promote it through the "
                          "gate; 'off': the head on the frozen encoder is the top of the ladder.")
    finetune_at: int = Field(default=100, ge=1, description="Training labels at which the first fine-tune starts.")
    setfit_below: int = Field(default=400, ge=0, description="Training labels below which the ladder tunes the "
                              "encoder with SetFit rather than a full fine-tune (0: always the full fine-tune).")
    self_training: bool = Field(default=True, description="Fit single-choice heads once more with the unlabeled "
                                "tasks they label with p >= 0.9 added (self-training; measured better, see README).")
    self_training_from: int = Field(default=25, ge=2, description="Training annotations from which self-training "
                                    "starts (it was measured from 25).")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="Largest request body accepted "
                                "(larger ones get HTTP 413).")
    max_inflight_body_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="Request body bytes one backend process holds at once, "
        "across all requests (past it, new bodies get HTTP 503 until others finish).")
    max_connections: int = Field(default=200, ge=1, description="Connections and requests a server process serves "
                                 "at once (more get HTTP 503).")
    max_tasks_per_request: int = Field(
        default=10_000, ge=1, description="Most tasks one /predict may carry; for more, use `labelloop preannotate`.")
    max_projects: int = Field(default=1_000, ge=1, description="Projects one backend serves (each keeps its "
                              "labeling config in the state database; /setup for one more is refused).")
    max_labels: int = Field(default=2_000, ge=2, description="Most labels a labeling config may have, in one "
                            "control or in all of them together.")
    dashboard_no_auth: bool = Field(default=False, description="Dashboard and playground without a login (only "
                                    "for a machine nobody else reaches).")
    dashboard_secrets: Path | None = Field(default=None, description='JSON file {"users": {name: scrypt hash}} of '
                                           "dashboard logins.")
    dashboard_user: str | None = Field(default=None, description="One dashboard login's user name.")
    dashboard_password_hash: SecretStr | None = Field(default=None, description="Its password hash from "
                                                      "`labelloop hash-password`.")
    dashboard_password: SecretStr | None = Field(default=None, description="Or its password in plain text.")
    label_studio_bin: str | None = Field(default=None, description="The label-studio executable the demo and the "
                                         "tests start (default: .venv-ls/bin/label-studio, then PATH).")

    @field_validator("label_studio_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"unknown strategy {value!r}; choose one of {sorted(STRATEGIES)}")
        return value

    @field_validator("predictor")
    @classmethod
    def _known_predictor(cls, value: str) -> str:
        if value not in PREDICTORS:
            raise ValueError(f"unknown predictor {value!r}; choose one of {', '.join(PREDICTORS)}")
        return value

    @field_validator("finetune")
    @classmethod
    def _known_finetune(cls, value: str) -> str:
        if value not in ("auto", "off"):
            raise ValueError(f"unknown finetune {value!r}; choose 'auto' or 'off'")
        return value

    @field_validator("pool_rescore")
    @classmethod
    def _known_rescore(cls, value: str) -> str:
        if value not in ("local", "ray", "off"):
            raise ValueError(f"unknown pool_rescore {value!r}; choose 'local', 'ray' or 'off'")
        return value

    @field_validator("diversity")
    @classmethod
    def _known_diversity(cls, value: str) -> str:
        if value not in ("none", "cluster"):
            raise ValueError(f"unknown diversity {value!r}; choose 'none' or 'cluster'")
        return value


    def api_key(self) -> str | None:
        return self.label_studio_api_key.get_secret_value() if self.label_studio_api_key else None

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` when both are set, else ``None``."""
        if self.basic_auth_user and self.basic_auth_pass:
            return self.basic_auth_user, self.basic_auth_pass.get_secret_value()
        return None


def forwarded(settings: LabelLoopSettings) -> dict:
    """uvicorn's options for forwarded headers: believed only from ``LABELLOOP_TRUSTED_PROXIES`` (by default
    uvicorn believes 127.0.0.1, so a local client could pick any address, and so its throttle key)."""
    proxies = settings.trusted_proxies
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(proxies)} if proxies else {"proxy_headers": False}
