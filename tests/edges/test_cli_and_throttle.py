"""Issue 12 item 8 (part): ``max_parallel`` honoured on ``local`` when ``chunksize`` makes more
tasks than it; ``clustrix --version``; every sub-option has help text."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import clustrix_core
from clustrix_core import ClusterExecutor
from clustrix_core.cli import build_parser
from tests.edges import edgefuncs


def test_max_parallel_is_honoured_when_chunksize_makes_more_tasks(local: Path) -> None:
    ex = ClusterExecutor("local", max_parallel=2)
    windows = list(ex.map(edgefuncs.window, range(6), [1.0] * 6, chunksize=1, timeout=300))
    assert len(windows) == 6
    events = sorted([(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most <= 2, windows
    assert max(end for _, end in windows) - min(start for start, _ in windows) >= 2.9


def test_clustrix_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"clustrix {clustrix_core.__version__}"


def test_every_sub_option_has_help_text() -> None:
    parser = build_parser()
    missing = []
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = {name: p for action in subparsers for name, p in action.choices.items()}
    helps = {c.dest: c.help for action in subparsers for c in action._choices_actions}
    for name, sub in sorted(commands.items()):
        if not helps.get(name):
            missing.append(name)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    for action in parser._actions:
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            if not action.help:
                missing.append("/".join(action.option_strings))
    assert not missing, missing
    for name, sub in commands.items():
        text = sub.format_help()
        assert "==SUPPRESS==" not in text and "None" not in text.split("options:")[-1], name
