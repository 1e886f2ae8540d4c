"""What the caller sees while waiting: the progress of a long ``map`` (a tqdm bar, ``tqdm.auto``
so a notebook gets its widget, when tqdm is installed and the session is interactive; a log line,
logger ``clustrix_core.progress`` at INFO, always) and a job's output streamed as it arrives."""

from __future__ import annotations

import codecs
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

logger = logging.getLogger(__name__)

LOG_EVERY = 5.0
"""Seconds between progress log lines while only the count of finished calls moves."""
_FRAME_BEGIN = "-----BEGIN CLUSTRIX OUTCOME "
_FRAME_END = "-----END CLUSTRIX OUTCOME-----"


def interactive() -> bool:
    """A terminal on stderr, or a Jupyter kernel."""
    try:
        if sys.stderr.isatty():
            return True
    except Exception:
        pass
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """Calls done (and failed) of ``ncalls``; tasks running and pending of ``ntasks``. Safe to
    update from the monitor thread and close from the caller's (closing is idempotent)."""

    def __init__(
        self, label: str, ncalls: int, ntasks: int, *, enabled: bool | None = None
    ) -> None:
        self.label = label
        self.ncalls = ncalls
        self.ntasks = ntasks
        self.last: tuple[int, int, int, int] | None = None
        self.bar: Any = None
        self.lock = threading.RLock()
        self._logged: tuple[int, int, int, int] | None = None
        self._logged_at = 0.0
        if enabled is None:
            enabled = interactive()
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=ncalls, desc=label, unit="call", leave=False)

    def update(self, *, done: int, failed: int, running: int, finished_tasks: int) -> bool:
        """``done``/``failed``: calls; ``running``/``finished_tasks``: tasks. Whether anything
        changed."""
        pending = max(0, self.ntasks - finished_tasks - running)
        state = (done, failed, running, pending)
        with self.lock:
            if state == self.last:
                return False
            self.last = state
            if self.bar is not None:
                self.bar.n = done
                self.bar.set_postfix(failed=failed, running=running, pending=pending, refresh=False)
                self.bar.refresh()
            # the log line (non-interactive use): when tasks start or end, at the end, and at
            # most every LOG_EVERY seconds while only the count of calls moves
            now = time.monotonic()
            tasks_moved = self._logged is None or self._logged[1:] != state[1:]
            if not (tasks_moved or done >= self.ncalls or now - self._logged_at >= LOG_EVERY):
                return True
            self._logged, self._logged_at = state, now
        logger.info(
            "%s: %d/%d calls done (%d failed), tasks: %d running, %d pending",
            self.label,
            done,
            self.ncalls,
            failed,
            running,
            pending,
        )
        return True

    def write(self, target: TextIO, text: str) -> None:
        """Write ``text`` without breaking the bar (cleared, then drawn again below it)."""
        with self.lock:
            if self.bar is not None:
                self.bar.clear()
            _write(target, text)
            if self.bar is not None:
                self.bar.refresh()

    def close(self) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None


def _write(target: TextIO, text: str) -> None:
    try:
        target.write(text)
        target.flush()
    except Exception:  # a closed or broken stream must never cost a result
        pass


class OutputStream:
    """A job's stdout and stderr relayed to the caller's ``sys.stdout``/``sys.stderr`` (the
    objects current when the job was submitted, so a notebook cell or a redirect gets them) line
    by line as they arrive, each line prefixed ``[JOB task N]`` when the job has several tasks.
    The executor feeds it the new bytes of each task it reads from the job store."""

    STREAMS = ("out", "err")

    def __init__(
        self,
        job_id: str,
        ntasks: int,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.job_id = job_id
        self.several = ntasks > 1
        self.targets = {"out": out or sys.stdout, "err": err or sys.stderr}
        self.progress = progress
        self.offsets: dict[tuple[str, int], int] = {}
        self.drained: set[int] = set()
        self.cursor = 0
        self._decoders: dict[tuple[str, int], Any] = {}
        self._partial: dict[tuple[str, int], str] = {}
        self._in_frame: set[tuple[str, int]] = set()
        self.lock = threading.Lock()

    def reads(self, tasks: Sequence[int]) -> list[tuple[str, int, int]]:
        """``(stream, task, offset)`` to read next for ``tasks``."""
        return [(s, t, self.offsets.get((s, t), 0)) for t in tasks for s in self.STREAMS]

    def pick(self, candidates: Sequence[int], most: int) -> list[int]:
        """At most ``most`` of ``candidates``, in turn (bounded work per poll)."""
        if len(candidates) <= most:
            return list(candidates)
        start = self.cursor % len(candidates)
        self.cursor = start + most
        return [candidates[(start + i) % len(candidates)] for i in range(most)]

    def feed(self, stream: str, task: int, data: bytes, *, final: bool = False) -> None:
        """New bytes of ``stream`` of ``task``; ``final``: the task has ended (flush its rest)."""
        with self.lock:
            key = (stream, task)
            self.offsets[key] = self.offsets.get(key, 0) + len(data)
            decoder = self._decoders.get(key)
            if decoder is None:
                decoder = self._decoders[key] = codecs.getincrementaldecoder("utf-8")("replace")
            text = self._partial.pop(key, "") + decoder.decode(data, final=final)
            lines = text.split("\n")
            rest = lines.pop()
            if final and rest:
                lines.append(rest)
            elif rest:
                self._partial[key] = rest
            shown = [line for line in lines if self._shown(key, line)]
            if not shown:
                return
            prefix = f"[{self.job_id} task {task}] " if self.several else ""
            text = "".join(f"{prefix}{line}\n" for line in shown)
        target = self.targets[stream]
        if self.progress is not None:
            self.progress.write(target, text)
        else:
            _write(target, text)

    def _shown(self, key: tuple[str, int], line: str) -> bool:
        """Hide the sealed outcome a runner with ``--output -`` writes after the prints."""
        if key in self._in_frame:
            if line.startswith(_FRAME_END):
                self._in_frame.discard(key)
            return False
        if line.startswith(_FRAME_BEGIN):
            self._in_frame.add(key)
            return False
        return True


__all__ = ["OutputStream", "Progress", "interactive"]
