"""spool: a tiny but real batch system over a spool directory (standard library only).

This file is the *scheduler*, not the clustrix plugin: it plays the part that ``sbatch``,
``squeue``/``sacct`` and ``scancel`` play for SLURM. It is installed as three commands::

    spool-submit [--spool-dir DIR] [--array A-B] [--name NAME] [--time SECONDS] [--cores N]
                 [--mem MIB] [--slots N] [--parsable] SCRIPT
    spool-status [--spool-dir DIR] [--all] [--parsable] [JOBID ...]
    spool-cancel [--spool-dir DIR] JOBID ...

and also runs as ``python spool.py submit|status|cancel ...``.

Options can also be given as ``#SPOOL --option=value`` lines at the top of the script (like
``#SBATCH``); command-line options win. The spool directory is ``--spool-dir``, else
``$SPOOL_DIR``, else ``~/.spool``.

``spool-submit`` copies the script into ``DIR/jobs/ID/``, records one state file per task and
starts a detached *supervisor* process (its own session) that runs the tasks, at most ``--slots``
at a time, each in its own process group, with ``SPOOL_JOB_ID``, ``SPOOL_JOB_NAME`` and, for
arrays, ``SPOOL_ARRAY_TASK_ID`` and ``SPOOL_ARRAY_TASK_COUNT`` set. The supervisor enforces
``--time`` (state ``timeout``) and honours cancel requests. While it lives it holds an exclusive
lock on ``DIR/jobs/ID/lock``; a job whose lock is free but whose tasks are not finished lost its
supervisor (state ``node_fail``).

Task states: ``queued``, ``running`` (active) and ``done``, ``failed``, ``cancelled``,
``timeout``, ``node_fail`` (final). ``spool-status`` lists active tasks only (like ``squeue``);
``--all`` lists finished tasks too, with exit codes (like ``sacct``). ``--parsable`` prints
``JOBID|TASK|STATE|EXIT|REASON`` lines without a header (``TASK`` is ``-`` for a non-array job,
``EXIT`` is empty until a task ends).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time

ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled", "timeout", "node_fail")
MAX_ARRAY_SIZE = int(os.environ.get("SPOOL_MAX_ARRAY_SIZE", "1000"))
KILL_GRACE = 2.0
TICK = 0.05


class SpoolError(Exception):
    """A user error: printed as ``spool-<cmd>: error: ...``, exit status 1."""


# ------------------------------------------------------------------ files


def spool_dir(explicit: str | None) -> str:
    path = explicit or os.environ.get("SPOOL_DIR") or os.path.join(os.path.expanduser("~"), ".spool")
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(os.path.join(path, "jobs"), mode=0o700, exist_ok=True)
    return path


def job_dir(spool: str, job_id: str) -> str:
    if not job_id.isdigit():
        raise SpoolError(f"invalid job id {job_id!r}")
    return os.path.join(spool, "jobs", str(int(job_id)))


def write_json(path: str, data: dict) -> None:
    """Atomic: readers see the old file or the new one, never half of one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def read_json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return None


def task_path(jdir: str, task: int) -> str:
    return os.path.join(jdir, f"task.{task}.json")


def set_task(jdir: str, task: int, state: str, **fields: object) -> None:
    old = read_json(task_path(jdir, task)) or {}
    old.update(fields, state=state)
    write_json(task_path(jdir, task), old)


def supervisor_alive(jdir: str) -> bool:
    """True while the job's supervisor (or spool-submit, before it starts one) holds the lock."""
    try:
        fd = os.open(os.path.join(jdir, "lock"), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two readers never mistake each other
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # closing releases the lock if we took it
    return False


def next_id(spool: str) -> int:
    fd = os.open(os.path.join(spool, "next_id"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 64).decode().strip()
        job_id = int(raw) if raw.isdigit() else 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(job_id + 1).encode())
        return job_id
    finally:
        os.close(fd)


# ------------------------------------------------------------------ submit


def submit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spool-submit", description="Submit a batch script to the spool.")
    p.add_argument("--spool-dir")
    p.add_argument("--array", help="task range A-B (inclusive), e.g. 0-9")
    p.add_argument("--name")
    p.add_argument("--time", help="time limit in seconds, or [[H:]M:]S")
    p.add_argument("--cores")
    p.add_argument("--mem", help="memory in MiB (recorded, exported as SPOOL_MEM_MB)")
    p.add_argument("--slots", help="how many tasks of this job run at once")
    p.add_argument("--parsable", action="store_true", help="print only the job id")
    p.add_argument("script")
    return p


_DIRECTIVE_KEYS = ("array", "name", "time", "cores", "mem", "slots")


def read_directives(text: str) -> dict[str, str]:
    """``#SPOOL --key=value`` lines before the first command of the script."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if number == 1 and stripped.startswith("#!"):
            continue
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#SPOOL")):
            continue
        if not stripped.startswith("#SPOOL"):
            break
        for word in shlex.split(stripped[len("#SPOOL") :]):
            key, sep, value = word.partition("=")
            key = key.lstrip("-")
            if not word.startswith("--") or not sep or key not in _DIRECTIVE_KEYS:
                raise SpoolError(
                    f"line {number}: bad directive {word!r}; expected --KEY=VALUE with KEY one of "
                    f"{', '.join(_DIRECTIVE_KEYS)}"
                )
            found[key] = value
    return found


def parse_time(text: str) -> int:
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise SpoolError(f"--time={text!r}: expected seconds or [[H:]M:]S")
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    if seconds <= 0:
        raise SpoolError(f"--time={text!r} must be positive")
    return seconds


def parse_array(text: str) -> list[int]:
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit() or int(first) > int(last):
        raise SpoolError(f"--array={text!r}: expected A-B with 0 <= A <= B")
    count = int(last) - int(first) + 1
    if count > MAX_ARRAY_SIZE:
        raise SpoolError(
            f"--array={text!r}: {count} tasks, more than the maximum array size {MAX_ARRAY_SIZE}"
        )
    return list(range(int(first), int(last) + 1))


def positive(name: str, value: object) -> int | None:
    if value is None:
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise SpoolError(f"--{name}={value!r} must be a whole number >= 1")
    return number


def cmd_submit(argv: list[str]) -> int:
    args = submit_parser().parse_args(argv)
    try:
        with open(args.script, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise SpoolError(f"cannot read the script {args.script!r}: {exc.strerror}") from None
    opts = read_directives(text)
    opts.update({k: str(getattr(args, k)) for k in _DIRECTIVE_KEYS if getattr(args, k) is not None})
    array = "array" in opts
    tasks = parse_array(opts["array"]) if array else [0]
    meta = {
        "name": opts.get("name") or os.path.basename(args.script),
        "array": array,
        "tasks": tasks,
        "time": parse_time(opts["time"]) if "time" in opts else None,
        "cores": positive("cores", opts.get("cores")) or 1,
        "mem": positive("mem", opts.get("mem")),
        "slots": positive("slots", opts.get("slots")) or len(tasks),
        "cwd": os.getcwd(),
        "submitted": time.time(),
    }
    spool = spool_dir(args.spool_dir)
    job_id = next_id(spool)
    jdir = job_dir(spool, str(job_id))
    os.makedirs(jdir, mode=0o700)
    lock = os.open(os.path.join(jdir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held from now on: by us, then by the supervisor
    script = os.path.join(jdir, "script")
    with open(script, "w") as fh:
        fh.write(text)
    os.chmod(script, 0o700)
    meta["id"] = job_id
    for task in tasks:
        write_json(task_path(jdir, task), {"state": "queued", "exit": None, "reason": ""})
    write_json(os.path.join(jdir, "meta.json"), meta)  # last: the job now exists for spool-status
    with open(os.path.join(jdir, "supervisor.log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "_supervise", jdir, str(lock)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(lock,),
            start_new_session=True,
        )
    with open(os.path.join(jdir, "supervisor.pid"), "w") as fh:
        fh.write(str(proc.pid))
    os.close(lock)
    print(job_id if args.parsable else f"Submitted spool job {job_id}")
    return 0


# ------------------------------------------------------------------ supervisor


def supervise(jdir: str, lock_fd: int) -> int:
    """Run the job's tasks; the caller handed us the locked file descriptor ``lock_fd``."""
    meta = read_json(os.path.join(jdir, "meta.json")) or {}
    stop = {"requested": False}

    def on_term(_sig: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    pending = list(meta["tasks"])
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    killing: dict[int, tuple[float, str]] = {}  # task -> (SIGKILL deadline, final state)
    cancel_file = os.path.join(jdir, "cancel")

    def kill(task: int, proc: subprocess.Popen, state: str, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        killing.setdefault(task, (time.monotonic() + KILL_GRACE, state))

    while pending or running:
        cancelled = stop["requested"] or os.path.exists(cancel_file)
        if cancelled:
            for task in pending:
                set_task(jdir, task, "cancelled", exit=None, reason="cancelled before it started")
            pending = []
            for task, (proc, _) in running.items():
                if task not in killing:
                    kill(task, proc, "cancelled")
        while pending and len(running) < meta["slots"]:
            task = pending.pop(0)
            started_proc = start_task(jdir, meta, task)
            if started_proc is not None:
                running[task] = (started_proc, time.monotonic())
        now = time.monotonic()
        for task, (proc, started) in list(running.items()):
            code = proc.poll()
            if code is not None:
                del running[task]
                finish_task(jdir, task, code, killing.pop(task, (0.0, ""))[1])
            elif task in killing and now > killing[task][0]:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            elif meta.get("time") and now - started > meta["time"] and task not in killing:
                kill(task, proc, "timeout")
        time.sleep(TICK)
    os.close(lock_fd)
    return 0


def start_task(jdir: str, meta: dict, task: int) -> subprocess.Popen | None:
    script = os.path.join(jdir, "script")
    env = dict(
        os.environ, SPOOL_JOB_ID=str(meta["id"]), SPOOL_JOB_NAME=meta["name"], SPOOL_CPUS=str(meta["cores"])
    )
    if meta.get("mem"):
        env["SPOOL_MEM_MB"] = str(meta["mem"])
    if meta["array"]:
        env["SPOOL_ARRAY_TASK_ID"] = str(task)
        env["SPOOL_ARRAY_TASK_COUNT"] = str(len(meta["tasks"]))
    with open(script, "rb") as fh:
        argv = [script] if fh.read(2) == b"#!" else ["/bin/sh", script]
    try:
        with open(os.path.join(jdir, f"output.{task}"), "ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=meta["cwd"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        set_task(jdir, task, "failed", exit=127, reason=f"could not start: {exc}", ended=time.time())
        return None
    set_task(jdir, task, "running", pid=proc.pid, started=time.time())
    return proc


def finish_task(jdir: str, task: int, code: int, forced: str) -> None:
    if code < 0:
        exit_code, reason = 128 - code, f"killed by signal {signal.Signals(-code).name}"
    else:
        exit_code, reason = code, "" if code == 0 else f"exit status {code}"
    if forced == "timeout":
        state, reason = "timeout", "time limit reached"
    elif forced == "cancelled":
        state, reason = "cancelled", "cancelled while running"
    else:
        state = "done" if code == 0 else "failed"
    set_task(jdir, task, state, exit=exit_code, reason=reason, ended=time.time())


# ------------------------------------------------------------------ status


def job_rows(jdir: str) -> list[dict]:
    """One row per task: the task file, corrected to node_fail when the supervisor is gone."""
    meta = read_json(os.path.join(jdir, "meta.json"))
    if meta is None:
        return []
    alive = supervisor_alive(jdir)  # before reading the task files: see the module docstring
    rows = []
    for task in meta["tasks"]:
        info = read_json(task_path(jdir, task)) or {"state": "queued", "exit": None, "reason": ""}
        if info["state"] in ACTIVE and not alive:
            info = dict(info, state="node_fail", reason="the job's supervisor process is gone")
        rows.append(dict(info, id=meta["id"], task=task if meta["array"] else None, name=meta["name"]))
    return rows


def cmd_status(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="spool-status", description="Show spool jobs.")
    p.add_argument("--spool-dir")
    p.add_argument("--all", action="store_true", help="include finished tasks (with exit codes)")
    p.add_argument("--parsable", action="store_true", help="JOBID|TASK|STATE|EXIT|REASON, no header")
    p.add_argument("ids", nargs="*")
    args = p.parse_args(argv)
    spool = spool_dir(args.spool_dir)
    if args.ids:
        ids = args.ids
    else:
        ids = sorted((n for n in os.listdir(os.path.join(spool, "jobs")) if n.isdigit()), key=int)
    rows: list[dict] = []
    for job_id in ids:
        jdir = job_dir(spool, job_id)
        found = job_rows(jdir)
        if not found and args.ids:
            print(f"spool-status: unknown job {job_id}", file=sys.stderr)
        rows.extend(r for r in found if args.all or r["state"] in ACTIVE)
    for r in rows:
        task = "-" if r["task"] is None else str(r["task"])
        code = "" if r.get("exit") is None else str(r["exit"])
        reason = str(r.get("reason") or "").replace("|", "/").replace("\n", " ")
        if args.parsable:
            print(f"{r['id']}|{task}|{r['state']}|{code}|{reason}")
    if not args.parsable:
        header = ("JOBID", "TASK", "NAME", "STATE", "EXIT", "REASON")
        table = [header] + [
            (
                str(r["id"]),
                "-" if r["task"] is None else str(r["task"]),
                r["name"][:24],
                r["state"],
                "" if r.get("exit") is None else str(r["exit"]),
                r.get("reason") or "",
            )
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


# ------------------------------------------------------------------ cancel


def cmd_cancel(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="spool-cancel", description="Cancel spool jobs.")
    p.add_argument("--spool-dir")
    p.add_argument("ids", nargs="+")
    args = p.parse_args(argv)
    spool = spool_dir(args.spool_dir)
    status = 0
    for job_id in args.ids:
        jdir = job_dir(spool, job_id)
        meta = read_json(os.path.join(jdir, "meta.json"))
        if meta is None:
            print(f"spool-cancel: unknown job {job_id}", file=sys.stderr)
            status = 1
            continue
        open(os.path.join(jdir, "cancel"), "a").close()
        if supervisor_alive(jdir):
            try:
                with open(os.path.join(jdir, "supervisor.pid")) as fh:
                    os.kill(int(fh.read().strip()), signal.SIGTERM)  # wakes it; the file is the request
            except (OSError, ValueError):
                pass
        else:  # no supervisor: settle the tasks ourselves
            for task in meta["tasks"]:
                info = read_json(task_path(jdir, task)) or {}
                if info.get("state") in ACTIVE:
                    if info.get("pid"):  # an orphaned task: its process group has its pid
                        try:
                            os.killpg(int(info["pid"]), signal.SIGKILL)
                        except OSError:
                            pass
                    set_task(jdir, task, "cancelled", reason="cancelled (no supervisor)")
    return status


# ------------------------------------------------------------------ entry points


def _run(fn, argv: list[str] | None, prog: str) -> int:
    try:
        return fn(sys.argv[1:] if argv is None else argv)
    except SpoolError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def submit_main(argv: list[str] | None = None) -> int:
    return _run(cmd_submit, argv, "spool-submit")


def status_main(argv: list[str] | None = None) -> int:
    return _run(cmd_status, argv, "spool-status")


def cancel_main(argv: list[str] | None = None) -> int:
    return _run(cmd_cancel, argv, "spool-cancel")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"submit": submit_main, "status": status_main, "cancel": cancel_main}
    if argv[:1] == ["_supervise"]:
        return supervise(argv[1], int(argv[2]))
    if not argv or argv[0] not in commands:
        print("usage: spool.py {submit,status,cancel} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
