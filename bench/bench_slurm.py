"""Benchmark of the slurm backend against the real SLURM test cluster (tests/clusters/slurm/up;
it is started when needed), compared with plain SLURM commands and with submitit.

    python bench/bench_slurm.py [--repeat 20] [--no-submitit] [--no-ssh]

Prints one table, measured in one run:

* one trivial call, submit to value in hand (median of ``--repeat`` runs with random gaps):
  the tight-loop floor (``sbatch --parsable`` of a script equivalent to clustrix's, then
  ``squeue -h -j ID`` every 0.05 s until the job left the queue), ``sbatch --wait`` of the same
  script, clustrix (warm executor; local transport and over ssh) and submitit;
* many calls: clustrix ``map`` of 100 and of 10,000 trivial calls (sized by the partition: a
  few array tasks with many calls each), submitit ``map_array`` of 100 (one array task per
  call), and 100 separate ``sbatch`` of the trivial script (until all left the queue).

submitit (``pip install submitit``) is used by this benchmark only. Other users' jobs on the
shared test cluster distort the figures: the script says when it saw any.
"""

from __future__ import annotations

import argparse
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
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _table import cluster_config, once, print_table  # noqa: E402


def trivial(x: object = None) -> object:
    return x


def median_with_gaps(
    fn: Callable[[], Any], runs: int, gap: float = 0.5
) -> tuple[float, float, float]:
    """(median, min, max) wall time of ``fn`` over ``runs`` runs, with random 0..gap s pauses
    between them (so runs do not lock onto the scheduler's 1 s tick)."""
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


# ------------------------------------------------------------------ plain SLURM


def write_floor_script(job_dir: Path, partition: str) -> Path:
    """A script equivalent to what clustrix submits: bash, the partition, output files in a job
    directory, one Python start."""
    script = job_dir / "floor.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --job-name=floor\n"
        f"#SBATCH --chdir={job_dir}\n#SBATCH --output={job_dir}/out.%j\n#SBATCH --error={job_dir}/err.%j\n"
        f"#SBATCH --cpus-per-task=1\n#SBATCH --partition={partition}\n"
        f"exec {sys.executable} -c pass\n"
    )
    return script


def sbatch(script: Path) -> str:
    out = subprocess.run(
        ["sbatch", "--parsable", str(script)], check=True, capture_output=True, text=True
    ).stdout
    return out.strip().split(";")[0]


def sbatch_and_poll(script: Path) -> None:
    job = sbatch(script)
    while subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True
    ).stdout.strip():
        time.sleep(0.05)


def sbatch_wait(script: Path) -> None:
    subprocess.run(["sbatch", "--wait", "--parsable", str(script)], check=True, capture_output=True)


def sbatch_many_and_poll(script: Path, count: int) -> None:
    jobs = [sbatch(script) for _ in range(count)]
    ids = ",".join(jobs)
    while subprocess.run(
        ["squeue", "-h", "-j", ids, "-o", "%i"], capture_output=True, text=True
    ).stdout.strip():
        time.sleep(0.05)


def others_jobs() -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "PD,R,CG", "-o", "%i %j %T"], capture_output=True, text=True
    ).stdout
    return out.split("\n") if out.strip() else []


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeat", type=int, default=20, help="runs for each one-call median (default 20)"
    )
    parser.add_argument(
        "--wait-repeat", type=int, default=5, help="runs of sbatch --wait (default 5)"
    )
    parser.add_argument("--no-submitit", action="store_true", help="skip submitit")
    parser.add_argument("--no-ssh", action="store_true", help="skip the profile slurm-ssh")
    args = parser.parse_args()

    os.environ["CLUSTRIX_CONFIG"] = cluster_config("slurm")
    from clustrix_core.executor import ClusterExecutor

    busy = others_jobs()
    if busy:
        print(
            f"note: {len(busy)} other job(s) in the queue at the start; figures may be slower:\n  "
            + "\n  ".join(busy[:10]),
            file=sys.stderr,
        )

    rows: list[tuple[str, str, str]] = []
    base = Path(
        tempfile.mkdtemp(prefix="bench-slurm-", dir=os.environ.get("CLUSTRIX_BENCH_DIR", "/tmp"))
    )
    floor_dir = base / "floor"
    floor_dir.mkdir()

    ex = ClusterExecutor("slurm")
    sched = ex.backend.scheduler
    partition = sched.partition or "debug"
    script = write_floor_script(floor_dir, partition)
    print(
        f"partition {partition}: parallelism {sched.parallelism()}, MaxArraySize {sched.max_array_size()}",
        file=sys.stderr,
    )

    # ---- one call
    floor = median_with_gaps(lambda: sbatch_and_poll(script), args.repeat)
    rows.append(
        (
            "one call: tight-loop floor (sbatch --parsable + squeue every 0.05 s)",
            fmt(floor[0]),
            f"median of {args.repeat}; {spread(floor)}",
        )
    )
    waited = median_with_gaps(lambda: sbatch_wait(script), args.wait_repeat)
    rows.append(
        (
            "one call: sbatch --wait",
            fmt(waited[0]),
            f"median of {args.wait_repeat}; {spread(waited)}",
        )
    )

    ex.submit(trivial, 0).result(120)  # warm: remote interpreter probed, plugin loaded
    local = median_with_gaps(lambda: ex.submit(trivial, 1).result(120), args.repeat)
    rows.append(
        (
            "one call: clustrix, local transport",
            fmt(local[0]),
            f"median of {args.repeat}; {local[0] / floor[0]:.2f}x the floor; {spread(local)}",
        )
    )
    if not args.no_ssh:
        ex_ssh = ClusterExecutor("slurm-ssh")
        ex_ssh.submit(trivial, 0).result(120)
        remote = median_with_gaps(lambda: ex_ssh.submit(trivial, 1).result(120), args.repeat)
        rows.append(
            (
                "one call: clustrix, ssh transport",
                fmt(remote[0]),
                f"median of {args.repeat}; {remote[0] / floor[0]:.2f}x the floor; {spread(remote)}",
            )
        )
        ex_ssh.shutdown()

    submitit_ex = None
    if not args.no_submitit:
        import submitit

        submitit_ex = submitit.SlurmExecutor(folder=str(base / "submitit"))
        submitit_ex.update_parameters(partition=partition, time=30)
        submitit_ex.submit(trivial, 0).result()
        sub1 = median_with_gaps(
            lambda: submitit_ex.submit(trivial, 1).result(), max(5, args.repeat // 2)
        )
        rows.append(
            (
                f"one call: submitit {submitit.__version__}",
                fmt(sub1[0]),
                f"median of {max(5, args.repeat // 2)}; {spread(sub1)}",
            )
        )

    # ---- many calls
    hundred = list(range(100))
    t = once(lambda: list(ex.map(trivial, hundred)))
    job = ex._jobs[-1]
    rows.append(("map of 100 calls: clustrix", fmt(t), f"{job.record.ntasks} array tasks"))
    if submitit_ex is not None:

        def submitit_map() -> None:
            jobs = submitit_ex.map_array(trivial, hundred)
            assert [j.result() for j in jobs] == hundred

        ts = once(submitit_map)
        rows.append(
            (
                "map of 100 calls: submitit map_array",
                fmt(ts),
                f"100 array tasks; clustrix {t / ts:.3f}x",
            )
        )
    t_many = once(lambda: sbatch_many_and_poll(script, 100))
    rows.append(("100 separate sbatch (floor script)", fmt(t_many), "until all left squeue"))

    ten_k = list(range(10_000))
    t10k = once(lambda: list(ex.map(trivial, ten_k)))
    job = ex._jobs[-1]
    rows.append(("map of 10,000 calls: clustrix", fmt(t10k), f"{job.record.ntasks} array tasks"))

    ex.shutdown()
    print_table(
        f"SLURM {subprocess.run(['sbatch', '--version'], capture_output=True, text=True).stdout.strip()}, "
        f"{os.cpu_count()} CPUs, partition {partition}",
        rows,
    )


if __name__ == "__main__":
    main()
