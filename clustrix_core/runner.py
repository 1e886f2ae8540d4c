# clustrix runner: stdlib only, valid on Python 3.6 to 3.13. It is copied into the job
# directory and run there by the remote Python:
#
#     python runner.py JOBDIR TASK
#
# It verifies payload.bin with the job's HMAC key, loads the first encoding it can, runs the
# calls of task TASK, and writes result.TASK atomically (temp file + rename). Exit status:
# 0 every call returned, 1 a call raised, 2 the payload could not be verified or loaded.
import builtins
import hashlib
import hmac
import linecache
import os
import pickle
import platform
import sys
import time
import traceback

PAYLOAD_MAGIC = b"CLUSTRIX-PAYLOAD 1\n"
RESULT_MAGIC = b"CLUSTRIX-RESULT 1\n"
EXIT_OK, EXIT_RAISED, EXIT_BROKEN = 0, 1, 2


def sign(key, body):
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")


def seal(magic, key, body):
    return magic + sign(key, body) + b"\n" + body


def unseal(magic, key, blob, what):
    if not blob.startswith(magic):
        raise ValueError("%s is not a clustrix file (bad header)" % what)
    newline = blob.find(b"\n", len(magic))
    digest = blob[len(magic):newline] if newline >= 0 else b""
    body = memoryview(blob)[newline + 1:]  # no copy of a large body
    if newline < 0 or not hmac.compare_digest(digest, sign(key, body)):
        raise ValueError("%s failed its HMAC check: it was changed after it was written" % what)
    return body


def read_key(jobdir):
    with open(os.path.join(jobdir, "key"), "rb") as fh:
        return bytes.fromhex(fh.read().decode("ascii").strip())


def write_atomic(path, data):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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


def install_module(name, source):
    """Create the local module ``name`` from shipped source (parents as empty packages)."""
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
        except ImportError:
            sys.modules["clustrix_core"] = cluster_stub()
    exec(compile_source(source, module.__file__), module.__dict__)


def load_source(data):
    """Rebuild a function shipped by the source strategy."""
    spec = pickle.loads(data)
    for name, module_source in spec.get("modules", ()):
        install_module(name, module_source)
    filename = "<clustrix source of %s>" % spec["name"]
    namespace = {"__name__": "__clustrix_source__", "__builtins__": builtins}
    namespace.update(spec["constants"])
    exec(compile_source(spec["source"], filename), namespace)
    for name, (defaults, kwdefaults) in spec["defaults"].items():
        obj = namespace[name]
        obj.__defaults__ = defaults
        obj.__kwdefaults__ = kwdefaults
    return namespace[spec["name"]], spec["calls"]


def load_pickle(data):
    spec = pickle.loads(data)
    return spec["fn"], spec["calls"]


def load_dill(data):
    import dill

    spec = dill.loads(data)
    return spec["fn"], spec["calls"]


def load_cloudpickle(data):
    import cloudpickle  # noqa: F401  (the pickle refers to it)

    return load_pickle(data)


LOADERS = {"cloudpickle": load_cloudpickle, "dill": load_dill, "source": load_source, "pickle": load_pickle}


def describe_exception(exc, tb_text):
    try:
        exc_bytes = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(exc_bytes)
    except Exception:
        exc_bytes = None
    return {
        "ok": False,
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc),
        "traceback": tb_text,
        "exc": exc_bytes,
    }


def dump_value(value):
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


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: runner.py JOBDIR TASK\n")
        return EXIT_BROKEN
    jobdir, task = argv[1], int(argv[2])
    started = time.time()
    result_path = os.path.join(jobdir, "result.%d" % task)
    key = read_key(jobdir)
    report = {"task": task, "python": platform.python_version(), "host": platform.node(),
              "started": started, "outcomes": [], "error": None}
    try:
        with open(os.path.join(jobdir, "payload.bin"), "rb") as fh:
            envelope = pickle.loads(unseal(PAYLOAD_MAGIC, key, fh.read(), "payload.bin"))
        errors = []
        fn = calls = None
        for encoding in envelope["encodings"]:
            loader = LOADERS.get(encoding["strategy"])
            if loader is None:
                errors.append("%s: unknown strategy" % encoding["strategy"])
                continue
            try:
                fn, calls = loader(encoding["data"])
                report["strategy"] = encoding["strategy"]
                break
            except Exception as exc:
                errors.append("%s: %s: %s" % (encoding["strategy"], type(exc).__name__, exc))
                errors.append(traceback.format_exc())
        if fn is None:
            raise RuntimeError("no encoding of the function could be loaded by Python %s:\n%s"
                               % (platform.python_version(), "\n".join(errors)))
        start, stop = envelope["tasks"][task]
    except Exception as exc:
        report["error"] = describe_exception(exc, traceback.format_exc())
        write_atomic(result_path, seal(RESULT_MAGIC, key, pickle.dumps(report, protocol=2)))
        sys.stderr.write("clustrix runner: %s\n" % exc)
        return EXIT_BROKEN
    status = EXIT_OK
    for args, kwargs in calls[start:stop]:
        outcome = run_call(fn, args, kwargs)
        if not outcome["ok"]:
            status = EXIT_RAISED
            sys.stderr.write(outcome["traceback"])
        report["outcomes"].append(outcome)
    report["finished"] = time.time()
    body = pickle.dumps(report, protocol=min(pickle.HIGHEST_PROTOCOL, envelope.get("result_protocol", 4)))
    write_atomic(result_path, seal(RESULT_MAGIC, key, body))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
