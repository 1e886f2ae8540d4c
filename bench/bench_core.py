"""Core benchmarks on the local backend: call round trip, payload encoding, import time.

python bench/bench_core.py        (or: nox -s bench -- core)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import median_time, once, print_table  # noqa: E402


def trivial(x):
    return x


def main() -> None:
    import cloudpickle
    import numpy as np

    from clustrix_core import ClusterExecutor
    from clustrix_core.serialization import (
        CloudpickleSerializer,
        RemoteInfo,
        decode_result,
        encode_payload,
        loads_value,
    )
    from clustrix_core.store import new_job_id

    os.environ.setdefault("CLUSTRIX_STATE_DIR", tempfile.mkdtemp(prefix="clustrix-bench-"))
    work = tempfile.mkdtemp(prefix="clustrix-bench-jobs-")
    rows = []
    python = sys.executable
    floor = median_time(lambda: subprocess.run([python, "-c", "pass"], check=True), 20)
    rows.append(
        ("floor: subprocess.run([python, '-c', 'pass'])", f"{floor * 1000:.1f} ms", "median of 20")
    )
    with ClusterExecutor("local", python=python, work_dir=work) as ex:
        ex.submit(trivial, 0).result()  # warm up: probe the interpreter once
        call = median_time(lambda: ex.submit(trivial, 1).result(), 20, gaps=True)
        rows.append(
            (
                "clustrix: one trivial call, local backend",
                f"{call * 1000:.1f} ms",
                f"median of 20; {call / floor:.2f}x the floor",
            )
        )
        m100 = once(lambda: list(ex.map(trivial, range(100))))
        rows.append(("clustrix: map of 100 trivial calls", f"{m100 * 1000:.0f} ms", "one job"))
        m10k = once(lambda: list(ex.map(trivial, range(10_000))))
        rows.append(("clustrix: map of 10,000 trivial calls", f"{m10k * 1000:.0f} ms", "one job"))

    array = np.random.default_rng(0).random(10 * 1024 * 1024 // 8)
    key = secrets.token_bytes(32)
    plain_dump = median_time(lambda: cloudpickle.dumps(((array,), {})), 10)
    blob = cloudpickle.dumps(((array,), {}))
    plain_load = median_time(lambda: cloudpickle.loads(blob), 10)
    info = RemoteInfo.local()
    strategies = [CloudpickleSerializer()]
    job_id = new_job_id()
    encode = median_time(
        lambda: encode_payload(
            trivial,
            [((array,), {})],
            [(0, 1)],
            job_id=job_id,
            key=key,
            remote=info,
            strategies=strategies,
        ),
        10,
    )
    import pickle

    from clustrix_core import runner

    payload = encode_payload(
        trivial,
        [((array,), {})],
        [(0, 1)],
        job_id=job_id,
        key=key,
        remote=info,
        strategies=strategies,
    )
    inputs = Path(tempfile.mkdtemp(prefix="clustrix-bench-inputs-"))
    for name, data in payload.files().items():
        (inputs / name).write_bytes(data)

    def decode() -> None:  # what the runner does: payload.bin, then the task's calls.N
        runner.load_job(str(inputs), key, 0)

    decode_t = median_time(decode, 10)
    report = {"task": 0, "outcomes": [{"ok": True, "value": pickle.dumps(array, 5)}]}
    result_blob = runner.seal(
        runner.RESULT_MAGIC, key, pickle.dumps(report, 5), runner.task_context(job_id, 0)
    )

    def collect() -> None:  # what the executor does with result.0
        outcome = decode_result(result_blob, key, job_id=job_id, task=0, ncalls=1)
        loads_value(outcome["outcomes"][0]["value"])

    verify = median_time(collect, 10)
    rows.append(
        ("cloudpickle.dumps, 10 MB numpy argument", f"{plain_dump * 1000:.1f} ms", "median of 10")
    )
    rows.append(
        (
            "clustrix payload encode (+HMAC), same argument",
            f"{encode * 1000:.1f} ms",
            f"{encode / plain_dump:.2f}x cloudpickle.dumps",
        )
    )
    rows.append(("cloudpickle.loads, same argument", f"{plain_load * 1000:.1f} ms", "median of 10"))
    rows.append(
        (
            "clustrix payload verify + decode (runner side)",
            f"{decode_t * 1000:.1f} ms",
            f"{decode_t / plain_load:.2f}x cloudpickle.loads",
        )
    )
    rows.append(
        ("clustrix result verify + unpickle, 10 MB", f"{verify * 1000:.1f} ms", "median of 10")
    )

    code = (
        "import time; t = time.perf_counter(); import clustrix_core; print(time.perf_counter() - t)"
    )
    imports = sorted(
        float(
            subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
        )
        for _ in range(10)
    )
    heavy = subprocess.run(
        [
            python,
            "-c",
            "import sys, clustrix_core; print(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('paramiko', 'kubernetes', 'pluggy', 'cloudpickle') "
            "or m.startswith('clustrix_') and not m.startswith('clustrix_core')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rows.append(
        (
            "import clustrix_core",
            f"{imports[5] * 1000:.1f} ms",
            f"median of 10; heavy modules loaded: {heavy}",
        )
    )
    print_table(
        f"clustrix core benchmarks (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)", rows
    )


if __name__ == "__main__":
    main()
