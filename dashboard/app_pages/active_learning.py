"""Active learning: the ladder's rung serving the project and its decisions, the queue annotators get next,
the learning curve on the audit split."""

import time

import altair as alt
import pandas as pd
import streamlit as st

from labelloop import audit, workflows
from labelloop.dashboard import state
from labelloop.errors import LabelLoopError
from labelloop.pool.corpus import Pool
from labelloop.pool.jobs import cancel as cancel_scoring
from labelloop.pool.jobs import describe as describe_scoring
from labelloop.pool.jobs import status as pool_status
from labelloop.quality import insights
from labelloop.workflows.export import approved_records

st.title("Active learning")
state.require_client()
project = state.project()
control = state.control(project)
service = state.service()
home = state.settings().home
versions = service.version_records(project["id"])

settings = state.settings()
ladder = service.ladder_status(project["id"])
serving = service.current_record(project["id"])
c1, c2, c3, c4 = st.columns(4)
c1.metric("Serving rung", ladder["rung"])
c2.metric("Model version", ladder["model_version"],
          f"since {time.strftime('%Y-%m-%d %H:%M', time.localtime(ladder['since']))}" if ladder["since"] else None,
          delta_color="off")
c3.metric("Serving model learned from", f"{serving.n_annotations} labels" if serving else "-")
c4.metric("Audit tasks annotated", ladder["audit"],
          f"{ladder['serve_first']} served first for the gate" if ladder["serve_first"] else None, delta_color="off")
st.caption(f"Label Studio shows predictions of {project['model_version'] or 'none yet'}. Next fine-tune: "
           f"{ladder['next_finetune']}."
           + (f" Fine-tuning now: {', '.join(ladder['finetune_running'])}." if ladder["finetune_running"] else "")
           + (f" Judged at the gate: {', '.join(ladder['held'])}." if ladder["held"] else "")
           + f" On {ladder['frame']['line']}.")
for gate in ladder["gates"]:
    st.markdown(f"**The gate**: {gate['line']}")
    st.progress(min(1.0, gate["labels"] / gate["budget"]),
                text=f"{gate['labels']} of {gate['budget']} disagreement labels; evidence W = {gate['wealth']:.1f} of "
                     f"{1 / gate['alpha']:.0f}")
for name, scored in (serving.audit if serving else {}).items():
    n = scored.get("sentences", scored.get("tasks", 0))
    st.caption(f"**{name}** on the audit split: " + (audit.describe_scores(scored) if n >= settings.min_audit else
               f"needs {settings.min_audit} annotated audit tasks for a score (has {n})"))
decisions = service.decisions(project["id"])
if decisions:
    with st.expander(f"Ladder decisions ({len(decisions)})"):
        st.dataframe(pd.DataFrame([{
            "when": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.decided_at)), "action": d.action,
            "champion": d.champion, "challenger": d.challenger, "labels": d.evidence.get("labels"),
            "evidence W": d.evidence.get("wealth"), "accuracy gain": (d.evidence.get("delta") or {}).get("value"),
            "why": d.evidence.get("reason", "")} for d in reversed(decisions)]),
            hide_index=True, width="stretch")
if not versions:
    st.info("The backend has not trained for this project yet. Connect it (`labelloop connect`) and label a few "
            "tasks; it retrains after each annotation.")

pool = Pool(home, project["id"])
if pool.exists():
    st.subheader("Pool")
    info = pool.info()
    job = pool_status(pool)
    st.caption(f"{info.texts:,} texts beside Label Studio, from {info.source} (`labelloop pool ...`).")
    if job is None:
        st.info(f"Not scored yet: `labelloop pool score --project {project['id']}` (add `--engine ray` for Ray Data).")
    else:
        st.progress(min(1.0, job["scored"] / max(1, job["total"])), text=describe_scoring(job))
        if job["state"] == "running" and st.button("Cancel scoring") and cancel_scoring(pool):
            st.toast("The scoring job stops after its current batch; what it finished is kept.")

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
# The newest audit frame with enough labels: the current one, else an earlier one for the versions trained before
# its labels joined training.
tasks = state.tasks(project["id"])
frame, test, current_n = None, [], 0
for candidate in audit.stored_frames(home, project["id"], settings.audit_share, instance=settings.instance):
    _, labelled = approved_records(tasks, project["label_config"], home, project["id"],
                                   audit_share=settings.audit_share, frame=candidate)
    current_n = current_n or (len(labelled) if not isinstance(candidate, audit.PastFrame) else 0)
    if len(labelled) >= settings.min_audit:
        frame, test = candidate, labelled
        break
if frame is None:
    fresh = (" A fresh audit frame was drawn when the last challenger was settled, and the earlier frame's labels "
             "train now, so the curve is measured again on the new frame." if ladder["frame"]["round"] else "")
    st.info(f"The curve is measured on the audit split: random tasks placed in the queue like any other and never "
            f"trained on.{fresh} {current_n} of them are annotated; the curve appears at {settings.min_audit}, below "
            "which an accuracy's 95% interval is too wide to tell versions apart.")
else:
    if isinstance(frame, audit.PastFrame):
        st.caption(f"Measured on audit frame {frame.round}, whose labels joined training when its challenger was "
                   f"settled: only the versions trained before then are scored. The current frame has {current_n} of "
                   f"the {settings.min_audit} labels its own curve needs.")
    try:
        curve = workflows.learning_curve(service, project["id"], test, frame)
    except LabelLoopError as e:
        st.warning(f"{e}")
        curve = []
    if curve:
        df = pd.DataFrame(curve)
        base = alt.Chart(df).encode(x=alt.X("labels:Q", title="labels trained on"))
        band = base.mark_errorbar().encode(y=alt.Y("low:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
                                           y2="high:Q")
        line = base.mark_line(point=True).encode(
            y="accuracy:Q", tooltip=["model_version", "labels", alt.Tooltip("accuracy:Q", format=".3f"),
                                     alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f"),
                                     "n_test"])
        st.altair_chart(band + line, width="stretch")
        if any(r.get("weighted") for r in curve):
            st.caption(f"Accuracy on n={len(test)} annotated audit tasks, one point per model version, with 95% "
                       "intervals. The gate served its disagreements first, so they are weighted by their share of "
                       "the audit split, not by how many of them are labelled.")
        else:
            st.caption(f"Accuracy on n={len(test)} annotated audit tasks, one point per model version, with 95% "
                       "Wilson intervals.")
    else:
        st.caption("No single-choice control to measure accuracy on.")
