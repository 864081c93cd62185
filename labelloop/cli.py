"""The ``labelloop`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from labelloop.errors import LabelLoopError


def _settings():
    from labelloop.settings import LabelLoopSettings

    return LabelLoopSettings()


def cmd_backend(args: argparse.Namespace) -> None:
    import uvicorn

    from labelloop.backend.app import create_app

    settings = _settings()
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.basic_auth:
        logging.getLogger("labelloop").warning(
            "binding %s without basic auth: anyone who can reach this port can read predictions. Set "
            "LABELLOOP_BASIC_AUTH_USER and LABELLOOP_BASIC_AUTH_PASS.", args.host)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


def cmd_demo(args: argparse.Namespace) -> None:
    from labelloop.demo import run_demo

    run_demo(_settings(), ls_port=args.port, backend_port=args.backend_port, wait=not args.no_wait)


def _client(args: argparse.Namespace):
    from labelloop.lsclient import make_client

    key = os.environ.get("LABEL_STUDIO_API_KEY")
    if not args.url or not key:
        raise LabelLoopError("Set LABEL_STUDIO_URL (or --url) and LABEL_STUDIO_API_KEY.")
    return make_client(args.url, key)


def _basic_auth() -> tuple[str, str] | None:
    return _settings().basic_auth


def cmd_connect(args: argparse.Namespace) -> None:
    from labelloop.sync import connect_backend

    backend = connect_backend(_client(args), args.project, args.backend, title=args.title, basic_auth=_basic_auth())
    print(f"connected ML backend {backend.id} ({args.backend}) to project {args.project}")


def cmd_preannotate(args: argparse.Namespace) -> None:
    from labelloop.sync import preannotate

    version = preannotate(_client(args), args.project, args.backend, basic_auth=_basic_auth())
    print(f"project {args.project}: predictions of {version} stored; model_version set")


def cmd_al_simulate(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from labelloop.al import SimulationConfig, embed_cached, plot, read_jsonl, simulate
    from labelloop.encoder import load_encoder
    from labelloop.models import ChoicesModel
    from labelloop.schema import ControlSpec

    settings = _settings()
    config = SimulationConfig(strategies=tuple(args.strategy.split(",")), seed_size=args.seed_size, batch=args.batch,
                              rounds=args.rounds, repeats=args.repeats, test_fraction=args.test_fraction,
                              seed=args.seed)
    texts, labels = read_jsonl(Path(args.data))
    names = tuple(sorted(set(labels)))
    encoder = load_encoder(settings.model, max_length=settings.max_length, batch_size=settings.batch_size)
    with tqdm(total=len(texts), desc="embedding", unit="text", file=sys.stderr) as bar:
        x = embed_cached(encoder, texts, settings.home / "cache", bar.update)
    y = np.asarray([names.index(label) for label in labels])
    prior = ChoicesModel.zero_shot(encoder, ControlSpec("choices", "label", "text", "text", names))
    steps = config.repeats * len(config.all_strategies) * (config.rounds + 1)
    with tqdm(total=steps, desc="simulating", unit="fit", file=sys.stderr) as bar:
        result = simulate(x, y, prior, config, bar.update)
    result["data"] = {"path": str(args.data), "n": len(texts), "labels": list(names)}
    if args.plot:
        plot(result, Path(args.plot), title=Path(args.data).name)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(texts)} texts, {len(names)} labels; full-pool accuracy {result['full_pool_accuracy']:.3f}")
    print(f"{'strategy':<22}{'AUC':>8}{'labels to 95%':>16}{'final acc':>12}")
    for name, s in result["strategies"].items():
        to95 = s["labels_to_95"] if s["labels_to_95"] is not None else "not reached"
        print(f"{name:<22}{s['auc']:>8.3f}{to95!s:>16}{s['curve'][-1][1]:>12.3f}")


def cmd_queue(args: argparse.Namespace) -> None:
    from labelloop.sync import setup_uncertainty_queue

    view = setup_uncertainty_queue(_client(args), args.project)
    print(f"project {args.project}: Uncertainty sampling on; Data Manager tab {view.id} lists unlabeled tasks, "
          "least confident first")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelloop", description="Label Studio pre-annotation and active learning.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backend", help="run the ML backend server Label Studio connects to")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9090)
    p.set_defaults(func=cmd_backend)

    p = sub.add_parser("demo", help="local Label Studio + demo project + connected backend")
    p.add_argument("--port", type=int, default=8080, help="Label Studio port")
    p.add_argument("--backend-port", type=int, default=9090)
    p.add_argument("--no-wait", action="store_true", help="set everything up, then stop it all and exit")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("al", help="active learning tools")
    al = p.add_subparsers(dest="al_command", required=True)
    p = al.add_parser("simulate", help="replay labeling on labeled JSONL and compare strategies with random")
    p.add_argument("--data", required=True, help='JSONL with {"text": ..., "label": ...} per line')
    p.add_argument("--strategy", default="margin",
                   help="comma-separated: margin, entropy, least_confidence, random; add +cluster for diversity")
    p.add_argument("--seed-size", type=int, default=25)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--plot", help="write the learning curves to this PNG")
    p.set_defaults(func=cmd_al_simulate)

    for name, func, text in [("connect", cmd_connect, "connect the backend to a project"),
                             ("preannotate", cmd_preannotate, "store backend predictions for every task, in bulk"),
                             ("queue", cmd_queue, "serve the least confident task first (sampling + a saved tab)")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("--url", default=os.environ.get("LABEL_STUDIO_URL"), help="Label Studio URL")
        p.add_argument("--project", type=int, required=True)
        p.add_argument("--backend", default="http://127.0.0.1:9090", help="backend URL as Label Studio reaches it")
        if name == "connect":
            p.add_argument("--title", default="LabelLoop")
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Tokens travel in request headers: keep HTTP client logs quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        args.func(args)
    except LabelLoopError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
