"""Issue 12 item 7: progress that moves. A long ``map`` reports progress per call (the runner
counts finished calls in ``progress.N``; the monitor reads it once per poll), not per task: a
2,000-call map on 2 tasks moves while it runs; ``running=`` counts the tasks that really run;
the bar (``tqdm.auto``, so a notebook gets its widget) is closed before ``map`` returns; the log
line stays for non-interactive use. Real jobs on the ``local`` backend; the bar is a stand-in
for tqdm that records what it was shown."""

from __future__ import annotations

import logging
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import cluster, progress
from tests.edges import streamfuncs


class Bar:
    """Records what clustrix shows on a tqdm bar."""

    made: list[Bar] = []

    def __init__(self, *, total: int, desc: str, unit: str, leave: bool) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self.postfix: dict[str, Any] = {}
        self.shown: list[tuple[float, int, dict[str, Any]]] = []
        self.closed_at: float | None = None
        Bar.made.append(self)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = values

    def refresh(self) -> None:
        assert self.closed_at is None, "drawn after it was closed"
        self.shown.append((time.monotonic(), self.n, dict(self.postfix)))

    def clear(self) -> None:
        pass

    def close(self) -> None:
        self.closed_at = time.monotonic()


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[Bar]:
    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = Bar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    monkeypatch.setattr(progress, "interactive", lambda: True)
    Bar.made = []
    return Bar.made


def test_a_long_map_moves_per_call_and_closes_its_bar_before_returning(
    local: Path, bars: list[Bar], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clustrix_core.progress")
    tick = cluster(streamfuncs.tick, profile="local", python=sys.executable)
    values = tick.map(range(2000), chunksize=1000)
    returned = time.monotonic()
    assert values == [x * x for x in range(2000)]
    (bar,) = bars
    assert bar.total == 2000 and bar.desc == "tick map"
    assert bar.closed_at is not None and bar.closed_at <= returned
    counts = [n for _, n, _ in bar.shown]
    assert counts == sorted(counts) and counts[-1] <= 2000
    # per task, a 2-task map could only show 0, 1000 and 2000
    between = sorted({n for n in counts if n not in (0, 1000, 2000)})
    assert len(between) >= 5, counts
    # it moved within a poll interval (poll_max = 2 s) while calls finished
    moving = [(t, n) for t, n, _ in bar.shown if 0 < n < 2000]
    gaps = [b[0] - a[0] for a, b in zip(moving, moving[1:])]
    assert max(gaps, default=0) < 2.5, gaps
    # both tasks really ran at once
    assert max(p.get("running", 0) for _, _, p in bar.shown) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "clustrix_core.progress"]
    assert lines and lines[-1].startswith("tick map: 2000/2000 calls done (0 failed)"), lines


def test_running_counts_only_the_tasks_that_run(local: Path, bars: list[Bar]) -> None:
    """``max_parallel = 1``: the second task waits; ``running`` never says 2."""
    tick = cluster(streamfuncs.tick, profile="local", python=sys.executable, max_parallel=1)
    assert tick.map(range(600), chunksize=300) == [x * x for x in range(600)]
    (bar,) = bars
    running = {p.get("running") for _, _, p in bar.shown if p}
    assert running <= {0, 1}, running
    assert any(p.get("pending") == 1 and p.get("running") == 1 for _, _, p in bar.shown)
