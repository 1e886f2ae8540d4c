# clustrix runner: stdlib only, valid on Python 3.6 to 3.13. It is shipped with a job and run by
# the remote Python in one of two forms:
#
#     python runner.py JOBDIR TASK
#     python runner.py --inputs DIR (--task N | --task-env NAME) [--output DIR | --output -]
#
# The first reads key, payload.bin and calls.TASK from JOBDIR and writes result.TASK there. The
# second reads its inputs from DIR (which may be read-only), and writes result.TASK into the
# output directory or, with ``--output -``, writes the sealed outcome to standard output between
# marker lines, after everything the function printed (stores without a shared file system read
# it back from the job's log).
#
# In the first form and with ``--output DIR``, it appends one byte to ``progress.TASK`` in the
# output directory per finished call (created empty when the task starts), so the client's
# progress moves per call. Its stdout and stderr are line-buffered: prints reach the job's log
# (and the client streaming it) as they happen.
#
# It verifies payload.bin and calls.TASK with the job's HMAC key (each bound to the job id, the
# task and its direction), loads the first encoding it can, runs the calls of task TASK, and
# writes the sealed outcome atomically (temp file + rename). Exit status: 0 every call returned,
# 1 a call raised, 2 the inputs could not be verified or loaded, 3 the outcome could not be
# written, 4 the outcome could not be written for lack of space (a full disk or a quota).
import base64
import builtins
import errno
import hashlib
import hmac
import linecache
import os
import pickle
import platform
import sys
import time
import traceback

PAYLOAD_MAGIC = b"CLUSTRIX-PAYLOAD 2\n"
CALLS_MAGIC = b"CLUSTRIX-CALLS 2\n"
RESULT_MAGIC = b"CLUSTRIX-RESULT 2\n"
FRAME_BEGIN = "-----BEGIN CLUSTRIX OUTCOME %s %d-----"
FRAME_END = "-----END CLUSTRIX OUTCOME-----"
EXIT_OK, EXIT_RAISED, EXIT_BROKEN, EXIT_UNWRITABLE, EXIT_NO_SPACE = 0, 1, 2, 3, 4


def sign(key, magic, context, body):
    mac = hmac.new(key, magic, hashlib.sha256)
    mac.update(context.encode("utf-8") + b"\n")
    mac.update(body)
    return mac.hexdigest().encode("ascii")


def seal(magic, key, body, context):
    """``magic``, the context line (job id and task), the HMAC of all three, then the body: a
    sealed file is valid only for the direction, job and task it was written for."""
    return magic + context.encode("utf-8") + b"\n" + sign(key, magic, context, body) + b"\n" + body


def unseal(magic, key, blob, what, context):
    """The body of a sealed ``blob``; ValueError when it is not ``magic``, not for ``context``,
    or changed by someone without the key."""
    if not blob.startswith(magic):
        raise ValueError("%s is not a clustrix file of this kind (bad header)" % what)
    first = blob.find(b"\n", len(magic))
    second = blob.find(b"\n", first + 1) if first >= 0 else -1
    if second < 0:
        raise ValueError("%s is truncated" % what)
    got = bytes(blob[len(magic):first]).decode("utf-8", "replace")
    digest = bytes(blob[first + 1:second])
    body = memoryview(blob)[second + 1:]  # no copy of a large body
    if not hmac.compare_digest(digest, sign(key, magic, got, body)):
        raise ValueError("%s failed its HMAC check: it was changed after it was written" % what)
    if got != context:
        raise ValueError("%s belongs to %r, not to %r" % (what, got, context))
    return body


def task_context(job_id, task):
    return "%s %d" % (job_id, task)


def read_key(inputs):
    with open(os.path.join(inputs, "key"), "rb") as fh:
        return bytes.fromhex(fh.read().decode("ascii").strip())


def write_atomic(path, data):
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".%s.%s.tmp" % (name, base64.b16encode(os.urandom(8)).decode()))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_frame(job_id, task, blob):
    """The sealed outcome on standard output, after everything the function printed."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    encoded = base64.b64encode(blob).decode("ascii")
    lines = [encoded[i:i + 76] for i in range(0, len(encoded), 76)]
    text = "\n%s\n%s\n%s\n" % (FRAME_BEGIN % (job_id, task), "\n".join(lines), FRAME_END)
    data = text.encode("ascii")
    while data:
        written = os.write(1, data)
        data = data[written:]


def compile_source(source, filename):
    """Compile shipped source, keeping its lines for tracebacks. On Python 3.6, which lacks it,
    ``from __future__ import annotations`` is dropped (annotations are then evaluated)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        if "annotations" not in str(exc):
            raise
        kept = [line if "from __future__ import annotations" not in line else "\n"
                for line in source.splitlines(True)]
        return compile("".join(kept), filename, "exec", dont_inherit=True)


def cluster_stub():
    """Stands in for clustrix_core in shipped modules when the remote does not have it: the
    decorator returns the function unchanged."""
    import types

    stub = types.ModuleType("clustrix_core")

    def cluster(fn=None, **_options):
        return fn if fn is not None else (lambda inner: inner)

    stub.cluster = cluster
    return stub


def install_module(name, source, values=None):
    """Create the local module ``name`` from shipped source (parents as empty packages), then
    set the variables the caller had changed since importing it (``values``)."""
    import importlib
    import types

    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if parent not in sys.modules:
            package = types.ModuleType(parent)
            package.__path__ = []
            sys.modules[parent] = package
            if i > 1:
                setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], package)
    module = types.ModuleType(name)
    module.__file__ = "<clustrix shipped module %s>" % name
    sys.modules[name] = module
    if len(parts) > 1:
        setattr(sys.modules[".".join(parts[:-1])], parts[-1], module)
    if "clustrix_core" not in sys.modules:
        try:
            importlib.import_module("clustrix_core")
        except Exception:  # not installed, or a version this Python cannot parse
            sys.modules["clustrix_core"] = cluster_stub()
    exec(compile_source(source, module.__file__), module.__dict__)
    module.__dict__.update(values or {})


def install_modules(entries):
    """The shipped local modules: (name, source[, values]) entries, dependencies first."""
    for entry in entries:
        if entry[0] not in INSTALLED:
            install_module(entry[0], entry[1], entry[2] if len(entry) > 2 else None)
            INSTALLED.add(entry[0])


INSTALLED = set()  # type: set  # modules made here from shipped code (never the runner's __main__)


def install_namespace(name):
    """A fresh module ``name`` in sys.modules for the shipped code of the function's own module:
    its classes then keep their module and qualified name, so the values and exceptions they make
    pickle by name and come back as the caller's own classes (``__main__`` included: the runner's
    own globals stay with its functions)."""
    import types

    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if parent not in sys.modules:
            package = types.ModuleType(parent)
            package.__path__ = []
            sys.modules[parent] = package
    module = types.ModuleType(name)
    module.__builtins__ = builtins
    sys.modules[name] = module
    INSTALLED.add(name)
    if len(parts) > 1:
        setattr(sys.modules[".".join(parts[:-1])], parts[-1], module)
    return module


def load_source(data):
    """Rebuild a function shipped by the source strategy, in a module named for the function's
    own module (``__main__`` included) when the payload names it."""
    spec = pickle.loads(data)
    install_modules(spec.get("modules", ()))
    filename = "<clustrix source of %s>" % spec["name"]
    if spec.get("module"):
        namespace = install_namespace(spec["module"]).__dict__
    else:
        namespace = {"__name__": "__clustrix_source__", "__builtins__": builtins}
    namespace.update(spec["constants"])
    exec(compile_source(spec["source"], filename), namespace)
    for name, (defaults, kwdefaults) in spec["defaults"].items():
        obj = namespace[name]
        obj.__defaults__ = defaults
        obj.__kwdefaults__ = kwdefaults
    return namespace[spec["name"]]


def load_source_calls(data):
    """A task's calls under the source strategy: first the code of the user's classes and
    functions the arguments refer to, defined under their own module names (added to what the
    function's code defined, never replacing it), then the calls, unpickled by name."""
    shipped = pickle.loads(data)
    if not isinstance(shipped, dict) or "calls" not in shipped:
        return shipped
    install_modules(shipped.get("modules", ()))
    for name, code in shipped.get("namespaces", ()):
        target = sys.modules[name] if name in INSTALLED else install_namespace(name)
        scratch = dict(target.__dict__)
        scratch.update(code["constants"])
        exec(compile_source(code["source"], "<clustrix source of %s for the arguments>" % name),
             scratch)
        for fname, (defaults, kwdefaults) in code["defaults"].items():
            scratch[fname].__defaults__ = defaults
            scratch[fname].__kwdefaults__ = kwdefaults
        for key, value in scratch.items():
            if key not in target.__dict__:
                setattr(target, key, value)
    return pickle.loads(shipped["calls"])


def load_dill(data):
    import dill

    return dill.loads(data)


def load_cloudpickle(data):
    import cloudpickle  # noqa: F401  (the pickle refers to it)

    return pickle.loads(data)


# strategy: (load the function, load a task's calls)
LOADERS = {
    "cloudpickle": (load_cloudpickle, load_cloudpickle),
    "dill": (load_dill, load_dill),
    "source": (load_source, load_source_calls),
    "pickle": (pickle.loads, pickle.loads),
}


def exit_message(exc):
    """What a SystemExit or KeyboardInterrupt of the function means, in words."""
    if isinstance(exc, SystemExit):
        return "the function called sys.exit(%s)" % ("" if exc.code is None else repr(exc.code))
    if isinstance(exc, KeyboardInterrupt):
        return "the function was interrupted on the remote (KeyboardInterrupt)"
    return None


def describe_exception(exc, tb_text):
    try:
        exc_bytes = dump_value(exc)
        pickle.loads(exc_bytes)
    except Exception:
        exc_bytes = None
    message = exit_message(exc)
    if message is None:
        try:
            message = str(exc)
        except Exception as inner:
            message = "<str() of the exception failed: %r>" % (inner,)
    return {
        "ok": False,
        "type": type(exc).__name__,
        "qualname": getattr(type(exc), "__qualname__", type(exc).__name__),
        "module": type(exc).__module__,
        "message": message,
        "traceback": tb_text,
        "exc": exc_bytes,
    }


def dump_value(value):
    """By name with pickle (the caller's own classes, whose modules the runner installed under
    their names, arrive as themselves), else by value with cloudpickle when the remote has it."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        try:
            import cloudpickle
        except ImportError:
            raise
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def run_call(fn, args, kwargs):
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: B036 (report everything, KeyboardInterrupt included)
        tb = sys.exc_info()[2]
        text = "".join(traceback.format_exception(type(exc), exc, tb.tb_next if tb else None))
        return describe_exception(exc, text)
    try:
        return {"ok": True, "value": dump_value(value)}
    except Exception as exc:
        text = "the function returned a %s.%s that cannot be pickled: %s" % (
            type(value).__module__, type(value).__name__, exc)
        return describe_exception(TypeError(text), text)


def parse_args(argv):
    """(inputs dir, task, output dir or "-") from either command-line form."""
    args = list(argv[1:])
    if len(args) == 2 and not args[0].startswith("--"):
        return args[0], int(args[1]), args[0]
    opts = {}
    while args:
        flag = args.pop(0)
        if flag not in ("--inputs", "--task", "--task-env", "--task-offset", "--output") or not args:
            raise SystemExit("usage: runner.py JOBDIR TASK | runner.py --inputs DIR "
                             "(--task N | --task-env NAME [--task-offset K]) [--output DIR|-]")
        opts[flag] = args.pop(0)
    if "--task" in opts:
        task = int(opts["--task"])
    else:
        task = int(os.environ[opts["--task-env"]]) + int(opts.get("--task-offset", "0"))
    return opts["--inputs"], task, opts.get("--output", opts["--inputs"])


def load_job(inputs, key, task):
    """(function, this task's calls, envelope, strategy) from the verified inputs."""
    with open(os.path.join(inputs, "payload.bin"), "rb") as fh:
        blob = fh.read()
    job_id = blob[len(PAYLOAD_MAGIC):blob.find(b"\n", len(PAYLOAD_MAGIC))].decode("utf-8", "replace")
    envelope = pickle.loads(unseal(PAYLOAD_MAGIC, key, blob, "payload.bin", job_id))
    with open(os.path.join(inputs, "calls.%d" % task), "rb") as fh:
        calls_by_strategy = pickle.loads(
            unseal(CALLS_MAGIC, key, fh.read(), "calls.%d" % task, task_context(job_id, task)))
    errors = []
    for encoding in envelope["encodings"]:
        strategy = encoding["strategy"]
        loaders = LOADERS.get(strategy)
        if loaders is None or strategy not in calls_by_strategy:
            errors.append("%s: unknown strategy" % strategy)
            continue
        try:
            fn = loaders[0](encoding["data"])
            calls = loaders[1](calls_by_strategy[strategy])
            return fn, calls, envelope, strategy
        except Exception as exc:
            errors.append("%s: %s: %s" % (strategy, type(exc).__name__, exc))
            errors.append(traceback.format_exc())
    raise RuntimeError("no encoding of the function could be loaded by Python %s:\n%s"
                       % (platform.python_version(), "\n".join(errors)))


def line_buffered():
    """Prints reach the log line by line (a file is block-buffered by default)."""
    import io

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            stream.reconfigure(line_buffering=True)
        except AttributeError:  # Python 3.6
            try:
                stream.flush()
                setattr(sys, name, io.open(stream.fileno(), "w", buffering=1, closefd=False,
                                           encoding=stream.encoding, errors=stream.errors))
            except Exception:
                pass
        except Exception:
            pass


def open_progress(output, task):
    """``progress.TASK`` in the output directory, emptied (None with ``--output -``)."""
    if output == "-":
        return None
    flags = (os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
             | getattr(os, "O_NOFOLLOW", 0))
    try:
        return os.open(os.path.join(output, "progress.%d" % task), flags, 0o600)
    except OSError:
        return None


def note_progress(fd):
    """One more call finished: one byte (the file's size is the count). Never fails a task."""
    if fd is not None:
        try:
            os.write(fd, b".")
        except OSError:
            pass


def deliver(output, job_id, task, key, report, protocol):
    blob = seal(RESULT_MAGIC, key, pickle.dumps(report, protocol=protocol),
                task_context(job_id, task))
    if output == "-":
        write_frame(job_id, task, blob)
    else:
        write_atomic(os.path.join(output, "result.%d" % task), blob)


def main(argv):
    inputs, task, output = parse_args(argv)
    line_buffered()
    key = read_key(inputs)
    progress = open_progress(output, task)
    report = {"job": None, "task": task, "python": platform.python_version(),
              "host": platform.node(), "started": time.time(), "outcomes": [], "error": None}
    protocol = 2
    try:
        fn, calls, envelope, report["strategy"] = load_job(inputs, key, task)
        report["job"] = job_id = envelope["job_id"]
        protocol = min(pickle.HIGHEST_PROTOCOL, envelope.get("result_protocol", 4))
    except Exception as exc:
        report["error"] = describe_exception(exc, traceback.format_exc())
        sys.stderr.write("clustrix runner: %s\n" % exc)
        job_id = report["job"] = _job_id_of(inputs)
        if job_id is not None:  # an authenticated report of why, when the job is known at all
            deliver(output, job_id, task, key, report, 2)
        return EXIT_BROKEN
    status = EXIT_OK
    for args, kwargs in calls:
        outcome = run_call(fn, args, kwargs)
        if not outcome["ok"]:
            status = EXIT_RAISED
            sys.stderr.write(outcome["traceback"])
        report["outcomes"].append(outcome)
        note_progress(progress)
    if progress is not None:
        try:
            os.close(progress)
        except OSError:
            pass
    report["finished"] = time.time()
    try:
        deliver(output, job_id, task, key, report, protocol)
    except Exception as exc:
        try:  # the log may sit on the same full disk: the exit status must tell it all
            sys.stderr.write("clustrix runner: cannot write the result of task %d to %s: %s\n"
                             % (task, output, exc))
            sys.stderr.flush()
        except Exception:
            pass
        if getattr(exc, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return EXIT_NO_SPACE
        return EXIT_UNWRITABLE
    return status


def _job_id_of(inputs):
    """The job id the payload header names (unverified: it only labels the error report, whose
    seal the client checks against the job it expects)."""
    try:
        with open(os.path.join(inputs, "payload.bin"), "rb") as fh:
            head = fh.read(4096)
        if head.startswith(PAYLOAD_MAGIC):
            return head[len(PAYLOAD_MAGIC):head.index(b"\n", len(PAYLOAD_MAGIC))].decode("utf-8")
    except Exception:
        pass
    return None


if __name__ == "__main__":
    code = main(sys.argv)
    if code in (EXIT_UNWRITABLE, EXIT_NO_SPACE):
        # flushing buffered output at exit would fail again on a full disk and turn the exit
        # status into 120: flush what can be, then leave with this status
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)
    sys.exit(code)
