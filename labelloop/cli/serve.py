"""Commands that run servers: the backend, the demo, the dashboard and the playground."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from labelloop.cli.common import LOOPBACK, env_settings
from labelloop.errors import LabelLoopError
from labelloop.settings import forwarded


def cmd_backend(args: argparse.Namespace) -> None:
    import uvicorn

    from labelloop.backend.app import create_app

    settings = env_settings()
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.basic_auth:
        logging.getLogger("labelloop").warning(
            "binding %s without basic auth: anyone who can reach this port can read predictions. Set "
            "LABELLOOP_BASIC_AUTH_USER and LABELLOOP_BASIC_AUTH_PASS.", args.host)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                limit_concurrency=settings.max_connections, **forwarded(settings))


def cmd_demo(args: argparse.Namespace) -> None:
    from labelloop.demo import demo_env, run_demo

    if args.env:
        print(demo_env(env_settings()))
        return
    run_demo(env_settings(), ls_port=args.port, backend_port=args.backend_port, dashboard_port=args.dashboard_port,
             wait=not args.no_wait)


def _ui_users(args: argparse.Namespace):
    """Who may log in; ``--no-auth`` only for a local demo on loopback."""
    from labelloop.auth import Users

    if args.no_auth:
        if args.host not in LOOPBACK:
            raise LabelLoopError("--no-auth is for a local demo: bind 127.0.0.1, or configure a login to serve "
                                 f"{args.host}")
        os.environ["LABELLOOP_DASHBOARD_NO_AUTH"] = "1"
    else:
        os.environ.pop("LABELLOOP_DASHBOARD_NO_AUTH", None)
    return Users.from_env()


def cmd_dashboard(args: argparse.Namespace) -> None:
    from pathlib import Path

    import labelloop.dashboard

    _ui_users(args)  # a missing or broken login configuration fails here, before the server starts
    app = Path(labelloop.dashboard.__file__).parent / "app.py"
    print(f"LabelLoop dashboard on http://{args.host}:{args.port}", flush=True)
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.host,
               "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"]
    # Become the Streamlit server, so that stopping this process (Ctrl-C, SIGTERM from the demo) stops it.
    os.execv(sys.executable, command)


def cmd_playground(args: argparse.Namespace) -> None:
    from labelloop.dashboard.playground import launch

    users = _ui_users(args)
    print(f"LabelLoop playground on http://{args.host}:{args.port}", flush=True)
    launch(env_settings(), users, host=args.host, port=args.port)


def cmd_hash_password(args: argparse.Namespace) -> None:
    import getpass

    from labelloop.auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if not args.stdin and getpass.getpass("Again: ") != password:
        raise LabelLoopError("the two passwords differ")
    print(hash_password(password))
