"""What every command shares: the settings from the environment, the Label Studio client, the backend's login."""

from __future__ import annotations

import argparse


def env_settings():
    from labelloop.environment import load_settings

    return load_settings()


def studio(args: argparse.Namespace):
    from labelloop.environment import studio_client

    return studio_client(args.url)


def backend_auth() -> tuple[str, str] | None:
    return env_settings().basic_auth


LOOPBACK = ("127.0.0.1", "localhost", "::1")
