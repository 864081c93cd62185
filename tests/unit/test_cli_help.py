"""`labelloop --help` shows every capability, and every option's help names its default."""

import argparse

from labelloop.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


def test_top_level_help_names_every_command_and_the_nested_ones():
    parser = build_parser()
    text = parser.format_help()
    for name, _ in _subparsers(parser):
        if " " not in name:
            assert name in text
    for nested in ("al simulate", "llm template", "project create"):
        assert f"`{nested}`" in text


def test_every_option_with_a_default_names_it_in_its_help():
    parser = build_parser()
    commands = dict(_subparsers(parser))
    assert {"al simulate", "playground", "train", "export"} <= set(commands)
    for name, sub in commands.items():
        for action in sub._actions:
            if (action.option_strings and not action.required and action.default not in (None, False)
                    and action.default != argparse.SUPPRESS):
                help_text = " ".join((action.help or "").split())
                assert "default" in help_text, f"labelloop {name} {action.option_strings[0]}: no default in its help"
    assert "(default: 7860)" in commands["playground"].format_help()


def test_whichever_command_comes_first_leaves_nothing_other_users_can_read(tmp_path):
    """`runs`, `train`, `eval human`, `dashboard` or `demo` used to create the home 0755 and its files 0644."""
    import os
    import stat
    import subprocess
    import sys

    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "labelloop.cli", "runs"], env={**os.environ, "LABELLOOP_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    made = [home, *home.rglob("*")]
    assert len(made) > 1
    for path in made:
        assert not stat.S_IMODE(path.stat().st_mode) & 0o077, (path, oct(path.stat().st_mode))
