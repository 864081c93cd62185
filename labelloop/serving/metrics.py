"""What ``/metrics`` counts, in Prometheus' text format. Counters are per process: with several
backend workers on one home, each answers for itself (``labelloop_process_info`` names its pid); the
queue gauges read the shared store and are the same from every worker."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields


@dataclass
class Metrics:
    """Counters of this process; ``add`` is safe from any thread."""

    predict_requests: int = field(default=0, metadata={"help": "POST /predict requests answered"})
    predicted_tasks: int = field(default=0, metadata={"help": "tasks predicted (one per task of each request)"})
    failed_tasks: int = field(default=0, metadata={"help": "tasks that got no prediction (bad text), with the reason"})
    predict_seconds: float = field(default=0.0, metadata={"help": "seconds spent predicting"})
    webhook_events: int = field(default=0, metadata={"help": "webhook events stored and acknowledged"})
    refused_events: int = field(default=0, metadata={"help": "webhook events refused as malformed (4xx)"})
    trainings: int = field(default=0, metadata={"help": "trainings that produced a new model_version"})
    training_failures: int = field(default=0, metadata={"help": "trainings that failed (the reason is logged)"})
    training_seconds: float = field(default=0.0, metadata={"help": "seconds spent training"})
    publishes: int = field(default=0, metadata={"help": "model versions published to Label Studio"})
    publish_failures: int = field(default=0, metadata={"help": "publishes that failed and will be retried"})
    refilled_tasks: int = field(default=0, metadata={"help": "pool tasks the backend imported into Label Studio"})
    pruned_versions: int = field(default=0, metadata={"help": "old model folders and prediction versions removed"})
    llm_dropped_mentions: int = field(default=0, metadata={"help": "LLM entity mentions not found in the text"})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def render(self, gauges: Mapping[str, tuple[float, str]], llm_usage: dict[str, int]) -> str:
        """The exposition text: counters, then ``gauges`` (``name: (value, help)``), then LLM usage."""
        rows: list[tuple[str, str, str, float, str]] = [("labelloop_process_info", "gauge", "the process these counters belong to", 1,
                 f'{{pid="{os.getpid()}"}}')]
        rows += [(f"labelloop_{f.name}_total", "counter", f.metadata["help"], getattr(self, f.name), "")
                 for f in fields(self) if not f.name.startswith("_")]
        rows += [(f"labelloop_{name}", "gauge", text, value, "") for name, (value, text) in gauges.items()]
        rows += [(f"labelloop_llm_{key}_total", "counter", f"LLM {key.replace('_', ' ')} in this process", value, "")
                 for key, value in llm_usage.items()]
        return "".join(f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name}{labels} {round(value, 6)}\n"
                       for name, kind, text, value, labels in rows)
