"""Logins for the dashboard, the playground and the backend's basic auth.

Passwords are stored and compared only as salted scrypt hashes (``scrypt$n$r$p$salt$hash``). Users come
from ``LABELLOOP_DASHBOARD_USER`` with ``LABELLOOP_DASHBOARD_PASSWORD_HASH`` (make one with
``labelloop hash-password``) or, less safely, ``LABELLOOP_DASHBOARD_PASSWORD``; or from a secrets file
(``LABELLOOP_DASHBOARD_SECRETS``, JSON ``{"users": {"name": "scrypt$..."}}``). A password given in plain
text is hashed as soon as it is read and never kept.

:class:`LoginThrottle` slows guessing down per client address, whatever the number of parallel sessions:
it throttles the guesser, not the account, so nobody can lock a user out by failing logins in their name.
:class:`SessionTokens` signs the dashboard's session cookie, so a page reload keeps the login until it
expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labelloop.errors import ConfigError

_N, _R, _P = 2**14, 8, 1
NO_USERS = ("No dashboard login is configured. Set LABELLOOP_DASHBOARD_USER and LABELLOOP_DASHBOARD_PASSWORD_HASH "
            "(from `labelloop hash-password`), or LABELLOOP_DASHBOARD_SECRETS to a secrets file; or start it with "
            "--no-auth for a local demo only you can reach.")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


class LoginThrottle:
    """Failed logins slow down the next ones, per key (``user:NAME``, ``client:ADDRESS``).

    The first ``free`` failures of a key cost nothing; after that each failure locks the key for ``base``
    seconds, doubling up to ``cap``. An attempt on a locked key is refused without checking the password,
    so parallel sessions or connections gain nothing. A success clears the keys. One instance per server
    process; it remembers at most ``size`` keys (the oldest are forgotten first).
    """

    def __init__(self, *, free: int = 5, base: float = 1.0, cap: float = 300.0, size: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base, self.cap, self.size = free, base, cap, size
        self.clock = clock
        self._keys: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (failures, locked until)
        self._lock = threading.Lock()

    def wait(self, *keys: str) -> float:
        """Seconds before ``keys`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([self._keys.get(k, (0, 0.0))[1] - now for k in keys] + [0.0])

    def record(self, ok: bool, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                if ok:
                    self._keys.pop(key, None)
                    continue
                failures = self._keys.pop(key, (0, 0.0))[0] + 1
                over = failures - self.free
                self._keys[key] = (failures, now + min(self.cap, self.base * 2 ** (over - 1)) if over > 0 else 0.0)
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)

    def attempt(self, check: Callable[[], bool], *keys: str) -> bool:
        """Whether the login succeeds: False without running ``check`` while any key is locked."""
        if self.wait(*keys) > 0:
            return False
        ok = check()
        self.record(ok, *keys)
        return ok


def throttle_keys(username: str | None, client: str | None) -> tuple[str, ...]:
    """The throttle's keys for a login: the client's address; the user name only where no address is known.

    Keying on the user name as well would let anyone lock a user out by failing in their name (10 failures
    from another address used to lock the real user out for minutes)."""
    if client:
        return (f"client:{client}",)
    return (f"user:{username.strip().lower()}",) if username else ()


class SessionTokens:
    """Signed, expiring session tokens ``user.expiry.signature`` for the dashboard's cookie.

    The signature (HMAC-SHA256 with a server secret) covers the user, the expiry and the user's password
    hash, so changing a password ends that user's sessions. The secret comes from
    ``LABELLOOP_DASHBOARD_SESSION_SECRET``, or is made once and kept in ``home/dashboard-session.key``
    (mode 0600), so sessions survive a restart of the dashboard.
    """

    def __init__(self, secret: bytes, *, hours: float = 12.0, clock: Callable[[], float] = time.time,
                 revoked_file: Path | None = None) -> None:
        if len(secret) < 16:
            raise ConfigError("the dashboard session secret must be at least 16 bytes")
        self.secret, self.seconds, self.clock = secret, hours * 3600, clock
        self.revoked_file = revoked_file  # logged-out tokens (their digests), so a restart still refuses them
        self._revoked: dict[str, int] = {}
        self._revoked_seen: float | None = None
        self._revoke_lock = threading.Lock()

    @classmethod
    def for_home(cls, home: Path, *, hours: float = 12.0) -> SessionTokens:
        given = os.environ.get("LABELLOOP_DASHBOARD_SESSION_SECRET")
        if given:
            return cls(given.encode(), hours=hours)
        path = Path(home) / "dashboard-session.key"
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            secret = secrets.token_bytes(32)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(secret)
            except FileExistsError:  # another process made it first
                secret = path.read_bytes()
        return cls(secret, hours=hours, revoked_file=Path(home) / "dashboard-revoked.json")

    def revoke(self, token: str | None) -> None:
        """End a session (log out): its token is refused from now on, by every process and after a restart."""
        if not isinstance(token, str):
            return
        try:
            expiry = int(token.split(".")[1])
        except (IndexError, ValueError):
            return
        with self._revoke_lock:
            self._load_revoked()
            now = self.clock()
            self._revoked = {d: e for d, e in self._revoked.items() if e >= now}  # expired ones are refused anyway
            self._revoked[_digest(token)] = expiry
            if self.revoked_file is not None:
                tmp = self.revoked_file.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(self._revoked, f)
                os.replace(tmp, self.revoked_file)
                self._revoked_seen = self.revoked_file.stat().st_mtime

    def _load_revoked(self) -> None:
        if self.revoked_file is None:
            return
        try:
            seen = self.revoked_file.stat().st_mtime
        except FileNotFoundError:
            return
        if seen == self._revoked_seen:
            return
        try:
            data = json.loads(self.revoked_file.read_text())
            self._revoked = {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError, TypeError):
            self._revoked = {}
        self._revoked_seen = seen

    def _sign(self, user: str, expiry: int, users: Users) -> str:
        message = f"{user}\x00{expiry}\x00{users.hashes.get(user, '')}".encode()
        return _b64(hmac.new(self.secret, message, hashlib.sha256).digest())

    def issue(self, user: str, users: Users) -> str:
        expiry = int(self.clock() + self.seconds)
        return f"{_b64(user.encode())}.{expiry}.{self._sign(user, expiry, users)}"

    def verify(self, token: str | None, users: Users) -> str | None:
        """The user a token was issued to, or None (malformed, forged, expired, or the user is gone)."""
        try:
            encoded, expiry_text, signature = (token or "").split(".")
            user, expiry = _unb64(encoded).decode(), int(expiry_text)
        except (ValueError, UnicodeDecodeError):
            return None
        if expiry < self.clock() or user not in users.hashes:
            return None
        with self._revoke_lock:
            self._load_revoked()
            if _digest(token or "") in self._revoked:
                return None
        return user if hmac.compare_digest(signature, self._sign(user, expiry, users)) else None
