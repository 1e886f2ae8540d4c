"""Benchmark of the pbs backend against the real OpenPBS 23.06 test server
(tests/clusters/pbs/up; it is started when needed), compared with plain PBS commands.

    python bench/bench_pbs.py [--repeat 10] [--no-ssh] [--no-subjobs] [--torque]

Prints one table, measured in one run:

* one trivial call, submit to value in hand (median of ``--repeat`` runs with random gaps):
  the tight-loop floor (``qsub`` of a script equivalent to clustrix's, then
  ``qstat -f -F json -x ID`` every 0.05 s until ``job_state`` is ``F``), and clustrix (warm
  executor; profile ``pbs``, root through the local transport, and ``pbs-ssh``, ``pbsuser``
  through ssh);
* many calls: clustrix ``map`` of 100 and of 10,000 trivial calls sized by the node's CPUs (a
  few subjobs with many calls each), ``map`` of 100 with ``chunksize=1`` (100 subjobs of one
  ``qsub -J 0-99``), and 100 separate ``qsub`` of the floor script (until all are ``F``);
* with ``--torque``: one call and a map of 100 through the slurm-wlm-torque wrappers.

Other users' jobs on the shared server distort the figures: the script says when it saw any.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _table import cluster_config, once, print_table  # noqa: E402

PBS_BIN = "/opt/pbs/bin"


def trivial(x: object = None) -> object:
    return x


def median_with_gaps(
    fn: Callable[[], Any], runs: int, gap: float = 0.5
) -> tuple[float, float, float]:
    """(median, min, max) wall time of ``fn`` over ``runs`` runs, with random 0..gap s pauses."""
    times = []
    for _ in range(runs):
        time.sleep(random.uniform(0, gap))
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s"


def spread(stats: tuple[float, float, float]) -> str:
    return f"min {stats[1]:.2f}, max {stats[2]:.2f}"


# ------------------------------------------------------------------ plain PBS


def write_floor_script(job_dir: Path) -> Path:
    """A script equivalent to what clustrix submits: bash, one CPU, output files in a job
    directory, one Python start."""
    script = job_dir / "floor.sh"
    script.write_text(
        "#!/bin/bash\n#PBS -N floor\n#PBS -S /bin/bash\n#PBS -l select=1:ncpus=1\n"
        f"#PBS -o {job_dir}/pbs.out\n#PBS -e {job_dir}/pbs.err\n"
        f"cd {job_dir}\nexec {sys.executable} -c pass\n"
    )
    return script


def qsub(script: Path) -> str:
    return subprocess.run(
        [f"{PBS_BIN}/qsub", str(script)], check=True, capture_output=True, text=True
    ).stdout.strip()


def states(ids: list[str]) -> list[str]:
    """``job_state`` of each id (one ``qstat -f -F json -x`` per id: OpenPBS 23.06 lists only
    the first id of a JSON query)."""
    out = []
    for job in ids:
        text = subprocess.run(
            [f"{PBS_BIN}/qstat", "-f", "-F", "json", "-x", job], capture_output=True, text=True
        ).stdout
        try:
            jobs = json.loads(text).get("Jobs", {})
        except ValueError:
            jobs = {}
        record: dict[str, Any] = next(iter(jobs.values()), {})
        out.append(str(record.get("job_state", "?")))
    return out


def qsub_and_poll(script: Path) -> None:
    job = qsub(script)
    while states([job]) != ["F"]:
        time.sleep(0.05)


def qsub_many_and_poll(script: Path, count: int) -> None:
    jobs = [qsub(script) for _ in range(count)]
    while True:
        text = subprocess.run(
            [f"{PBS_BIN}/qstat", "-x", *jobs], capture_output=True, text=True
        ).stdout
        rows = [line.split() for line in text.splitlines()[2:] if line.strip()]
        if len(rows) == count and all(r[4] == "F" for r in rows if len(r) > 4):
            return
        time.sleep(0.05)


def others_jobs() -> list[str]:
    out = subprocess.run([f"{PBS_BIN}/qstat"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()[2:] if line.strip()]


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse_parser()
    args = parser.parse_args()
    os.environ["CLUSTRIX_CONFIG"] = cluster_config("pbs")
    from clustrix_core.executor import ClusterExecutor
    from clustrix_core.scheduler import BatchScheduler

    busy = others_jobs()
    if busy:
        print(
            f"note: {len(busy)} other job(s) on the server at the start; figures may be slower",
            file=sys.stderr,
        )
    rows: list[tuple[str, str, str]] = []
    base = Path(
        tempfile.mkdtemp(prefix="bench-pbs-", dir=os.environ.get("CLUSTRIX_BENCH_DIR", "/tmp"))
    )
    script = write_floor_script(base)

    ex = ClusterExecutor("pbs")
    sched = ex.backend.scheduler
    assert isinstance(sched, BatchScheduler)
    print(
        f"parallelism {sched.parallelism()}, max_array_size {sched.max_array_size()}",
        file=sys.stderr,
    )

    # ---- one call
    floor = median_with_gaps(lambda: qsub_and_poll(script), args.repeat)
    rows.append(
        (
            "one call: tight-loop floor (qsub + qstat -f -F json -x every 0.05 s)",
            fmt(floor[0]),
            f"median of {args.repeat}; {spread(floor)}",
        )
    )
    ex.submit(trivial, 0).result(120)  # warm: remote interpreter probed, plugin loaded
    local = median_with_gaps(lambda: ex.submit(trivial, 1).result(120), args.repeat)
    rows.append(
        (
            "one call: clustrix pbs (root, local transport)",
            fmt(local[0]),
            f"median of {args.repeat}; {local[0] / floor[0]:.2f}x the floor; {spread(local)}",
        )
    )
    if not args.no_ssh:
        with ClusterExecutor("pbs-ssh") as ex_ssh:
            ex_ssh.submit(trivial, 0).result(120)
            remote = median_with_gaps(lambda: ex_ssh.submit(trivial, 1).result(120), args.repeat)
        rows.append(
            (
                "one call: clustrix pbs-ssh (pbsuser, ssh transport)",
                fmt(remote[0]),
                f"median of {args.repeat}; {remote[0] / floor[0]:.2f}x the floor; {spread(remote)}",
            )
        )

    # ---- many calls
    hundred = list(range(100))

    def timed_map(items: list[int], **kw: Any) -> tuple[float, str]:
        futures: list[Any] = []

        def go() -> None:
            futures.extend(ex.map_futures(trivial, items, **kw))
            assert [f.result(timeout=3600) for f in futures] == items

        t = once(go)
        job = futures[0].job
        return t, f"{job.record.ntasks} subjobs in {len(job.submissions)} qsub"

    t, note = timed_map(hundred)
    rows.append(("map of 100 calls: clustrix (sized by the CPUs)", fmt(t), note))
    if not args.no_subjobs:
        t, note = timed_map(hundred, chunksize=1)
        rows.append(("map of 100 calls: clustrix, chunksize=1", fmt(t), note))
    t_many = once(lambda: qsub_many_and_poll(script, 100))
    rows.append(("100 separate qsub (floor script)", fmt(t_many), "until all are F"))
    t, note = timed_map(list(range(10_000)))
    rows.append(("map of 10,000 calls: clustrix (sized by the CPUs)", fmt(t), note))
    if args.subjobs_10k:
        t, note = timed_map(list(range(10_000)), chunksize=100)
        rows.append(("map of 10,000 calls: clustrix, chunksize=100", fmt(t), note))
    ex.shutdown()

    if args.torque:
        with ClusterExecutor("torque") as ex_t:
            ex_t.submit(trivial, 0).result(120)
            one = median_with_gaps(lambda: ex_t.submit(trivial, 1).result(120), args.repeat)
            rows.append(("one call: clustrix torque (slurm-wlm-torque)", fmt(one[0]), spread(one)))
            t = once(lambda: list(ex_t.map(trivial, hundred)))
            rows.append(("map of 100 calls: clustrix torque", fmt(t), "one job per task"))

    version = subprocess.run(
        [f"{PBS_BIN}/qstat", "--version"], capture_output=True, text=True
    ).stdout.strip()
    print_table(f"OpenPBS ({version}), {os.cpu_count()} CPUs, one node", rows)


def argparse_parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10, help="runs per one-call median")
    parser.add_argument("--no-ssh", action="store_true", help="skip the profile pbs-ssh")
    parser.add_argument(
        "--no-subjobs", action="store_true", help="skip the map of 100 with chunksize=1"
    )
    parser.add_argument(
        "--subjobs-10k", action="store_true", help="also a map of 10,000 with chunksize=100"
    )
    parser.add_argument("--torque", action="store_true", help="also the torque profile")
    return parser


if __name__ == "__main__":
    main()
