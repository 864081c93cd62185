"""Dashboard pages without a reachable Label Studio: a clear message that says what to do, never a traceback."""

from pathlib import Path

from labelloop.studio.localstudio import free_port

APP = Path(__file__).resolve().parents[3] / "dashboard" / "app.py"
PAGES = ["overview", "quality", "active_learning", "augment", "train", "runs"]


def app(monkeypatch, tmp_path, **env):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()  # settings are read once per server; each test here is a new server
    st.cache_data.clear()
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LABELLOOP_DASHBOARD_USER",
                 "LABELLOOP_DASHBOARD_PASSWORD_HASH", "LABELLOOP_DASHBOARD_SECRETS", "LABELLOOP_DASHBOARD_NO_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABELLOOP_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return AppTest.from_file(str(APP), default_timeout=60)


def test_without_a_login_configured_the_page_says_how_to_set_one(monkeypatch, tmp_path):
    at = app(monkeypatch, tmp_path).run()
    assert "labelloop hash-password" in at.error[0].value and not at.text_input


def test_every_page_explains_a_missing_or_dead_label_studio(monkeypatch, tmp_path):
    missing = app(monkeypatch, tmp_path, LABELLOOP_DASHBOARD_NO_AUTH="1").run()
    for page in PAGES:
        missing.switch_page(f"app_pages/{page}.py").run()
        assert not missing.exception, (page, missing.exception)
        if page not in ("train", "runs"):  # those two work on local runs without Label Studio
            assert "LABEL_STUDIO_URL" in " ".join(e.value for e in missing.error), page
    dead = app(monkeypatch, tmp_path, LABELLOOP_DASHBOARD_NO_AUTH="1",
               LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}", LABEL_STUDIO_API_KEY="x" * 40).run()
    for page in PAGES[:-1]:
        dead.switch_page(f"app_pages/{page}.py").run()
        assert not dead.exception, (page, dead.exception)
        text = " ".join(e.value for e in dead.error)
        assert "did not answer" in text and "LABEL_STUDIO_URL" in text and "x" * 40 not in text, page


def test_logging_out_revokes_the_session_issued_in_the_same_browser_session(monkeypatch, tmp_path):
    from labelloop.auth import SessionTokens, Users, hash_password

    monkeypatch.delenv("LABELLOOP_DASHBOARD_SESSION_SECRET", raising=False)

    at = app(monkeypatch, tmp_path, LABELLOOP_DASHBOARD_USER="lead",
             LABELLOOP_DASHBOARD_PASSWORD_HASH=hash_password("s3cret pass")).run()
    at.text_input[0].input("lead")
    at.text_input[1].input("s3cret pass")
    at.button[0].click().run()
    token = at.session_state["token"]
    assert at.session_state["user"] == "lead"
    assert SessionTokens.for_home(tmp_path).verify(token, Users.from_env()) == "lead"
    at.sidebar.button[0].click().run()
    assert "user" not in at.session_state
    assert SessionTokens.for_home(tmp_path).verify(token, Users.from_env()) is None  # a restart still refuses it
