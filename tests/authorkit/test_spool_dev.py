"""Real clustrix jobs through the example plugin, in the development environment (the plugin is
registered for the test, its commands are wrappers around the repository's spool.py). The full
conformance suite runs in a fresh virtual environment: test_venv.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clustrix_core.errors import ConfigError, JobFailedError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.scheduler import JobState


def test_map_splits_into_several_arrays(spool_profile: Callable[..., Path]) -> None:
    spool_profile(max_array_size=2)
    ex = ClusterExecutor("spool")
    try:
        futures = ex.map_futures(lambda x: x + 1, range(10), chunksize=2)
        assert [f.result(timeout=60) for f in futures] == list(range(1, 11))
        subs = futures[0].job.submissions
        assert [(s.first, s.count) for s in subs] == [(0, 2), (2, 2), (4, 1)]
        assert len({s.native_id for s in subs}) == 3
    finally:
        ex.shutdown(wait=False)


def test_time_limit_becomes_a_timeout_job_failure(spool_profile: Callable[..., Path]) -> None:
    spool_profile(time=1)
    ex = ClusterExecutor("spool")

    def slow() -> None:
        import time

        time.sleep(30)

    try:
        with pytest.raises(JobFailedError, match="TIMEOUT") as info:
            ex.submit(slow).result(timeout=60)
        assert info.value.state == str(JobState.TIMEOUT)
    finally:
        ex.shutdown(wait=False)


def test_gpus_are_refused_before_submission(spool_profile: Callable[..., Path]) -> None:
    spool_profile()
    with pytest.raises(ConfigError, match="gpus"):
        ClusterExecutor("spool", gpus=1)
