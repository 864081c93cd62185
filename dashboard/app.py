"""The LabelLoop dashboard: ``labelloop dashboard`` runs ``streamlit run`` on this file."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from labelloop.dashboard import login, state
from labelloop.errors import LabelLoopError

PAGES = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="LabelLoop", page_icon=":material/model_training:", layout="wide")
login.require_login()
navigation = st.navigation([
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(PAGES / "quality.py", title="Quality", icon=":material/verified:"),
    st.Page(PAGES / "active_learning.py", title="Active learning", icon=":material/bolt:"),
    st.Page(PAGES / "augment.py", title="Augment", icon=":material/auto_awesome:"),
    st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
    st.Page(PAGES / "runs.py", title="Runs", icon=":material/leaderboard:"),
])
state.refresh_button()
try:
    navigation.run()
except LabelLoopError as e:  # ours carry what to do next; anything else is a bug and shows its traceback
    st.error(f"{e}")
