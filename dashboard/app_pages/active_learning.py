"""Active learning: the model serving the project, the queue annotators get next, the learning curve."""

import altair as alt
import pandas as pd
import streamlit as st

from labelloop import actions, insights
from labelloop.actions import approved_records
from labelloop.dashboard import state
from labelloop.dataset import freeze_test_split, load_frozen_test
from labelloop.errors import LabelLoopError

st.title("Active learning")
state.require_client()
project = state.project()
control = state.control(project)
service = state.service()
home = state.settings().home
versions = service.version_records(project["id"])

c1, c2, c3 = st.columns(3)
c1.metric("Label Studio shows predictions of", project["model_version"] or "none yet")
c2.metric("Backend versions trained", len(versions))
c3.metric("Last trained on", f"{versions[-1].n_annotations} labels" if versions else "-")
if not versions:
    st.info("The backend has not trained for this project yet. Connect it (`labelloop connect`) and label a few "
            "tasks; it retrains after each annotation.")

st.subheader("Next in the queue")
st.caption("Unlabeled tasks in the order Label Studio's uncertainty sampling serves them: least confident first.")
queue = insights.queue_preview(state.tasks(project["id"]), project["model_version"], control, n=10)
if queue:
    st.dataframe(pd.DataFrame([{**q, "open": state.task_link(project["id"], q["task_id"])} for q in queue]),
                 hide_index=True, width="stretch",
                 column_config={"score": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0,
                                                                         format="%.2f"),
                                "open": st.column_config.LinkColumn("open", display_text="label it")})
else:
    st.success("Every task is labeled.")

st.subheader("Learning curve")
frozen = load_frozen_test(home, project["id"])
if not frozen:
    st.info("The curve is measured on a frozen test split that the backend never trains on. Freeze one from the "
            "labels approved so far; later exports keep it.")
    if st.button("Freeze a test split"):
        test = freeze_test_split(state.tasks(project["id"]), project["label_config"], home, project["id"])
        st.toast(f"Froze {len(test)} approved tasks as the test split.")
        st.rerun()
else:
    _, test = approved_records(state.tasks(project["id"]), project["label_config"], home, project["id"])
    try:
        curve = actions.learning_curve(service, project["id"], test) if test else []
    except LabelLoopError as e:
        st.warning(f"{e}")
        curve = []
    if curve:
        df = pd.DataFrame(curve)
        chart = alt.Chart(df).mark_line(point=True).encode(
            x=alt.X("labels:Q", title="labels trained on"), y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
            tooltip=["model_version", "labels", alt.Tooltip("accuracy:Q", format=".3f"), "n_test"])
        st.altair_chart(chart, width="stretch")
        st.caption(f"Accuracy on {len(test)} frozen test tasks, one point per model version.")
    else:
        st.caption("No test tasks with a single-choice label yet: annotate more, the split fills as labels arrive.")
