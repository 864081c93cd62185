"""Runs: compare evaluations (base and promoted rows included), inspect classes, promote or roll back."""

import altair as alt
import pandas as pd
import streamlit as st

from labelloop import workflows
from labelloop.dashboard import state
from labelloop.errors import LabelLoopError

st.title("Runs")
registry = state.registry()
runs = registry.list()
project = state.project() if state.client() is not None else None
if project is not None and runs:
    if not st.toggle("Every project's runs", value=False,
                     help="Runs record the project their data was exported from; runs started from files without "
                          "one are listed with every project's."):
        runs = [r for r in runs if registry.project_of(r.run_id) in (project["id"], None)]
    st.caption(f"Runs of {project['title']} (#{project['id']}), and runs that name no project.")
if not runs:
    st.info("No runs yet: launch one from the Train page or with `labelloop train`.")
    st.stop()

table = [{"run": r.run_id, "task": r.task, "status": r.status, "error": r.error or "",
          **{k: v for k, v in r.summary.get("eval", {}).items() if isinstance(v, float)}} for r in reversed(runs)]
st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")

done = [r.run_id for r in reversed(runs) if registry.report(r.run_id)]
chosen = st.multiselect("Compare", done, default=done[:2])
for run_id in chosen:
    report = registry.report(run_id)
    st.subheader(run_id)
    scalars = {name: {k: v for k, v in row.items() if isinstance(v, (int, float)) or k in ("kind", "run")}
               for name, row in report["rows"].items()}
    st.dataframe(pd.DataFrame(scalars).T, width="stretch")
    row = report["rows"]["run"]
    if "per_class" in row:
        left, right = st.columns(2)
        left.markdown("**Per class**")
        left.dataframe(pd.DataFrame(row["per_class"]).T, width="stretch")
        labels = row["labels"]
        cells = [{"true": labels[i], "predicted": labels[j], "count": n}
                 for i, counts in enumerate(row["confusion_matrix"]) for j, n in enumerate(counts)]
        heat = alt.Chart(pd.DataFrame(cells)).mark_rect().encode(
            x="predicted:N", y="true:N", color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")),
            tooltip=["true", "predicted", "count"])
        text = alt.Chart(pd.DataFrame(cells)).mark_text().encode(x="predicted:N", y="true:N", text="count:Q")
        right.markdown("**Confusion matrix**")
        right.altair_chart(heat + text, width="stretch")
    elif "per_type" in row:
        st.dataframe(pd.DataFrame(row["per_type"]).T, width="stretch")

st.subheader("Serve a run")
if state.client() is None:
    st.caption("Set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY so promotion also pushes predictions to Label Studio.")
project_id = project["id"] if project is not None else st.number_input("Project id", 1, step=1)
succeeded = [r.run_id for r in reversed(runs) if r.status == "succeeded"]
c1, c2 = st.columns(2)
with c1:
    run_id = st.selectbox("Run to promote", succeeded) if succeeded else None
    if run_id:
        try:
            evidence = state.service().gate_evidence(int(project_id), run_id)
        except LabelLoopError as e:
            evidence = None
            st.warning(f"The gate can't judge this run: {e}")
        if evidence is not None:
            st.markdown(f"**The gate** ({evidence.disagreements} of {evidence.frame} audit tasks where the two "
                        f"models disagree, {evidence.p_disagree:.1%}): {evidence.summary()}")
            st.dataframe(pd.DataFrame([
                {"": who, "model": name, "accuracy (audit, stratified)": s.value, "95% low": s.low,
                 "95% high": s.high, "labels": s.n}
                for who, name, s in (("serving", evidence.champion_version, evidence.champion),
                                     ("this run", evidence.challenger_version, evidence.challenger))]),
                hide_index=True, width="stretch")
            (st.success if evidence.verdict in ("promote", "keep") else
             st.info if evidence.verdict == "hold" else st.warning)(evidence.reason)
        else:
            st.caption("Promote sends this run to the gate: the audit tasks where it and the serving model "
                       "disagree go to the front of the queue, and it serves once their labels show it is better.")
        force = st.checkbox("Promote even if the gate refuses (the override is recorded)")
    if run_id and st.button("Promote", type="primary"):
        try:
            with st.spinner("Loading the model and re-scoring the project's tasks..."):
                done_msg = workflows.promote_run(state.service(), registry, run_id, int(project_id),
                                               force=force).message()
            st.cache_data.clear()
            st.success(done_msg)
        except LabelLoopError as e:
            st.error(f"{e}")
with c2:
    current = state.service().current_record(int(project_id))
    st.metric("Backend serves", current.model_version if current else "untrained (zero-shot)")
    if st.button("Roll back to the previous version"):
        try:
            with st.spinner("Re-scoring the project's tasks..."):
                done_msg = workflows.rollback_project(state.service(), int(project_id)).message()
            st.cache_data.clear()
            st.success(done_msg)
        except LabelLoopError as e:
            st.error(f"{e}")
