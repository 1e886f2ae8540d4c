"""Benchmark of the ssh backend against the test sshd (tests/clusters/ssh/up).

    python bench/bench_ssh.py [--calls 100] [--repeat 20] [--no-original]

Prints one table, measured in one run:

* the floors: a fresh ``ssh host true`` (OpenSSH client), ``python -c pass`` on an already open
  paramiko connection (one ``exec`` channel per command, as the issue defines the floor), the same
  through clustrix-ssh's persistent shell, and the runner's own start-up (the job's
  ``python runner.py`` on a prepared trivial job);
* clustrix: a trivial call's round trip (cold, and warm median), N calls through ``map``, the same
  N calls as N separate ``submit``s;
* the original ``clustrix`` 0.1.1 from the package index (installed into a throw-away virtual
  environment under /tmp, with its cloudpickle pinned to the remote's version, as it fails
  otherwise): a trivial call. ``--no-original`` skips it (its set-up takes a while).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _table import cluster_config  # noqa: E402


def noop(x: Any = None) -> Any:
    return x


def median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def start_server() -> Path:
    return Path(cluster_config("ssh"))


def floors(profile: Any, repeat: int) -> dict[str, float]:
    import paramiko

    out: dict[str, float] = {}
    ssh = [
        "ssh",
        "-F",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={profile.option('known_hosts')}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-i",
        str(profile.option("key_file")),
        "-p",
        str(profile.option("port")),
        f"{profile.option('user')}@{profile.option('host')}",
    ]
    out["fresh `ssh host true` (OpenSSH)"] = median_time(
        lambda: subprocess.run([*ssh, "true"], check=True, capture_output=True), max(3, repeat // 4)
    )

    client = paramiko.SSHClient()
    client.load_host_keys(profile.option("known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        profile.option("host"),
        port=profile.option("port"),
        username=profile.option("user"),
        key_filename=profile.option("key_file"),
        look_for_keys=False,
        allow_agent=False,
    )

    def exec_(command: str) -> None:
        _, stdout, _ = client.exec_command(command)
        if stdout.channel.recv_exit_status() != 0:
            raise RuntimeError(command)

    python = profile.python or "python3"
    exec_("true")
    out["`true`, exec channel on an open paramiko connection"] = median_time(
        lambda: exec_("true"), repeat
    )
    out["FLOOR: `python -c pass`, exec channel on an open paramiko connection"] = median_time(
        lambda: exec_(f"{python} -c pass"), repeat
    )
    client.close()
    return out


def measure(config: Path, calls: int, repeat: int) -> tuple[dict[str, float], dict[str, Any]]:
    import tempfile

    os.environ["CLUSTRIX_CONFIG"] = str(config)
    os.environ.setdefault("CLUSTRIX_STATE_DIR", tempfile.mkdtemp(prefix="clustrix-bench-state-"))
    from clustrix_core.config import load_profile
    from clustrix_core.executor import ClusterExecutor

    profile = load_profile("ssh")
    rows = floors(profile, repeat)

    started = time.perf_counter()
    ex = ClusterExecutor("ssh", cleanup="always")
    assert ex.submit(noop, 1).result(timeout=120) == 1
    rows["clustrix: first call (connect, probe the remote Python, run)"] = (
        time.perf_counter() - started
    )
    transport = ex.backend.transport
    python = ex.backend.base_python
    transport.run([python, "-c", "pass"])
    rows["`python -c pass` through clustrix-ssh's persistent shell"] = median_time(
        lambda: transport.run([python, "-c", "pass"]).assert_success(), repeat
    )

    keep = ClusterExecutor("ssh", cleanup="never")
    fut = keep.submit(noop, 1)
    fut.result(timeout=120)
    job_dir = fut.job.record.job_dir
    rows["runner start-up: `python runner.py` of a trivial job"] = median_time(
        lambda: transport.run([python, f"{job_dir}/runner.py", job_dir, "0"]).assert_success(),
        repeat,
    )
    transport.remove_tree(job_dir)
    keep.shutdown()

    commands_before = transport.stats["commands"]
    round_trip = median_time(lambda: ex.submit(noop, 1).result(timeout=120), repeat)
    per_call_commands = (transport.stats["commands"] - commands_before) / repeat
    rows["clustrix: trivial call round trip (warm, median)"] = round_trip

    started = time.perf_counter()
    assert list(ex.map(noop, range(calls))) == list(range(calls))
    rows[f"clustrix: {calls} calls through map"] = time.perf_counter() - started

    started = time.perf_counter()
    futures = [ex.submit(noop, i) for i in range(calls)]
    assert [f.result(timeout=600) for f in futures] == list(range(calls))
    rows[f"clustrix: the same {calls} calls as {calls} separate submits"] = (
        time.perf_counter() - started
    )
    ex.shutdown()
    info = {
        "commands_per_call": per_call_commands,
        "connects": transport.stats["connects"],
        "parallelism": ex.backend.scheduler.parallelism(),
    }
    return rows, info


ORIGINAL_SCRIPT = textwrap.dedent("""
    import statistics, sys, time
    import clustrix
    host, port, user, key, python, work, repeat = sys.argv[1:8]
    clustrix.configure(cluster_type="ssh", cluster_host=host, cluster_port=int(port), username=user,
                       key_file=key, python_executable=python, remote_work_dir=work,
                       job_poll_interval=0.05, cleanup_on_success=True, auto_parallel=False)

    @clustrix.cluster(parallel=False, cores=1)
    def noop(x):
        return x

    times = []
    for i in range(int(repeat)):
        started = time.perf_counter()
        assert noop(i) == i
        times.append(time.perf_counter() - started)
        time.sleep(max(0.0, 1.05 - times[-1]))  # its job directory is job_<seconds>: one call a second
    print(statistics.median(times))
""")


def original(profile: Any, repeat: int) -> tuple[float | None, str]:
    venv = Path("/tmp/clustrix-bench-original-venv")
    base = sys.executable
    remote_cp = subprocess.run(
        [profile.python or "python3", "-c", "import cloudpickle; print(cloudpickle.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    pin = f"cloudpickle=={remote_cp}" if remote_cp else "cloudpickle"
    started = time.perf_counter()
    if not (venv / ".ready").exists():
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
        proc = subprocess.run(
            [
                str(venv / "bin/python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "clustrix==0.1.1",
                pin,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            return None, f"pip install clustrix==0.1.1 failed: {proc.stderr.strip()[-300:]}"
        (venv / ".ready").write_text(pin)
    setup = time.perf_counter() - started
    work = f"/tmp/clustrix-bench-original-{os.getpid()}"
    proc = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            ORIGINAL_SCRIPT,
            str(profile.option("host")),
            str(profile.option("port")),
            str(profile.option("user")),
            str(profile.option("key_file")),
            profile.python or "python3",
            work,
            str(repeat),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    subprocess.run(["rm", "-rf", work], check=False)
    if proc.returncode != 0:
        return (
            None,
            f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}",
        )
    return float(proc.stdout.strip().splitlines()[-1]), f"(set-up {setup:.0f} s; local {pin})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--no-original", action="store_true", help="skip the original clustrix 0.1.1"
    )
    args = parser.parse_args()

    config = start_server()
    rows, info = measure(config, args.calls, args.repeat)
    from clustrix_core.config import load_profile

    notes = {}
    if not args.no_original:
        value, note = original(load_profile("ssh"), max(3, args.repeat // 4))
        if value is not None:
            rows["original clustrix 0.1.1: trivial call round trip (median)"] = value
        notes["original"] = note

    import platform

    print(
        f"\nclustrix-ssh benchmark: local Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"test sshd at {load_profile('ssh').host}:{load_profile('ssh').port}, median of {args.repeat}\n"
    )
    width = max(len(k) for k in rows)
    print(f"| {'what':<{width}} | {'time':>11} |")
    print(f"|{'-' * (width + 2)}|{'-' * 13}|")
    for key, value in rows.items():
        print(f"| {key:<{width}} | {ms(value):>11} |")
    floor = rows["FLOOR: `python -c pass`, exec channel on an open paramiko connection"]
    runner = rows["runner start-up: `python runner.py` of a trivial job"]
    trip = rows["clustrix: trivial call round trip (warm, median)"]
    mapped = rows[f"clustrix: {args.calls} calls through map"]
    separate = rows[f"clustrix: the same {args.calls} calls as {args.calls} separate submits"]
    print()
    print(
        f"round trip / (floor + runner start-up) = {trip / (floor + runner):.2f}  (target <= 1.5)"
    )
    print(f"round trip / floor                     = {trip / floor:.2f}")
    print(f"map / separate submits                 = {mapped / separate:.3f}  (target < 0.2)")
    print(
        f"commands per warm call: {info['commands_per_call']:.1f}; SSH connections opened: {info['connects']}; "
        f"map ran {info['parallelism']} tasks at once"
    )
    if "original" in notes:
        print(f"original clustrix 0.1.1: {notes['original']}")
    else:
        print("original clustrix 0.1.1: skipped (--no-original)")


if __name__ == "__main__":
    main()
