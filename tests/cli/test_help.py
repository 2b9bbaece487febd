"""``--help`` works on every command and subcommand of ``lima`` (walked from the real parser)."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from limakit.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command path under ``parser``, the top level included: (), ("judge",), ..."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(build_parser()))


def test_the_walk_finds_nested_commands():
    assert ("judge", "likert") in COMMANDS and ("annotate", "import-labelstudio") in COMMANDS
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "lima")
def test_help_prints_usage_and_exits_0(path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        build_parser().parse_args([*path, "--help"])
    assert e.value.code == 0
    assert out.getvalue().startswith(f"usage: {' '.join(('lima', *path))} ")


def test_import_labelstudio_help_names_both_export_formats(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["annotate", "import-labelstudio", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "JSON (cancelled answers are counted under 'skipped') or JSON-MIN" in text
    assert "annotations__completed_by" in text  # where the annotators' emails come from
