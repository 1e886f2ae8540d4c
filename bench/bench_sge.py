"""Benchmark of the sge backend against the real Son of Grid Engine test cluster
(tests/clusters/sge/up; it is started when needed).

    python bench/bench_sge.py [--repeat 10] [--no-ssh]

Prints one table, measured in one run:

* the floors, with a job script equivalent to clustrix's (bash, ``-S /bin/bash``, the queue, ``-wd``,
  ``-o``/``-e`` into a job directory, ``exec python -c pass``): ``qsub -sync y`` (qsub waits for
  the job itself), and ``qsub -terse`` followed by a tight ``qstat`` loop until the job left the
  queue;
* clustrix: one trivial call's round trip (warm executor; median), over the local transport and
  over ssh; ``map`` of 100 and of 10,000 trivial calls (one array job each, sized by the queue's
  slots).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _table import cluster_config, median_time, once, print_table  # noqa: E402


def trivial(x: object = None) -> object:
    return x


def write_floor_script(job_dir: Path, queue: str) -> Path:
    script = job_dir / "floor.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#$ -N floor\n#$ -S /bin/bash\n"
        f"#$ -wd {job_dir}\n#$ -o {job_dir}/sge.out\n#$ -e {job_dir}/sge.err\n#$ -q {queue}\n"
        f"exec {sys.executable} -c pass\n"
    )
    return script


def qsub_sync(script: Path) -> None:
    subprocess.run(["qsub", "-sync", "y", str(script)], check=True, capture_output=True)


def qsub_and_poll(script: Path) -> None:
    job = subprocess.run(
        ["qsub", "-terse", str(script)], check=True, capture_output=True, text=True
    ).stdout.strip()
    while True:
        listed = subprocess.run(["qstat"], capture_output=True, text=True).stdout
        if not any(line.split()[:1] == [job] for line in listed.splitlines()):
            return


def qsub_many_and_poll(script: Path, count: int) -> None:
    jobs = {
        subprocess.run(
            ["qsub", "-terse", str(script)], check=True, capture_output=True, text=True
        ).stdout.strip()
        for _ in range(count)
    }
    while True:
        listed = subprocess.run(["qstat"], capture_output=True, text=True).stdout
        if not jobs & {line.split()[0] for line in listed.splitlines() if line.strip()}:
            return


def measure(
    name: str, n: int, floor: float, rows: list[tuple[str, str, str]], *, maps: bool
) -> int:
    """clustrix rows for profile ``name``; returns the queue's slots (what ``map`` sizes by)."""
    from clustrix_core import ClusterExecutor

    with ClusterExecutor(name) as ex:
        ex.submit(trivial, 0).result()  # warm up: probe the interpreter, connect
        call = median_time(lambda: ex.submit(trivial, 1).result(), n, gaps=True)
        rows.append(
            (
                f"clustrix: one trivial call ({name})",
                f"{call:.2f} s",
                f"median of {n}; {call / floor:.2f}x the lower floor",
            )
        )
        slots = ex.backend.scheduler.parallelism()
        if not maps:
            return slots
        m100 = once(lambda: list(ex.map(trivial, range(100))))
        rows.append(
            (
                f"clustrix: map of 100 trivial calls ({name})",
                f"{m100:.2f} s",
                f"one array job of {min(100, slots)} tasks",
            )
        )
        m10k = once(lambda: list(ex.map(trivial, range(10_000))))
        rows.append(
            (
                f"clustrix: map of 10,000 trivial calls ({name})",
                f"{m10k:.2f} s",
                f"one array job of {slots} tasks",
            )
        )
        started = time.perf_counter()
        for f in [ex.submit(trivial, i) for i in range(30)]:
            f.result()
        rows.append(
            (
                f"clustrix: 30 separate submit() calls ({name})",
                f"{time.perf_counter() - started:.2f} s",
                f"30 jobs on {slots} slots",
            )
        )
        return slots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs per median (default 10)")
    parser.add_argument("--no-ssh", action="store_true", help="skip the sge-ssh rows")
    args = parser.parse_args()

    from clustrix_core.config import load_profile

    os.environ["CLUSTRIX_CONFIG"] = cluster_config("sge")
    os.environ.setdefault("CLUSTRIX_STATE_DIR", tempfile.mkdtemp(prefix="clustrix-bench-"))
    profile = load_profile("sge")
    floor_dir = Path(tempfile.mkdtemp(prefix="floor-", dir=profile.work_dir))
    script = write_floor_script(floor_dir, profile.queue or "all.q")
    n = args.repeat
    rows = []
    sync = median_time(lambda: qsub_sync(script), n)
    rows.append(("floor: qsub -sync y, equivalent script", f"{sync:.2f} s", f"median of {n}"))
    poll = median_time(lambda: qsub_and_poll(script), n)
    rows.append(("floor: qsub -terse + tight qstat loop", f"{poll:.2f} s", f"median of {n}"))
    floor = min(sync, poll)
    many = once(lambda: qsub_many_and_poll(script, 30))
    rows.append(("floor: 30 x qsub -terse, then qstat until all left", f"{many:.2f} s", "once"))
    slots = 0
    for name in ["sge"] + ([] if args.no_ssh else ["sge-ssh"]):
        slots = measure(name, n, floor, rows, maps=name == "sge") or slots
    print_table(
        f"clustrix sge benchmarks (Son of Grid Engine 8.1.9, {os.cpu_count()} CPUs, "
        f"queue {profile.queue} with {slots} slots)",
        rows,
    )


if __name__ == "__main__":
    main()
