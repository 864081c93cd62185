"""What the command line reads from the environment: the settings (each bad variable named, not a traceback)
and a Label Studio client for the configured address and key."""

from __future__ import annotations

from labelloop.errors import ConfigError, LabelLoopError
from labelloop.settings import LabelLoopSettings


def load_settings() -> LabelLoopSettings:
    from pydantic import ValidationError

    try:
        return LabelLoopSettings()
    except ValidationError as e:  # one line per bad variable, not a traceback
        lines = [f"LABELLOOP_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in e.errors()]
        raise ConfigError("bad setting in the environment: " + "; ".join(lines)) from None


def studio_client(url: str | None = None):
    """A Label Studio client for ``url`` (default ``LABEL_STUDIO_URL``) and ``LABEL_STUDIO_API_KEY``."""
    from labelloop.studio.lsclient import make_client

    settings = load_settings()
    url, key = url or settings.label_studio_url, settings.api_key()
    if not url or not key:
        raise LabelLoopError("Set LABEL_STUDIO_URL (or --url) and LABEL_STUDIO_API_KEY.")
    return make_client(url, key)
