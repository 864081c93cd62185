"""Overview: every project at a glance, then the chosen one's progress, labels and annotators."""

import pandas as pd
import streamlit as st

from labelloop.dashboard import state
from labelloop.quality import insights

st.title("Overview")
state.require_client()
project = state.project()
st.subheader("Projects")
st.dataframe(pd.DataFrame(state.projects()).drop(columns=["label_config"]), hide_index=True, width="stretch")

st.subheader(project["title"])
stats = insights.progress(state.tasks(project["id"]), state.control(project), state.annotators())
c1, c2, c3, c4 = st.columns(4)
c1.metric("Tasks", stats["tasks"])
c2.metric("Labeled", stats["labeled"], f"{stats['labeled'] / max(stats['tasks'], 1):.0%}", delta_color="off")
c3.metric("Annotations", stats["annotations"])
c4.metric("Skipped", stats["skipped"])

left, right = st.columns(2)
with left:
    st.markdown("**Annotations over time**")
    # Per day; per hour when they all fall on one day (a line through one point draws nothing).
    timeline = stats["per_day"] if len(stats["per_day"]) > 1 else stats["per_hour"]
    if len(timeline) > 1:
        st.line_chart(pd.DataFrame(timeline).set_index("date")[["cumulative", "annotations"]])
        if timeline is stats["per_hour"]:
            st.caption(f"All on {stats['per_day'][0]['date']}, per hour.")
    elif timeline:
        st.bar_chart(pd.DataFrame(timeline).set_index("date")[["annotations"]])
        st.caption(f"All {timeline[0]['annotations']} annotations within {timeline[0]['date']}.")
    else:
        st.caption("No annotations yet.")
with right:
    st.markdown("**Label distribution**")
    if stats["labels"]:
        st.bar_chart(pd.Series(stats["labels"], name="annotations"), horizontal=True)
    else:
        st.caption("No labels yet.")
st.markdown("**Annotators**")
if stats["annotators"]:
    st.dataframe(pd.DataFrame(stats["annotators"]), hide_index=True, width="stretch",
                 column_config={"median_seconds": st.column_config.NumberColumn("median seconds per task",
                                                                                format="%.1f")})
else:
    st.caption("Nobody has annotated this project yet.")
