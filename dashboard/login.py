"""The login form in front of every page (see :mod:`labelloop.auth` for where users come from).

A login sets a signed session cookie (12 hours), so reloading a page keeps the user logged in; logging
out clears it and revokes its token for good (every process, after a restart too). Failed logins are
throttled per client address, across all sessions.
"""

from __future__ import annotations

import json

import streamlit as st

from labelloop.auth import LoginThrottle, SessionTokens, Users, throttle_keys
from labelloop.errors import ConfigError
from labelloop.settings import LabelLoopSettings

COOKIE = "labelloop_session"


@st.cache_resource
def users() -> Users:
    return Users.from_env()


@st.cache_resource
def throttle() -> LoginThrottle:
    return LoginThrottle()  # one per server process: every browser session shares it


@st.cache_resource
def tokens() -> SessionTokens:
    return SessionTokens.for_home(LabelLoopSettings().home)


def _from_cookie(known: Users) -> str | None:
    token = st.context.cookies.get(COOKIE)
    if not token or st.session_state.get("logged_out"):
        return None
    return tokens().verify(token, known)


def _set_cookie(value: str, max_age: int) -> None:
    """Write the session cookie on the page (the script runs in a same-origin frame Streamlit makes)."""
    cookie = f"{COOKIE}={value}; path=/; max-age={max_age}; SameSite=Strict"
    st.iframe(f"<script>window.parent.document.cookie = {json.dumps(cookie)};</script>", height=1)


def require_login() -> str:
    """The logged-in user name; shows the login form and stops the page until someone logs in."""
    try:
        known = users()
    except ConfigError as e:
        st.error(str(e))
        st.stop()
    if known.open:
        return "local"
    user = st.session_state.get("user") or _from_cookie(known)
    if user:
        st.session_state["user"] = user
        if st.session_state.pop("issue_cookie", False):
            # Kept here too: the page's request carried no cookie yet, and a logout must revoke this one.
            st.session_state["token"] = tokens().issue(user, known)
            _set_cookie(st.session_state["token"], int(tokens().seconds))
        st.sidebar.caption(f"Logged in as {user}")
        if st.sidebar.button("Log out"):
            del st.session_state["user"]
            st.session_state["logged_out"] = True
            for token in {st.session_state.pop("token", None), st.context.cookies.get(COOKIE)} - {None}:
                tokens().revoke(token)
            st.rerun()
        return user
    if st.session_state.get("logged_out"):
        _set_cookie("", 0)
    st.title("LabelLoop")
    with st.form("login"):
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        keys = throttle_keys(name, st.context.ip_address or "unknown")
        wait = throttle().wait(*keys)
        if wait > 0:
            st.error(f"Too many failed logins: try again in {wait:.0f} s.")
        elif throttle().attempt(lambda: known.check(name, password), *keys):
            st.session_state["user"] = name.strip()
            st.session_state["issue_cookie"] = True
            st.session_state.pop("logged_out", None)
            st.rerun()
        else:
            st.error("Wrong user name or password.")
    st.stop()
