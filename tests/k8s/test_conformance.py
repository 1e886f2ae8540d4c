"""The shared scheduler conformance suite on the ``k8s`` profile (the API server emulator)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.executor import ClusterExecutor
from clustrix_core.testing.conformance import TIMEOUT, SchedulerConformance
from tests.conftest import cluster_config


class TestK8sConformance(SchedulerConformance):
    profile = "k8s"

    @pytest.fixture(scope="class")
    @classmethod
    def cluster_config(cls) -> Path:
        return cluster_config("k8s")

    def test_one_status_query_per_poll(self, executor: ClusterExecutor) -> None:
        """The suite's version counts commands run through the transport; a k8s poll runs none
        but calls the API server. The same property, counted as API calls: a poll of four busy
        jobs makes one Job list by label, plus one Pod list by label every few seconds (or when
        a job shows a failure): never more than two, whatever the number of jobs."""

        def nap(x: float) -> float:
            time.sleep(x)
            return x

        sched = executor.monitor.scheduler
        client = sched.api.client  # type: ignore[attr-defined]
        counts: list[tuple[int, int, int]] = []
        original_status, original_call = sched.statuses, client.call_api
        local = {"calls": 0, "thread": 0}

        def counting_call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == local["thread"]:
                local["calls"] += 1
            return original_call(*args, **kwargs)

        def counting_statuses(subs: Any) -> Any:
            local["calls"], local["thread"] = 0, threading.get_ident()
            result = original_status(subs)
            finals = sum(1 for s in result.values() if s.state.final)
            counts.append((len(subs), local["calls"], finals))
            return result

        client.call_api = counting_call
        sched.statuses = counting_statuses  # type: ignore[method-assign]
        try:
            futures = [executor.submit(nap, 1.5) for _ in range(4)]
            for f in futures:
                assert f.result(timeout=TIMEOUT) == 1.5
        finally:
            del client.call_api
            del sched.statuses
        busy = [c for c in counts if c[0] == 4 and c[2] == 0]
        assert busy, counts
        assert all(1 <= calls <= 2 for _, calls, _ in counts), counts
        assert any(calls == 1 for _, calls, _ in busy), counts
