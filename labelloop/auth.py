"""Logins for the dashboard and the playground.

Passwords are stored and compared only as salted scrypt hashes (``scrypt$n$r$p$salt$hash``). Users come
from ``LABELLOOP_DASHBOARD_USER`` with ``LABELLOOP_DASHBOARD_PASSWORD_HASH`` (make one with
``labelloop hash-password``) or, less safely, ``LABELLOOP_DASHBOARD_PASSWORD``; or from a secrets file
(``LABELLOOP_DASHBOARD_SECRETS``, JSON ``{"users": {"name": "scrypt$..."}}``). A password given in plain
text is hashed as soon as it is read and never kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from labelloop.errors import ConfigError

_N, _R, _P = 2**14, 8, 1
NO_USERS = ("No dashboard login is configured. Set LABELLOOP_DASHBOARD_USER and LABELLOOP_DASHBOARD_PASSWORD_HASH "
            "(from `labelloop hash-password`), or LABELLOOP_DASHBOARD_SECRETS to a secrets file; or start it with "
            "--no-auth for a local demo only you can reach.")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password`` that :func:`verify_password` checks."""
    if not password:
        raise ConfigError("the password is empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed``, in constant time; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != "scrypt":
            return False
        want = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass
class Users:
    """Who may log in: user name to password hash. Empty with ``open=True`` when auth is off."""

    hashes: dict[str, str] = field(default_factory=dict, repr=False)
    open: bool = False

    def check(self, username: str, password: str) -> bool:
        if self.open:
            return True
        hashed = self.hashes.get(username.strip())
        # Hash anyway for unknown users, so timing doesn't tell which names exist.
        return verify_password(password, hashed or hash_password("x", salt=b"0" * 16)) and hashed is not None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Users:
        """Users from the environment (see the module docstring), or from ``env`` in its place."""
        from labelloop.settings import LabelLoopSettings

        if env is None:
            return cls.from_settings(LabelLoopSettings())
        prefix = "LABELLOOP_"
        given = {k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix + "DASHBOARD_")}
        return cls.from_settings(LabelLoopSettings.model_validate(given))

    @classmethod
    def from_settings(cls, settings) -> Users:
        """Users from the dashboard settings; raises :class:`ConfigError` when none are configured."""
        if settings.dashboard_no_auth:
            return cls(open=True)
        hashes: dict[str, str] = {}
        secrets_file = settings.dashboard_secrets
        if secrets_file:
            try:
                data = json.loads(Path(secrets_file).read_text())
                hashes.update({str(k): str(v) for k, v in data["users"].items()})
            except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
                raise ConfigError(f"can't read dashboard users from {secrets_file} ({type(e).__name__}); it must be "
                                  'JSON like {"users": {"lead": "scrypt$..."}}') from None
        user = settings.dashboard_user
        if user:
            hashed = settings.dashboard_password_hash.get_secret_value() if settings.dashboard_password_hash else None
            plain = settings.dashboard_password.get_secret_value() if settings.dashboard_password else None
            if hashed:
                hashes[user] = hashed
            elif plain:
                hashes[user] = hash_password(plain)
            else:
                raise ConfigError("LABELLOOP_DASHBOARD_USER is set but neither LABELLOOP_DASHBOARD_PASSWORD_HASH nor "
                                  "LABELLOOP_DASHBOARD_PASSWORD is")
        bad = [name for name, h in hashes.items() if not h.startswith("scrypt$")]
        if bad:
            raise ConfigError(f"the password of {', '.join(bad)} is not a hash from `labelloop hash-password`")
        if not hashes:
            raise ConfigError(NO_USERS)
        return cls(hashes)
