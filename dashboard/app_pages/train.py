"""Train: a form made from the run configuration, a run in its own process, live curves, logs, cancel."""

import time
from typing import Any

import pandas as pd
import streamlit as st

from labelloop import workflows
from labelloop.dashboard import state
from labelloop.errors import LabelLoopError
from labelloop.finetune.config import RunConfig
from labelloop.finetune.launch import cancel_run, start_run

st.title("Train")
registry = state.registry()
settings = state.settings()

with st.expander("Training data: export the project's approved labels", expanded=True):
    if state.client() is None:
        st.caption("Set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to export from Label Studio, or give JSONL paths.")
    else:
        project = state.project()
        if st.button(f"Export approved labels of #{project['id']}"):
            try:
                report = workflows.export_for_training(state.client(), project["id"], settings)
                st.session_state["cfg_train_file"] = report["train_file"]
                st.session_state["export_project"] = (report["train_file"], project["id"])
                # An empty test file would fail the run: without audit labels yet, the run trains unevaluated.
                st.session_state["cfg_test_file"] = report["test_file"] if report["exported"]["test"] else ""
                st.success(f"Exported {report['exported']['train']} train and {report['exported']['test']} test "
                           "records (the test split is the audit split; duplicate groups kept on one side).")
                split = report["test_split"]
                if not split["enough"]:
                    st.warning(f"The test split has only {split['n']} items; evaluations need {split['minimum']} "
                               "to mean anything, and the promotion gate refuses runs judged on fewer. It was not "
                               "frozen: annotate more tasks (a share of the queue is audit tasks) and export again.")
            except LabelLoopError as e:
                st.error(f"{e}")

defaults = RunConfig()
with st.form("run_config"):
    st.markdown("**Run configuration**")
    values: dict[str, Any] = {}
    columns = st.columns(3)
    options = [o for o in RunConfig.options() if o.name != "project"]  # the project comes with the export
    for i, o in enumerate(options):  # one widget per field, from its type hint and help text
        key, col, label = f"cfg_{o.name}", columns[i % 3], f"{o.label} ({o.name})"
        if o.choices:
            values[o.name] = col.selectbox(label, o.choices, index=o.choices.index(o.default), key=key, help=o.help)
        elif o.kind == "bool":
            values[o.name] = col.checkbox(label, value=o.default, key=key, help=o.help)
        elif o.kind == "int":
            values[o.name] = int(col.number_input(label, value=o.default, step=1, key=key, help=o.help))
        elif o.kind == "float":
            given = col.text_input(label, value="" if o.default is None else str(o.default), key=key, help=o.help)
            try:
                values[o.name] = float(given) if given.strip() else None
            except ValueError:
                values[o.name] = given  # refused with a message when the form is sent
        elif o.kind == "list":
            given = col.text_input(label, value="", key=key, help=o.help + " (comma-separated)")
            values[o.name] = [m.strip() for m in given.split(",") if m.strip()] or None
        else:
            values[o.name] = col.text_input(label, value=o.default, key=key, help=o.help)
    name = st.text_input("Run name (optional)", key="run_name")
    launch = st.form_submit_button("Launch run", type="primary")
if launch:
    try:
        exported_file, exported_project = st.session_state.get("export_project", (None, None))
        config = RunConfig.from_dict({**values, "project": exported_project if values.get("train_file") == exported_file
                                      else None})
        if not config.train_file:
            raise LabelLoopError("train_file is empty: export the project's approved labels above, or give a path")
        run = start_run(registry, config, name=name.strip() or None)
        st.session_state["watch_run"] = run.run_id
        st.success(f"Started run {run.run_id}. It trains in its own process: closing this page doesn't stop it.")
    except (LabelLoopError, ValueError) as e:
        st.error(f"Can't start the run: {e}")

runs = registry.list()
if runs:
    st.subheader("Watch a run")
    ids = [r.run_id for r in reversed(runs)]
    watched = st.session_state.get("watch_run")
    run_id = st.selectbox("Run", ids, index=ids.index(watched) if watched in ids else 0)

    @st.fragment(run_every=2)
    def monitor(run_id: str) -> None:
        run = registry.get(run_id)
        icon = {"queued": "⏳", "running": "🏃", "succeeded": "✅", "failed": "❌", "cancelled": "⏹"}[run.status]
        elapsed = (run.finished_at or time.time()) - run.created_at
        st.markdown(f"**Status:** {icon} `{run.status}` after {elapsed:.0f} s")
        if run.error:
            st.error(run.error)
        metrics = registry.metrics(run_id)
        losses = pd.DataFrame([m for m in metrics if "loss" in m])
        if not losses.empty:
            st.line_chart(losses.set_index("step")[["loss"]])
        report = registry.report(run_id)
        if report:
            st.dataframe(pd.DataFrame({k: {m: v for m, v in row.items() if isinstance(v, (int, float, str))}
                                       for k, row in report["rows"].items()}).T, width="stretch")
        with st.expander("Log"):
            st.code(registry.log_tail(run_id) or "(nothing yet)", language=None)
        if run.status in ("queued", "running") and st.button("Cancel run", key=f"cancel-{run_id}"):
            cancel_run(registry, run_id)
            st.toast("Cancelling: the run stops at its next step and keeps a checkpoint.")

    monitor(run_id)
