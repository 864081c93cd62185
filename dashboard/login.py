"""The login form in front of every page (see :mod:`labelloop.auth` for where users come from)."""

from __future__ import annotations

import time

import streamlit as st

from labelloop.auth import Users
from labelloop.errors import ConfigError


@st.cache_resource
def users() -> Users:
    return Users.from_env()


def require_login() -> str:
    """The logged-in user name; shows the login form and stops the page until someone logs in."""
    try:
        known = users()
    except ConfigError as e:
        st.error(str(e))
        st.stop()
    if known.open:
        return "local"
    user = st.session_state.get("user")
    if user:
        st.sidebar.caption(f"Logged in as {user}")
        if st.sidebar.button("Log out"):
            del st.session_state["user"]
            st.rerun()
        return user
    st.title("LabelLoop")
    with st.form("login"):
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if known.check(name, password):
            st.session_state["user"] = name.strip()
            st.rerun()
        time.sleep(1.0)  # slows down guessing
        st.error("Wrong user name or password.")
    st.stop()
