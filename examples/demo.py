"""clustrix demo: runs on the local backend (detached processes on this machine), no cluster needed.

python examples/demo.py            # or: nox -s demo
"""

from __future__ import annotations

import glob
import math
import os
import sys
import time

from clustrix_core import ClusterExecutor, cluster

OFFSET = 10


def helper(x: float) -> float:
    return math.sqrt(x) + OFFSET


@cluster(cores=1)
def work(x: float, scale: float = 2.0) -> float:
    """An ordinary function; the decorator makes calls run as jobs."""
    return helper(x) * scale


@cluster
def where() -> str:
    import platform

    return f"Python {platform.python_version()} on {platform.node()} (pid {os.getpid()})"


@cluster
def fails(n: int) -> None:
    raise ValueError(f"bad input {n}")


def main() -> None:
    print("local process:", f"Python {sys.version.split()[0]} (pid {os.getpid()})")
    start = time.perf_counter()
    print("remote process:", where(), f"[{time.perf_counter() - start:.2f} s]")
    print("work(16) =", work(16))
    try:
        fails(3)
    except ValueError as exc:
        print("remote exception re-raised locally:", repr(exc))
    start = time.perf_counter()
    values = work.map(range(100))
    print(
        f"work.map over 100 items: first {values[:3]}, last {values[-1]:.3f} [{time.perf_counter() - start:.2f} s]"
    )

    with ClusterExecutor("local") as ex:
        fut = ex.submit(pow, 2, 10)
        print("executor future:", fut.result(), "job", fut.job_id, "native id", fut.native_id)

    old = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
    if old:
        remote36 = cluster(where.__wrapped__, python=old[0])
        print("cross-version (source strategy):", remote36())
        print("cross-version work:", cluster(work.__wrapped__, python=old[0])(25))
    print("jobs are recorded: run `clustrix jobs` to list them")


if __name__ == "__main__":
    main()
