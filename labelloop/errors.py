"""Every error LabelLoop raises on purpose derives from :class:`LabelLoopError`.

Hierarchy::

    LabelLoopError
    ├── ConfigError                 a setting or argument is wrong
    │   ├── UnsupportedConfigError  a Label Studio labeling config the backend cannot serve
    │   └── GateRefusedError        the promotion gate did not promote a run (not better yet, or not at all)
    ├── TaskDataError               a task lacks its text or the text cannot be used
    │   └── AnnotationError         an annotation's result has the wrong shape
    ├── StorageFullError            the disk under $LABELLOOP_HOME is full
    ├── ModelError                  a model could not be loaded, trained or saved
    ├── MissingExtraError           an optional dependency is not installed
    ├── LLMEndpointError            an OpenAI-compatible LLM server failed or refused us
    └── LabelStudioError            talking to Label Studio failed
        ├── LabelStudioUnavailableError  the server did not answer
        └── LabelStudioAuthError         the server refused our token

Messages say what to do next. They never contain tokens or passwords.
"""

from __future__ import annotations


class LabelLoopError(Exception):
    """Root of LabelLoop's exceptions."""


class ConfigError(LabelLoopError):
    """A setting or argument is wrong."""


class UnsupportedConfigError(ConfigError):
    """A labeling config the backend cannot serve; the message shows what is supported."""


class GateRefusedError(ConfigError):
    """The promotion gate refused a run; ``evidence`` holds what it saw (:class:`labelloop.gate.GateEvidence`)."""

    def __init__(self, message: str, evidence: object = None) -> None:
        super().__init__(message)
        self.evidence = evidence


class TaskDataError(LabelLoopError):
    """A task's data cannot be used (missing text field, text too long, wrong type)."""


class AnnotationError(TaskDataError):
    """An annotation's result does not have the shape Label Studio gives its control."""


class StorageFullError(LabelLoopError):
    """Nothing more can be written under ``$LABELLOOP_HOME``: the disk (or the database) is full."""


class ModelError(LabelLoopError):
    """A model could not be loaded, trained or saved."""


class MissingExtraError(LabelLoopError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class LLMEndpointError(LabelLoopError):
    """An OpenAI-compatible LLM server did not answer, refused the key, or rejected the request."""


class LabelStudioError(LabelLoopError):
    """A call to Label Studio failed."""


class LabelStudioUnavailableError(LabelStudioError):
    """Label Studio did not answer (down, wrong URL, network)."""


class LabelStudioAuthError(LabelStudioError):
    """Label Studio refused the token."""
