"""Progress of a long ``map``: a tqdm bar when tqdm is installed and stderr is a terminal, a log
line (logger ``clustrix_core.progress``, INFO) otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


class Progress:
    def __init__(
        self, label: str, ncalls: int, ntasks: int, *, enabled: bool | None = None
    ) -> None:
        self.label = label
        self.ncalls = ncalls
        self.ntasks = ntasks
        self.last: tuple[int, int, int, int] | None = None
        self.bar: Any = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=ncalls, desc=label, unit="call", leave=False)

    def update(self, *, done: int, failed: int, running: int, finished_tasks: int) -> None:
        """``done``/``failed``: calls; ``running``/``finished_tasks``: tasks."""
        pending = max(0, self.ntasks - finished_tasks - running)
        state = (done, failed, running, pending)
        if state == self.last:
            return
        self.last = state
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix(failed=failed, running=running, pending=pending, refresh=False)
            self.bar.refresh()
        logger.info(
            "%s: %d/%d calls done (%d failed), tasks: %d running, %d pending",
            self.label,
            done,
            self.ncalls,
            failed,
            running,
            pending,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
