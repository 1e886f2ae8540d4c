"""The ``clustrix`` command: plugins, doctor, jobs, status, logs, cancel, result."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from .errors import ClustrixError


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    rows = []
    try:
        backends = pm.backends()
    except ClustrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for (kind, name), b in sorted(backends.items()):
        rows.append((name, kind, b.distribution, b.version, "ok", b.spec.summary))
    for info in pm.infos:
        if info.status != "ok":
            rows.append((info.name, "?", info.distribution, info.version, info.status, ""))
    print(_table(rows, ["NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS", "SUMMARY"]))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .config import load_profile
    from .executor import ClusterExecutor

    ok = True

    def check(label: str, fn: Any) -> Any:
        nonlocal ok
        start = time.monotonic()
        try:
            value = fn()
        except Exception as exc:
            ok = False
            print(f"FAIL  {label}: {type(exc).__name__}: {exc}")
            return None
        print(f"ok    {label}: {value} ({time.monotonic() - start:.2f} s)")
        return value if value is not None else True

    profile = check("profile", lambda: load_profile(args.profile).name)
    if not profile:
        return 1
    ex = check(
        "backend",
        lambda: (lambda e: f"scheduler {e.profile.scheduler}, transport {e.profile.transport}")(
            _holder.setdefault("ex", ClusterExecutor(args.profile))
        ),
    )
    if not ex:
        return 1
    executor: ClusterExecutor = _holder["ex"]
    backend = executor.backend
    check("transport", lambda: backend.transport.run(["true"]).assert_success() and "commands run")
    check(
        "remote python",
        lambda: (
            f"{backend.remote()[0]} is Python {backend.remote()[1].python} (cloudpickle {backend.remote()[1].cloudpickle})"
        ),
    )
    check("job store", lambda: backend.store.check())
    check(
        "scheduler",
        lambda: f"{backend.scheduler.name}, parallelism {backend.scheduler.parallelism()}",
    )

    def echo(x: Any) -> Any:  # defined here so it travels by value: nothing needed remotely
        return x

    check(
        "round trip",
        lambda: (
            f"trivial job returned {executor.submit(echo, 'pong').result(timeout=args.timeout)!r}"
        ),
    )
    executor.shutdown(wait=True)  # its cleanup too: doctor leaves nothing behind
    print("doctor: all checks passed" if ok else "doctor: some checks failed")
    return 0 if ok else 1


_holder: dict[str, Any] = {}


def cmd_jobs(args: argparse.Namespace) -> int:
    from .registry import get_registry

    rows = []
    for r in get_registry().list(limit=args.limit):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.submitted_at))
        rows.append(
            (
                r.job_id,
                r.profile,
                r.scheduler,
                ",".join(r.native_ids) or "-",
                r.ncalls,
                r.state,
                when,
                r.function,
            )
        )
    print(
        _table(
            rows,
            ["JOB", "PROFILE", "SCHEDULER", "NATIVE", "CALLS", "STATE", "SUBMITTED", "FUNCTION"],
        )
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .jobhandle import attach

    handle = attach(args.job)
    print(f"{handle.record.job_id}: {handle.status()}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from .jobhandle import attach

    handle = attach(args.job)
    out, err = handle.logs(args.task)
    if args.stream in ("out", "both"):
        sys.stdout.write(out)
    if args.stream in ("err", "both"):
        sys.stdout.write(err)
    if not (out if args.stream == "out" else err if args.stream == "err" else out + err):
        print(f"(job {handle.record.job_id}, task {args.task}: no output)", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from .jobhandle import attach

    handle = attach(args.job)
    if handle.cancel():
        print(f"cancelled {handle.record.job_id}")
    else:
        print(
            f"{handle.record.job_id} had already finished ({handle.record.state}); nothing to cancel"
        )
    return 0


def cmd_result(args: argparse.Namespace) -> int:
    from .jobhandle import attach

    value = attach(args.job).result(timeout=args.timeout)
    print(repr(value))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="clustrix", description="Run Python functions on clusters."
    )
    parser.add_argument("--version", action="version", version=f"clustrix {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what clustrix does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    job_help = "a job id (or a unique prefix of one), as `clustrix jobs` lists it"
    sub.add_parser(
        "plugins", help="list installed backends", description="List installed backends."
    ).set_defaults(fn=cmd_plugins)
    p = sub.add_parser(
        "doctor",
        help="check a profile end to end",
        description="Check a profile end to end: config, transport, remote Python, job store, "
        "scheduler, and a real round-trip job (which leaves nothing behind).",
    )
    p.add_argument("profile", nargs="?", help="the profile to check (default: the default profile)")
    p.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="seconds to wait for the round-trip job (default: %(default)s)",
    )
    p.set_defaults(fn=cmd_doctor)
    p = sub.add_parser("jobs", help="list recorded jobs", description="List recorded jobs.")
    p.add_argument(
        "--limit",
        type=int,
        default=50,
        help="show at most this many, newest first (default: %(default)s)",
    )
    p.set_defaults(fn=cmd_jobs)
    for name, fn, helptext in (
        ("status", cmd_status, "show a job's state"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext.capitalize() + ".")
        p.add_argument("job", help=job_help)
        p.set_defaults(fn=fn)
    p = sub.add_parser(
        "logs",
        help="print a job's stdout/stderr",
        description="Print a job's stdout/stderr (kept after the job's directory is cleaned up).",
    )
    p.add_argument("job", help=job_help)
    p.add_argument(
        "--task", type=int, default=0, help="which task of an array job (default: %(default)s)"
    )
    p.add_argument(
        "--stream",
        choices=("out", "err", "both"),
        default="both",
        help="stdout, stderr or both (default: %(default)s)",
    )
    p.set_defaults(fn=cmd_logs)
    p = sub.add_parser(
        "result",
        help="wait for a job and print its result",
        description="Wait for a job and print its result (the remote exception, if it raised).",
    )
    p.add_argument("job", help=job_help)
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait before giving up (default: wait until the job ends)",
    )
    p.set_defaults(fn=cmd_result)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        return int(args.fn(args))
    except BrokenPipeError:  # e.g. `clustrix jobs | head`
        sys.stderr.close()
        return 0
    except ClustrixError as exc:
        print(f"clustrix: error: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # the remote exception of `result`
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        print(f"clustrix: {type(exc).__name__}: {exc}", file=sys.stderr)
        tb = getattr(exc, "remote_traceback", None)
        if tb:
            print(tb, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
