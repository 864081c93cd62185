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

    for name, func, text in [("connect", cmd_connect, "connect the backend to a project"),
                             ("preannotate", cmd_preannotate, "store backend predictions for every task, in bulk")]:
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
