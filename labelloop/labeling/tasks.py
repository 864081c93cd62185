"""Label Studio's tasks, projects and webhook events as the core sees them, after the edge has checked them:
project ids, a task's text, and the :class:`Event` a webhook carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labelloop.errors import TaskDataError

# Webhook actions that add or change annotations, and those that delete them.
ANNOTATION_EVENTS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"})
DELETE_EVENTS = frozenset({"ANNOTATION_DELETED", "ANNOTATIONS_DELETED"})


@dataclass(frozen=True)
class Annotation:
    """One annotation a webhook carries, already checked for types."""

    id: int
    task_id: int
    data: dict[str, Any]
    result: list[Any]
    cancelled: bool = False


@dataclass(frozen=True)
class Event:
    """A webhook event: its action, the project, and what it carries."""

    action: str
    project_id: int
    label_config: str | None = None
    annotations: tuple[Annotation, ...] = field(default_factory=tuple)


def parse_project_id(project: object) -> int | None:
    """Label Studio names projects ``"<id>.<created timestamp>"`` in /setup and /predict."""
    if isinstance(project, dict):
        project = project.get("id")
    if isinstance(project, bool) or project is None:
        return None
    if isinstance(project, int):
        return project if 0 < project < 2**63 else None
    head = str(project).split(".", 1)[0]
    # isdecimal, not isdigit: "²" is a digit that int() refuses
    return int(head) if head.isascii() and head.isdecimal() and len(head) < 19 else None


def task_text(task: object, key: str, max_chars: int) -> str:
    """The text a task's ``data[key]`` holds, or :class:`TaskDataError` saying what is wrong with it."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise TaskDataError("the task has no 'data' object")
    value = task["data"].get(key)
    if value is None:
        raise TaskDataError(f"the task's data has no {key!r} field that the labeling config reads (${key})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TaskDataError(f"the task's {key!r} is {type(value).__name__}, not text")
    if not value.strip():
        raise TaskDataError(f"the task's {key!r} is empty")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TaskDataError(f"the task's {key!r} holds an unpaired surrogate at position {e.start}: send "
                                "valid Unicode text") from e
    if len(value) > max_chars:
        raise TaskDataError(f"the task's {key!r} has {len(value):,} characters; the backend predicts up to "
                            f"{max_chars:,} (LABELLOOP_MAX_TEXT_CHARS)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TaskDataError(f"the task's {key!r} holds an unpaired surrogate at character {e.start}: send "
                            "valid Unicode text") from e
    return value
