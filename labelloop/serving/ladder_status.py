"""Where a project's ladder stands, for the dashboard and ``labelloop ladder``: the serving rung and since when,
the next fine-tune, and one line per challenger being judged or promotion being watched, with its evidence."""

from __future__ import annotations

import time
from typing import Any

from labelloop.models import TransformerModel, TunedHead
from labelloop.serving.ladder import Ladder


def ladder_status(ladder: Ladder, project_id: int) -> dict[str, Any]:
    """``{"rung", "model_version", "since", "next_finetune", "finetune_running", "held", "audit", "frame",
    "gates"}``; ``gates`` has one line per challenger being judged (or promotion being watched) with its evidence,
    ``frame`` says which audit frame the project is on (``{"round", "drawn_at", "released", "line"}``)."""
    bundle = ladder.registry.current(project_id)
    record = ladder.registry.record(project_id, bundle.version)
    spec = ladder.schema(project_id).single_choice()
    model = bundle.model(spec) if spec is not None else None
    rung = ("zero-shot" if record is None else
            "fine-tuned encoder + head" if isinstance(model, (TunedHead, TransformerModel)) else "head")
    running = [f.run_id for f in ladder.store.finetunes(project_id) if not f.done
               and ladder.run_status(f) in ("queued", "running")]
    held = [f.run_id for f in ladder.store.finetunes(project_id) if not f.done and f.run_id not in running]
    why = ladder.next_due(project_id)
    gates = []
    if spec is not None:
        started = {f.run_id: f.labels for f in ladder.store.finetunes(project_id)}
        methods = {d.challenger: d.evidence.get("method") for d in ladder.store.decisions(project_id)
                   if d.action == "finetune"}
        for gate in ladder.store.gates(project_id, states=("open", "watch")):
            evidence = ladder.evidence(project_id, spec, gate)
            what = gate.promoted or gate.challenger
            frames = evidence.details["frames"]
            how = ", ".join(x for x in (methods.get(gate.run_id), f"{started.get(gate.run_id, 0)} labels",
                                        f"judged over {frames} audit frames" if frames > 1 else "") if x)
            line = (f"{'watching ' + what + ' against ' + gate.champion if gate.state == 'watch' else 'challenger ' + what} "
                    f"({how}): {evidence.summary()}")
            gates.append({"run": gate.run_id, "state": gate.state, "line": line, **evidence.to_dict()})
    rounds = ladder.store.audit_rounds(project_id)
    audit = len(ladder.annotations.audit_records(project_id))
    released = sum(r.released for r in rounds)
    if rounds:
        drawn = time.strftime("%Y-%m-%d %H:%M", time.localtime(rounds[-1].started_at))
        frame_line = (f"audit frame {rounds[-1].round}, drawn {drawn} once the challengers judged on the one before "
                      f"were settled or carried over: {released} labels of earlier frames train now, and "
                      f"{audit} of this frame's tasks are annotated")
    else:
        frame_line = f"audit frame 0: {audit} of its tasks are annotated"
    return {"rung": rung, "model_version": bundle.version, "since": record.created_at if record else None,
            "next_finetune": "now" if why is None else why, "finetune_running": running, "held": held,
            "audit": audit, "gates": gates, "serve_first": len(ladder.serve_first(project_id)),
            "frame": {"round": rounds[-1].round if rounds else 0, "drawn_at": rounds[-1].started_at if rounds else None,
                      "released": released, "line": frame_line}}
