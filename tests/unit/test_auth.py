import json

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
