"""Benchmark of the k8s backend against the Kubernetes API server emulator
(tests/clusters/k8s/up; it is started when needed), compared with the raw API on the same
server: ``create Job`` + poll through the official client.

    python bench/bench_k8s.py [--repeat 10] [--map 1000]

Prints one table, measured in one run:

* one trivial call, submit to value in hand (median of ``--repeat`` runs): clustrix (warm
  executor: the image's Python already known) against the raw floor, which creates a Job
  running ``python -c 'print(1)'``, reads it every 0.05 s until it is complete, reads its pod's
  log and deletes it (foreground);
* a map of ``--map`` (1,000) trivial calls: clustrix ``map`` as planned by default (one
  Indexed Job of ``parallelism()`` tasks, many calls each) and with ``chunksize=1`` (one pod
  per call), against one raw Indexed Job of as many completions (parallelism 16) polled until
  complete.

Pods are local processes here (the emulator's kubelet; at most 16 at once), not containers:
the figures measure clustrix's API traffic and bookkeeping, not a real cluster's pod start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _table import cluster_config, once, print_table  # noqa: E402


def trivial(x: object = None) -> object:
    return x


def median(fn: Any, runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


class Raw:
    """The raw API through the official client: create a Job, poll it, read the log."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.ns = namespace

    def job(self, completions: int, command: list[str]) -> str:
        name = f"bench-raw-{secrets.token_hex(4)}"
        spec: dict[str, Any] = {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": "bench-raw"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "python:3.11-slim", "command": command}],
                },
            },
        }
        if completions > 1:
            spec.update(completionMode="Indexed", completions=completions, parallelism=16)
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": {"app": "bench-raw"}},
            "spec": spec,
        }
        self.batch.create_namespaced_job(self.ns, body)
        return name

    def wait(self, name: str) -> None:
        while True:
            job = json.loads(
                self.batch.read_namespaced_job(name, self.ns, _preload_content=False).data
            )
            conds = {
                c["type"]
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("status") == "True"
            }
            if "Complete" in conds:
                return
            if "Failed" in conds:
                raise RuntimeError(f"raw Job {name} failed: {job['status']}")
            time.sleep(0.05)

    def log(self, name: str) -> str:
        pods = self.core.list_namespaced_pod(self.ns, label_selector=f"job-name={name}").items
        return str(self.core.read_namespaced_pod_log(pods[0].metadata.name, self.ns))

    def delete(self, name: str) -> None:
        self.batch.delete_namespaced_job(name, self.ns, propagation_policy="Foreground")

    def call(self) -> None:
        name = self.job(1, ["python", "-c", "print(1)"])
        self.wait(name)
        assert self.log(name).strip() == "1"
        self.delete(name)

    def indexed(self, completions: int) -> None:
        name = self.job(completions, ["python", "-c", "pass"])
        self.wait(name)
        self.delete(name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10, help="runs of the one-call timings")
    parser.add_argument("--map", type=int, default=1000, help="calls in the map (1000)")
    parser.add_argument(
        "--no-chunksize-1", action="store_true", help="skip the one-pod-per-call map"
    )
    args = parser.parse_args()

    config = cluster_config("k8s")
    os.environ["CLUSTRIX_CONFIG"] = config
    import tomllib

    with open(config, "rb") as f:
        profile = tomllib.load(f)["profiles"]["k8s"]
    from clustrix_core.executor import ClusterExecutor

    raw = Raw(profile["kubeconfig"], profile["namespace"])
    ex = ClusterExecutor("k8s")
    assert ex.submit(trivial, 1).result(timeout=300) == 1  # warm: the probe pod, the monitor
    raw.call()

    rows: list[tuple[str, str, str]] = []
    c_med, c_min, c_max = median(lambda: ex.submit(trivial, 1).result(timeout=300), args.repeat)
    r_med, r_min, r_max = median(raw.call, args.repeat)
    rows.append(
        (
            "one call: raw create Job + poll + log",
            f"{r_med:.2f} s",
            f"min {r_min:.2f}, max {r_max:.2f}",
        )
    )
    rows.append(
        (
            "one call: clustrix (warm executor)",
            f"{c_med:.2f} s",
            f"min {c_min:.2f}, max {c_max:.2f}; Secret + Job + polls + log + cleanup",
        )
    )
    n = args.map
    items = list(range(n))
    raw_map = once(lambda: raw.indexed(n))
    rows.append((f"map of {n}: raw Indexed Job, {n} pods", f"{raw_map:.2f} s", "parallelism 16"))
    results: list[Any] = []
    t = once(lambda: results.extend(ex.map(trivial, items, timeout=3600)))
    assert results == items
    ntasks = min(n, ex.backend.scheduler.parallelism())
    rows.append(
        (f"map of {n}: clustrix (default plan)", f"{t:.2f} s", f"one Indexed Job of {ntasks} tasks")
    )
    if not args.no_chunksize_1:
        results.clear()
        t1 = once(lambda: results.extend(ex.map(trivial, items, chunksize=1, timeout=3600)))
        assert results == items
        rows.append(
            (f"map of {n}: clustrix chunksize=1", f"{t1:.2f} s", f"one Indexed Job of {n} pods")
        )
    ex.shutdown()
    print_table(
        f"clustrix-k8s on the API server emulator ({profile['kubeconfig']}), "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        rows,
    )


if __name__ == "__main__":
    main()
