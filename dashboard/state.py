"""What every dashboard page shares: settings, clients and services (one per server), the chosen project.

Pages call these and the core; they hold no logic of their own.
"""

from __future__ import annotations

import streamlit as st

from labelloop.errors import LabelLoopError
from labelloop.finetune.registry import RunRegistry
from labelloop.labeling.schema import find_control
from labelloop.quality import insights
from labelloop.settings import LabelLoopSettings
from labelloop.studio import lsclient

# A page waits seconds, not a minute, for a Label Studio that is down: it says so and a refresh tries again.
READ_RETRY = lsclient.BEST_EFFORT


@st.cache_resource
def settings() -> LabelLoopSettings:
    return LabelLoopSettings()


@st.cache_resource
def client():
    s = settings()
    if not s.label_studio_url or not s.label_studio_api_key:
        return None
    return lsclient.make_client(s.label_studio_url, s.label_studio_api_key.get_secret_value(), timeout=60)


@st.cache_resource
def service():
    from labelloop.serving.service import ModelService

    return ModelService(settings())


@st.cache_resource
def registry() -> RunRegistry:
    return RunRegistry(settings().home)


def require_client():
    """The Label Studio client, or stop the page with what to set."""
    c = client()
    if c is None:
        st.error("Label Studio is not configured: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a legacy token or "
                 "personal access token from Account & Settings) and restart `labelloop dashboard`.")
        st.stop()
    return c


@st.cache_data(ttl=15, show_spinner=False)
def projects() -> list[dict]:
    rows = lsclient.list_projects(require_client(), retry=READ_RETRY)
    return [{"id": p.id, "title": p.title, "tasks": p.task_number or 0, "labeled": p.num_tasks_with_annotations or 0,
             "annotations": p.total_annotations_number or 0, "model_version": p.model_version or "",
             "label_config": p.label_config} for p in rows]


@st.cache_data(ttl=15, show_spinner="Reading tasks from Label Studio...")
def tasks(project_id: int) -> list[dict]:
    return insights.project_tasks(require_client(), project_id, retry=READ_RETRY)


@st.cache_data(ttl=300, show_spinner=False)
def annotators() -> dict[int, str]:
    try:
        users = lsclient.call("listing users", require_client().users.list, retry=READ_RETRY)
        return {u.id: u.email or u.username for u in users}
    except LabelLoopError:
        return {}


def project() -> dict:
    """The project picked in the sidebar (stops the page when there is none)."""
    try:
        rows = projects()
    except LabelLoopError as e:
        st.error(f"{e}")
        st.stop()
    if not rows:
        st.info("Label Studio has no projects yet: create one with `labelloop project create` or in Label Studio.")
        st.stop()
    ids = [r["id"] for r in rows]
    wanted = st.session_state.get("project_id")
    chosen = st.sidebar.selectbox("Project", ids, index=ids.index(wanted) if wanted in ids else 0,
                                  format_func=lambda i: next(f"{r['title']} (#{i})" for r in rows if r["id"] == i))
    st.session_state["project_id"] = chosen
    return next(r for r in rows if r["id"] == chosen)


def control(project_row: dict):
    """The project's first labeling control, or stop with what the dashboard supports."""
    try:
        return find_control(project_row["label_config"])
    except LabelLoopError as e:
        st.warning(f"This project's labeling config has no control the dashboard understands: {e}")
        st.stop()


def task_link(project_id: int, task_id: int) -> str:
    return insights.task_url(settings().label_studio_url or "", project_id, task_id)


def refresh_button() -> None:
    if st.sidebar.button("Refresh from Label Studio"):
        st.cache_data.clear()
        st.rerun()
