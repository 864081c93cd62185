import json
import time

import pytest

from labelloop.auth import Users, hash_password, verify_password
from labelloop.errors import ConfigError


def test_hash_round_trips_and_is_salted():
    first, second = hash_password("s3cret pass"), hash_password("s3cret pass")
    assert first != second and "s3cret" not in first
    assert verify_password("s3cret pass", first) and verify_password("s3cret pass", second)
    assert not verify_password("s3cret pas", first)


@pytest.mark.parametrize("bad", ["", "plain", "scrypt$1$2$3", "md5$a$b$c$d$e", "scrypt$x$8$1$abc$def"])
def test_malformed_hashes_never_match(bad):
    assert not verify_password("anything", bad)


def test_users_from_hash_plain_password_and_secrets_file(tmp_path):
    users = Users.from_env({"LABELLOOP_DASHBOARD_USER": "lead", "LABELLOOP_DASHBOARD_PASSWORD_HASH": hash_password("a")})
    assert users.check("lead", "a") and not users.check("lead", "b") and not users.check("other", "a")
    users = Users.from_env({"LABELLOOP_DASHBOARD_USER": "lead", "LABELLOOP_DASHBOARD_PASSWORD": "plain pw"})
    assert users.hashes["lead"].startswith("scrypt$") and users.check("lead", "plain pw")
    assert "plain pw" not in repr(users)
    secrets = tmp_path / "users.json"
    secrets.write_text(json.dumps({"users": {"ann": hash_password("x"), "bob": hash_password("y")}}))
    users = Users.from_env({"LABELLOOP_DASHBOARD_SECRETS": str(secrets)})
    assert users.check("ann", "x") and users.check("bob", "y") and not users.check("ann", "y")


def test_missing_or_broken_login_configuration_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match="labelloop hash-password"):
        Users.from_env({})
    with pytest.raises(ConfigError, match="PASSWORD_HASH"):
        Users.from_env({"LABELLOOP_DASHBOARD_USER": "lead"})
    with pytest.raises(ConfigError, match="not a hash"):
        Users.from_env({"LABELLOOP_DASHBOARD_USER": "lead", "LABELLOOP_DASHBOARD_PASSWORD_HASH": "hunter2"})
    broken = tmp_path / "users.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="users.json") as e:
        Users.from_env({"LABELLOOP_DASHBOARD_SECRETS": str(broken)})
    assert "not json" not in str(e.value)


def test_no_auth_is_explicit():
    assert Users.from_env({"LABELLOOP_DASHBOARD_NO_AUTH": "1"}).check("anyone", "")
    assert not Users.from_env({"LABELLOOP_DASHBOARD_NO_AUTH": "0", "LABELLOOP_DASHBOARD_USER": "a",
                               "LABELLOOP_DASHBOARD_PASSWORD": "b"}).open


def test_cli_refuses_no_auth_beyond_loopback_and_hashes_from_stdin(monkeypatch, capsys):
    import io

    from labelloop import cli

    with pytest.raises(SystemExit, match="local demo"):
        cli.main(["dashboard", "--host", "0.0.0.0", "--no-auth"])
    monkeypatch.setattr("sys.stdin", io.StringIO("pw from stdin\n"))
    cli.main(["hash-password", "--stdin"])
    assert verify_password("pw from stdin", capsys.readouterr().out.strip())


def test_throttle_locks_a_key_after_free_failures_doubling_and_a_success_clears_it():
    from labelloop.auth import LoginThrottle, throttle_keys

    now = [0.0]
    throttle = LoginThrottle(free=3, base=1.0, cap=8.0, clock=lambda: now[0])
    keys = throttle_keys("Lead ", "10.0.0.1")
    assert keys == ("client:10.0.0.1",)  # the guesser's address, never the account: no lockout by proxy
    assert throttle_keys("Lead ", None) == ("user:lead",)
    checked = []

    def wrong():
        checked.append(1)
        return False

    for _ in range(3):  # free failures
        assert throttle.attempt(wrong, *keys) is False and throttle.wait(*keys) == 0
    assert throttle.attempt(wrong, *keys) is False and throttle.wait(*keys) == 1.0
    assert throttle.attempt(lambda: True, *keys) is False  # locked: refused unchecked, even the right password
    assert len(checked) == 4
    now[0] += 1.0
    assert throttle.attempt(wrong, *keys) is False and throttle.wait(*keys) == 2.0  # doubles
    for _ in range(5):
        now[0] += 100
        throttle.attempt(wrong, *keys)
    assert throttle.wait(*keys) == 8.0  # capped
    assert throttle.wait(*throttle_keys("lead", "10.0.0.2")) == 0  # the same user from elsewhere is not slowed
    assert throttle.wait("client:10.0.0.1") == 8.0
    now[0] += 8
    assert throttle.attempt(lambda: True, *keys) and throttle.wait(*keys) == 0


def test_throttle_forgets_the_oldest_keys_beyond_its_size():
    from labelloop.auth import LoginThrottle

    throttle = LoginThrottle(free=0, size=100, clock=lambda: 0.0)
    for i in range(1000):
        throttle.record(False, f"client:{i}")
    assert throttle.wait("client:999") > 0 and throttle.wait("client:0") == 0


def test_session_tokens_are_signed_expire_and_end_with_a_password_change(tmp_path, monkeypatch):
    from labelloop.auth import SessionTokens

    monkeypatch.delenv("LABELLOOP_DASHBOARD_SESSION_SECRET", raising=False)
    now = [1000.0]
    users = Users({"lead": hash_password("a")})
    tokens = SessionTokens.for_home(tmp_path, hours=1)
    tokens.clock = lambda: now[0]
    token = tokens.issue("lead", users)
    assert tokens.verify(token, users) == "lead"
    assert (tmp_path / "dashboard-session.key").stat().st_mode & 0o777 == 0o600
    again = SessionTokens.for_home(tmp_path, hours=1)  # a restarted dashboard keeps its sessions
    again.clock = lambda: now[0]
    assert again.verify(token, users) == "lead"
    user, expiry, signature = token.split(".")
    assert tokens.verify(f"{user}.{int(expiry) + 3600}.{signature}", users) is None  # extended by hand
    forged = SessionTokens(b"another secret, 32 bytes long...")
    assert tokens.verify(forged.issue("lead", users), users) is None
    for bad in (None, "", "a.b", "x.y.z", "..", "bGVhZA.notanumber.sig"):
        assert tokens.verify(bad, users) is None
    assert tokens.verify(token, Users({"lead": hash_password("new password")})) is None  # password changed
    assert tokens.verify(token, Users({"other": hash_password("a")})) is None  # user removed
    now[0] += 3601
    assert tokens.verify(token, users) is None  # expired


def test_a_logged_out_token_stays_refused_across_processes_and_restarts(tmp_path, monkeypatch):
    from labelloop.auth import SessionTokens

    monkeypatch.delenv("LABELLOOP_DASHBOARD_SESSION_SECRET", raising=False)
    users = Users({"lead": hash_password("a")})
    first, other = SessionTokens.for_home(tmp_path), SessionTokens.for_home(tmp_path)  # two dashboard processes
    token = first.issue("lead", users)
    first.clock = lambda: time.time() + 5
    kept = first.issue("lead", users)  # another browser's session, issued later
    assert other.verify(token, users) == "lead" and kept != token
    first.revoke(token)
    assert first.verify(token, users) is None and other.verify(token, users) is None
    restarted = SessionTokens.for_home(tmp_path)
    assert restarted.verify(token, users) is None
    assert restarted.verify(kept, users) == "lead"  # other sessions go on
    assert (tmp_path / "dashboard-revoked.json").stat().st_mode & 0o777 == 0o600
    assert token not in (tmp_path / "dashboard-revoked.json").read_text()  # digests only, never the token
    first.revoke("not a token")  # ignored
