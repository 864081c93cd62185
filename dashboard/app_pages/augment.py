"""Augment: preview variants of approved labels, then save them or add them to the project for review."""

import pandas as pd
import streamlit as st

from labelloop import workflows
from labelloop.dashboard import state
from labelloop.errors import LabelLoopError

st.title("Augment")
client = state.require_client()
project = state.project()
home = state.settings().home
st.caption("Variants come only from approved labels outside the test split; originals are never changed. "
           "Near-duplicates, variants matching a test text and variants whose meaning strayed from their source "
           "(sentence-vector cosine below 0.9) are dropped.")
with st.form("augment"):
    methods = st.multiselect("Methods", ["swap", "delete", "synonym", "synonym-insert", "backtranslate",
                                         "mention-swap"], default=["swap"])
    c1, c2, c3 = st.columns(3)
    n = c1.number_input("Variants per method and record", 1, 10, 1)
    aug_p = c2.slider("Share of words changed", 0.05, 0.5, 0.15)
    limit = c3.number_input("Preview on the first N records (0: all)", 0, 100_000, 20)
    preview = st.form_submit_button("Preview")
if preview:
    try:
        st.session_state["augment_result"] = workflows.augment_project(
            state.tasks(project["id"]), project["label_config"], home, project["id"], methods,
            audit_share=state.settings().audit_share, n=int(n),
            aug_p=float(aug_p), limit=int(limit) or None, embed=state.service().embed)
        st.session_state["augment_project"] = project["id"]
    except LabelLoopError as e:
        st.error(f"{e}")
result = st.session_state.get("augment_result")
if result and st.session_state.get("augment_project") == project["id"]:
    st.success(result["summary"])
    st.dataframe(pd.DataFrame(result["preview"]), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    if c1.button(f"Save {len(result['variants'])} variants as JSONL"):
        path = workflows.save_variants(home, project["id"], result["variants"])
        st.success(f"Wrote {path}")
    if c2.button(f"Add {len(result['variants'])} variants to the project for review"):
        added = workflows.import_variants(client, project["id"], result["variants"], project["label_config"])
        st.cache_data.clear()
        st.success(f"Added {added} tasks marked augmented, each with its label as a prediction to accept or fix.")
