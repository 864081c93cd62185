"""Quality: agreement between annotators, likely label errors, duplicates and train/test leakage."""

import pandas as pd
import streamlit as st

from labelloop.audit import stored_frame
from labelloop.dashboard import state
from labelloop.data.dataset import agreement_stats, load_frozen_test
from labelloop.labeling.kinds import kind_of
from labelloop.quality import insights

st.title("Quality")
state.require_client()
project = state.project()
control = state.control(project)
tasks = state.tasks(project["id"])

st.subheader("Agreement")
agreement = agreement_stats(tasks, control)
if agreement["tasks_with_several_annotations"]:
    cols = st.columns(4)
    cols[0].metric("Tasks with several annotations", agreement["tasks_with_several_annotations"])
    cols[1].metric("Full agreement", f"{agreement['full_agreement']:.0%}")
    cols[2].metric("Pairwise agreement", f"{agreement['pairwise_agreement']:.0%}")
    if "fleiss_kappa" in agreement:
        cols[3].metric("Fleiss' kappa", f"{agreement['fleiss_kappa']:.2f}")
    if agreement.get("word_agreement") is not None:
        cols[3].metric("Words tagged alike", f"{agreement['word_agreement']:.0%}")
    if "link_f1" in agreement:
        cols[3].metric("Link F1 between annotators", f"{agreement['link_f1']:.2f}")
    pairs = insights.pairwise_kappa(tasks, control, annotators=state.annotators())
    if pairs:
        st.markdown("**Cohen's kappa per pair of annotators** (least agreeing first)")
        st.dataframe(pd.DataFrame(pairs), hide_index=True, width="stretch",
                     column_config={"kappa": st.column_config.ProgressColumn("kappa", min_value=-1, max_value=1,
                                                                             format="%.2f")})
else:
    st.info("No task has two annotations yet. Set overlap in the project's Annotation settings to measure agreement.")


@st.cache_data(show_spinner="Scoring every approved label with out-of-fold predictions...")
def label_issues(project_id: int, n_annotations: int, label_config: str) -> list[dict]:
    # n_annotations is part of the cache key: new labels, new answer.
    found = insights.label_issue_candidates(state.tasks(project_id), label_config, state.service().encoder)
    return [{**issue.__dict__, "open": state.task_link(project_id, issue.task_id)} for issue in found]


st.subheader("Likely label errors")
st.caption("Confident learning on out-of-fold probabilities: labels that a model trained without them confidently "
           "disagrees with. Open a task to check it in Label Studio.")
if kind_of(control).single_label(control):
    issues = label_issues(project["id"], project["annotations"], project["label_config"])
    if issues:
        st.dataframe(pd.DataFrame(issues), hide_index=True, width="stretch", column_config={
            "open": st.column_config.LinkColumn("open", display_text="open in Label Studio"),
            "self_confidence": st.column_config.NumberColumn(format="%.2f"),
            "suggested_probability": st.column_config.NumberColumn(format="%.2f")})
    else:
        st.success("No likely label errors (or fewer than 10 approved tasks of two labels to judge from).")
else:
    st.caption("Label-error search covers single-choice classification.")

st.subheader("Duplicates and leakage")
settings = state.settings()
report = insights.duplicate_report(tasks, project["label_config"], project_id=project["id"],
                                   audit_share=settings.audit_share,
                                   frozen_test=load_frozen_test(settings.home, project["id"]),
                                   frame=stored_frame(settings.home, project["id"], settings.audit_share,
                                                      instance=settings.instance))
cols = st.columns(4)
cols[0].metric("Duplicate groups", len(report["groups"]))
cols[1].metric("Approved train", report["split"]["train"])
cols[2].metric("Approved test", report["split"]["test"])
cols[3].metric("Test texts in train", report["test_texts_in_train"])
if report["groups"]:
    rows = [{"size": g["size"], "text": g["text"][:200], "tasks": ", ".join(map(str, g["task_ids"])),
             "open": state.task_link(project["id"], g["task_ids"][0])} for g in report["groups"]]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"open": st.column_config.LinkColumn("open", display_text="open first")})
st.caption("Exports keep every duplicate group on one side of the split, so the test split never leaks into train.")
