"""Serialization strategies and the payload they go into.

A job's inputs are ``payload.bin`` (the function, once) and ``calls.N`` (the calls of task N), each
sealed by :func:`clustrix_core.runner.seal` (magic, job id and task under the HMAC). The payload's
body is a plain pickle of an envelope (a dict of plain types): header fields and one encoding of
the function per applicable strategy; a task's calls carry one encoding per strategy too. The
runner picks the first strategy it can load, so a task reads only its own calls.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import logging
import pickle
import platform
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from . import runner
from .errors import SerializationError

FORMAT_VERSION = 1
logger = logging.getLogger(__name__)
Call = tuple[tuple[Any, ...], dict[str, Any]]


@attrs.frozen(kw_only=True)
class RemoteInfo:
    """What the remote Python can load; probed once per (profile, interpreter)."""

    python: str  # "3.11.7"
    pickle_protocol: int
    cloudpickle: str | None = None
    dill: str | None = None

    @property
    def minor(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)

    @classmethod
    def local(cls) -> RemoteInfo:
        return cls(
            python=platform.python_version(),
            pickle_protocol=pickle.HIGHEST_PROTOCOL,
            cloudpickle=_module_version("cloudpickle"),
            dill=_module_version("dill"),
        )


PROBE_SNIPPET = (
    "import json, pickle, platform\n"
    "def v(n):\n"
    "    try:\n"
    "        return __import__(n).__version__\n"
    "    except Exception:\n"
    "        return None\n"
    "print(json.dumps({'python': platform.python_version(), 'pickle_protocol': pickle.HIGHEST_PROTOCOL,"
    " 'cloudpickle': v('cloudpickle'), 'dill': v('dill')}))\n"
)


def _module_version(name: str) -> str | None:
    try:
        return str(__import__(name).__version__)
    except Exception:
        return None


def same_minor(remote: RemoteInfo) -> bool:
    return remote.minor == sys.version_info[:2]


class Serializer:
    """A strategy: turns a function, and separately each task's calls, into bytes that the
    runner's loaders of ``name`` read."""

    name = ""
    in_auto = True
    """Whether ``serializer = "auto"`` may choose this strategy."""

    def applies(self, remote: RemoteInfo) -> bool:
        raise NotImplementedError

    def encode_function(self, fn: Callable[..., Any], protocol: int) -> bytes:
        raise NotImplementedError

    def encode_calls(self, fn: Callable[..., Any], calls: Sequence[Call], protocol: int) -> bytes:
        """One task's calls (``fn`` only names the culprit in errors)."""
        try:
            return pickle.dumps(list(calls), protocol=protocol)
        except Exception as exc:
            raise SerializationError(_cannot_pickle(fn, calls, exc)) from exc


_by_value_lock = threading.Lock()


def _is_user_module(module: types.ModuleType | None) -> bool:
    """Whether ``module`` is user code: a file that is not the standard library, an installed
    package or clustrix itself (``__main__`` is pickled by value anyway)."""
    if module is None or module.__name__ == "__main__" or not getattr(module, "__file__", None):
        return False
    path = str(module.__file__)
    if "site-packages" in path or "dist-packages" in path or path.startswith(sys.base_prefix):
        return False
    return module.__name__.split(".")[0] != "clustrix_core"


def _user_module(fn: Any) -> types.ModuleType | None:
    """The module ``fn`` comes from when it is user code; None otherwise."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    return module if _is_user_module(module) else None


def _pickled_by_value() -> list[types.ModuleType]:
    """Register every loaded user module to be pickled by value, so the remote needs neither the
    modules nor their paths (a function may use helpers of other local modules)."""
    import cloudpickle

    registered = []
    for module in list(sys.modules.values()):
        if isinstance(module, types.ModuleType) and _is_user_module(module):
            try:
                cloudpickle.register_pickle_by_value(module)
            except Exception:
                continue
            registered.append(module)
    return registered


class CloudpickleSerializer(Serializer):
    name = "cloudpickle"

    def applies(self, remote: RemoteInfo) -> bool:
        # A pickle is read back only by the same cloudpickle major version (3.x output refers to
        # helpers 2.x lacks: "Can't get attribute '_function_setstate'"); else the source strategy.
        local = _module_version("cloudpickle")
        return (
            remote.cloudpickle is not None
            and same_minor(remote)
            and local is not None
            and local.split(".")[0] == remote.cloudpickle.split(".")[0]
        )

    def encode_function(self, fn: Callable[..., Any], protocol: int) -> bytes:
        return self._dumps(fn, fn, [], protocol)

    def encode_calls(self, fn: Callable[..., Any], calls: Sequence[Call], protocol: int) -> bytes:
        # classes pickled by value in both keep one identity remotely (cloudpickle tracks them)
        return self._dumps(list(calls), fn, calls, protocol)

    def _dumps(self, obj: Any, fn: Any, calls: Sequence[Call], protocol: int) -> bytes:
        import cloudpickle

        with _by_value_lock:
            modules = _pickled_by_value()
            try:
                return cloudpickle.dumps(obj, protocol=protocol)
            except Exception as exc:
                raise SerializationError(_cannot_pickle(fn, calls, exc)) from exc
            finally:
                for module in modules:
                    cloudpickle.unregister_pickle_by_value(module)


class DillSerializer(Serializer):
    """Opt-in (``serializer = "dill"``): dill refers to anything importable by module, including
    user modules the remote does not have, so ``auto`` never picks it."""

    name = "dill"
    in_auto = False

    def applies(self, remote: RemoteInfo) -> bool:
        return (
            remote.dill is not None and same_minor(remote) and _module_version("dill") is not None
        )

    def encode_function(self, fn: Callable[..., Any], protocol: int) -> bytes:
        dill = self._dill()
        module = _user_module(fn)
        # dill pickles a function it can import by reference (cloudpickle's go by value)
        if module is not None and _resolves(module.__name__, getattr(fn, "__qualname__", "<"), fn):
            raise SerializationError(
                f"dill would refer to {_qualname(fn)} by its module {module.__name__!r}, "
                "which the remote cannot import"
            )
        try:
            return bytes(dill.dumps(fn, protocol=protocol, recurse=True))
        except Exception as exc:
            raise SerializationError(_cannot_pickle(fn, [], exc)) from exc

    def encode_calls(self, fn: Callable[..., Any], calls: Sequence[Call], protocol: int) -> bytes:
        try:
            return bytes(self._dill().dumps(list(calls), protocol=protocol, recurse=True))
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(_cannot_pickle(fn, calls, exc)) from exc

    @staticmethod
    def _dill() -> Any:
        try:
            import dill
        except ImportError as exc:
            raise SerializationError(
                "the dill strategy needs dill installed: pip install 'clustrix-core[dill]'"
            ) from exc
        return dill


def _cannot_pickle(fn: Any, calls: Sequence[Call], exc: Exception) -> str:
    for i, (args, kwargs) in enumerate(calls):
        for where, value in [
            *((f"argument {j}", a) for j, a in enumerate(args)),
            *((f"keyword argument {k!r}", v) for k, v in kwargs.items()),
        ]:
            try:
                import cloudpickle

                cloudpickle.dumps(value)
            except Exception as inner:
                return (
                    f"cannot serialize {where} of call {i} to {_qualname(fn)} "
                    f"(a {type(value).__module__}.{type(value).__qualname__}): {inner}"
                )
    return f"cannot serialize {_qualname(fn)}: {type(exc).__name__}: {exc}"


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


# ---------------------------------------------------------------- source strategy

_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _is_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if depth > 20:
        return False
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _is_cluster_decorator(node: ast.expr, fn_globals: dict[str, Any]) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    parts: list[str] = []
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if not isinstance(target, ast.Name):
        return False
    parts.append(target.id)
    parts.reverse()
    obj: Any = fn_globals.get(parts[0], getattr(builtins, parts[0], None))
    for attr in parts[1:]:
        obj = getattr(obj, attr, None)
    if obj is not None and getattr(obj, "__module__", "").startswith("clustrix_core"):
        return True
    return obj is None and parts[-1] == "cluster"


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


class _Surgery:
    """Edits a source text at AST positions (line numbers, byte columns)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(True)
        self.edits: list[tuple[int, int, str]] = []

    def offset(self, lineno: int, col: int) -> int:
        before = sum(len(line) for line in self.lines[: lineno - 1])
        return before + len(self.lines[lineno - 1].encode("utf-8")[:col].decode("utf-8", "replace"))

    def replace(self, start: tuple[int, int], end: tuple[int, int], new: str) -> None:
        self.edits.append((self.offset(*start), self.offset(*end), new))

    def result(self) -> str:
        text = "".join(self.lines)
        for a, b, new in sorted(self.edits, reverse=True):
            text = text[:a] + new + text[b:]
        return text


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]


class SourceSerializer(Serializer):
    """Ships the function's source plus what it needs: imports, plain constants, helpers of the
    same module, default values and closure values. Works across Python versions."""

    name = "source"

    def applies(self, remote: RemoteInfo) -> bool:
        return True

    def encode_function(self, fn: Callable[..., Any], protocol: int) -> bytes:
        spec = self.build(fn)
        try:
            return pickle.dumps(spec, protocol=protocol)
        except Exception as exc:
            raise SerializationError(
                f"the source strategy sends values with the standard pickle module, "
                f"which cannot serialize something {_qualname(fn)} needs: {exc}"
            ) from exc

    def encode_calls(self, fn: Callable[..., Any], calls: Sequence[Call], protocol: int) -> bytes:
        """The calls, pickled by name, after the code of the user's own classes and functions
        they hold (of ``__main__``, of the function's module, or of another local module), so
        the runner defines them under their own module and names first. Something of the user's
        that cannot travel fails here, naming it."""
        found: dict[int, Any] = {}
        try:
            data = _dumps_noting_types(list(calls), protocol, found)
        except Exception as exc:
            raise SerializationError(
                f"the source strategy sends arguments with the standard pickle module: "
                f"{_cannot_pickle(fn, calls, exc)}"
            ) from exc
        shipped = _ship_user_objects(inspect.unwrap(fn), found.values())
        if shipped is None:
            return data
        shipped["calls"] = data
        try:
            return pickle.dumps(shipped, protocol=protocol)
        except Exception as exc:
            raise SerializationError(
                f"the source strategy cannot carry what the classes of the arguments of "
                f"{_qualname(fn)} need: {exc}"
            ) from exc

    def build(self, fn: Callable[..., Any]) -> dict[str, Any]:
        reference = _importable(fn)
        fn = inspect.unwrap(fn)
        if reference is not None:
            # a builtin or a function of an installed module (decorated or not, as
            # numpy.linalg.norm): the remote imports it by the name it has here
            module, qualname = reference
            top, _, rest = qualname.partition(".")
            source = f"from {module} import {top} as __clustrix_ref__\n"
            source += f"__clustrix_fn__ = __clustrix_ref__{'.' + rest if rest else ''}\n"
            return {"name": "__clustrix_fn__", "source": source, "constants": {}, "defaults": {}}
        if not isinstance(fn, types.FunctionType):
            raise SerializationError(
                f"the source strategy ships Python functions, not {type(fn).__name__} {fn!r}"
            )
        state = _SourceState(main=fn)
        state.add_function(fn, fn.__name__)
        imports = "".join(sorted(state.imports))
        defs = state.definitions()
        source = imports + "\n" + defs
        return {
            "name": fn.__name__,
            "module": fn.__module__,
            "source": source,
            "constants": state.constants,
            "modules": state.shipped_modules(),
            "defaults": state.defaults,
        }


def _dumps_noting_types(obj: Any, protocol: int, found: dict[int, Any]) -> bytes:
    """``pickle.dumps(obj)``, noting in ``found`` every class and plain function it refers to
    (an instance's class included)."""
    import io

    class Noting(pickle.Pickler):
        def reducer_override(self, value: Any) -> Any:
            kind = value if isinstance(value, (type, types.FunctionType)) else type(value)
            found.setdefault(id(kind), kind)
            return NotImplemented

    buffer = io.BytesIO()
    Noting(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def _ship_user_objects(fn: Any, objects: Iterable[Any]) -> dict[str, Any] | None:
    """What the runner needs before it unpickles values that refer to ``objects`` by name: the
    source of those of ``__main__`` or of ``fn``'s module (defined in a module of that name) and
    the other local modules; None when all of them are importable there anyway."""
    fn_module = getattr(fn, "__module__", None)
    own = {"__main__"}  # modules whose code travels as the source of the parts used
    if fn_module and _is_user_module(sys.modules.get(fn_module)):
        own.add(fn_module)
    states: dict[str, _SourceState] = {}
    modules = _SourceState(main=fn)
    for obj in objects:
        name = getattr(obj, "__module__", None)
        module = sys.modules.get(name or "")
        if module is None or name in ("builtins", "copyreg"):
            continue
        if name not in own:
            if _is_user_module(module):
                modules.ship_module(module)
            continue
        qualname = getattr(obj, "__qualname__", "")
        if "<" in qualname or not _resolves(name, qualname, obj):
            continue  # not picklable by name: pickle itself said so already
        state = states.get(name)  # type: ignore[arg-type]
        if state is None:
            state = states[name] = _SourceState(main=fn, module=name)  # type: ignore[index]
        top = sys.modules[name].__dict__[qualname.split(".")[0]]  # type: ignore[index]
        if isinstance(top, type):
            state.add_class(top, top.__name__)
        elif isinstance(top, types.FunctionType):
            state.add_function(top, top.__name__)
        for inner in state.modules.items():
            modules.modules.setdefault(*inner)
    if not states and not modules.modules:
        return None
    return {
        "modules": modules.shipped_modules(),
        "namespaces": [
            (
                name,
                {
                    "source": "".join(sorted(st.imports)) + "\n" + st.definitions(),
                    "constants": st.constants,
                    "defaults": st.defaults,
                },
            )
            for name, st in states.items()
        ],
    }


class _SourceState:
    def __init__(self, main: Any, module: str | None = None) -> None:
        self.main = main
        self.module = module or main.__module__
        self.imports: set[str] = set()
        self.constants: dict[str, Any] = {}
        self.defs: list[tuple[tuple[int, str], str]] = []
        self.needs: dict[str, set[str]] = {}
        """Class name -> the names its definition uses when it runs (bases, class body)."""
        self.defaults: dict[str, tuple[Any, Any]] = {}
        self.seen: set[int] = set()
        self.bound: set[str] = set()
        self.modules: dict[str, tuple[str, dict[str, Any]]] = {}
        """Other local (user) modules the code imports, shipped as source with the current values
        of their plain module-level variables, dependencies first."""
        self._shipping: set[str] = set()

    def ship_module(self, module: types.ModuleType) -> None:
        """Ship a user module the function imports (it is not installed on the remote)."""
        name = module.__name__
        if name in self.modules or name in self._shipping or name == self.module:
            return
        self._shipping.add(name)
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError) as exc:
            raise SerializationError(
                f"{_qualname(self.main)} uses the local module {name!r}, whose source cannot be "
                f"read to ship it: {exc}"
            ) from exc
        for value in list(vars(module).values()):
            dep = value if isinstance(value, types.ModuleType) else None
            if dep is None and isinstance(value, (types.FunctionType, type)):
                dep = sys.modules.get(getattr(value, "__module__", "") or "")
            if dep is not None and dep is not module and _is_user_module(dep):
                self.ship_module(dep)
        self.modules[name] = (source, _current_values(self.main, module, source))

    def shipped_modules(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, source, values set after running the source), dependencies first."""
        return [(name, source, values) for name, (source, values) in self.modules.items()]

    def definitions(self) -> str:
        """The shipped definitions in an order that runs: by line, but a class after the classes
        (and other definitions) its bases and class body use (definitions from several notebook
        cells or prompts have unrelated line numbers)."""
        pending = sorted(self.defs)
        names = {key[1] for key, _ in pending}
        done: set[str] = set()
        out: list[str] = []
        while pending:
            ready = [
                i
                for i, ((_, name), _) in enumerate(pending)
                if not (self.needs.get(name, set()) & names) - done - {name}
            ]
            key, text = pending.pop(ready[0] if ready else 0)  # a cycle: keep line order
            done.add(key[1])
            out.append(text)
        return "\n".join(out)

    def add_function(self, fn: types.FunctionType, bind_as: str) -> None:
        if id(fn) in self.seen:
            return
        self.seen.add(id(fn))
        what = _qualname(fn)
        if fn.__name__ == "<lambda>":
            raise SerializationError(
                f"the source strategy cannot ship the lambda {what}: give it a name with def "
                f"(or use the cloudpickle strategy with a remote Python of the same version)"
            )
        raw = _source_of(fn)[0]
        text = textwrap.dedent(raw)
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            raise SerializationError(f"cannot parse the source of {what}: {exc}") from exc
        node = next(
            (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None
        )
        if node is None or node.name != fn.__name__:
            raise SerializationError(f"cannot find the definition of {what} in its source")
        if isinstance(node, ast.AsyncFunctionDef):
            raise SerializationError(
                f"{what} is a coroutine function; clustrix runs plain functions"
            )
        surgery = _Surgery(text)
        kept = []
        for dec in node.decorator_list:
            if _is_cluster_decorator(dec, fn.__globals__):
                # remove '@' through the end of the decorator expression
                start_line = dec.lineno
                surgery.replace((start_line, 0), (dec.end_lineno + 1, 0), "")  # type: ignore[operator]
            else:
                kept.append(dec)
        if kept:
            names = ", ".join(ast.dump(d)[:60] for d in kept)
            raise SerializationError(
                f"{what} has decorators other than @cluster ({names}); the source strategy cannot "
                f"rebuild them on the remote"
            )
        args = node.args
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            surgery.replace(*_span(default), "None")
        for arg in [
            *args.posonlyargs,
            *args.args,
            *args.kwonlyargs,
            *(a for a in (args.vararg, args.kwarg) if a is not None),
        ]:
            if arg.annotation is not None:
                start = (arg.lineno, arg.col_offset + len(arg.arg.encode("utf-8")))
                surgery.replace(start, _span(arg.annotation)[1], "")
        if node.returns is not None:
            ret_start, ret_end = _span(node.returns)
            prefix = surgery.lines[ret_start[0] - 1].encode("utf-8")[: ret_start[1]].decode("utf-8")
            arrow = prefix.rfind("->")
            if arrow < 0:
                raise SerializationError(f"cannot strip the return annotation of {what}")
            surgery.replace((ret_start[0], len(prefix[:arrow].encode("utf-8"))), ret_end, "")
        body = surgery.result()
        if bind_as != fn.__name__:
            body += f"{bind_as} = {fn.__name__}\n"
        order = (getattr(fn.__code__, "co_firstlineno", 0), fn.__name__)
        self.defs.append((order, body))
        self.defaults[fn.__name__] = (fn.__defaults__, fn.__kwdefaults__)
        self._check_picklable(fn, "default values", (fn.__defaults__, fn.__kwdefaults__))
        if fn.__closure__:
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
                try:
                    value = cell.cell_contents
                except ValueError:
                    raise SerializationError(
                        f"{what} uses {name!r} from its enclosing function before it is assigned"
                    ) from None
                self.add_global(fn, name, value)
        for name in sorted(_code_names(fn.__code__)):
            if name in fn.__globals__:
                self.add_global(fn, name, fn.__globals__[name])

    def _check_picklable(self, fn: Any, what: str, value: Any) -> None:
        try:
            pickle.dumps(value, protocol=2)
        except Exception as exc:
            raise SerializationError(
                f"the source strategy cannot carry the {what} of {_qualname(fn)}: {exc}"
            ) from exc

    def add_global(self, fn: types.FunctionType, name: str, value: Any) -> None:
        if name in self.bound:
            return
        self.bound.add(name)
        if isinstance(value, types.ModuleType):
            if _is_user_module(value):
                self.ship_module(value)
            mod = value.__name__
            if mod == name:
                self.imports.add(f"import {mod}\n")
            elif "." in mod and mod.rsplit(".", 1)[1] == name:
                parent, leaf = mod.rsplit(".", 1)
                self.imports.add(f"from {parent} import {leaf}\n")
            else:
                self.imports.add(f"import {mod} as {name}\n")
            return
        if _is_cluster_object(value):
            inner = getattr(value, "__wrapped__", None)
            if isinstance(inner, types.FunctionType):
                self.add_function(inner, name)
            return
        if isinstance(value, types.FunctionType) and value.__module__ == self.module:
            self.add_function(value, name)
            return
        if isinstance(value, type) and value.__module__ == self.module:
            self.add_class(value, name)
            return
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None)
        if (
            (
                isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type))
                or callable(value)
            )
            and module
            and qualname
            and module != self.module
            and "<" not in qualname
            and not isinstance(value, _PLAIN)
        ):
            if _resolves(module, qualname, value):
                user = sys.modules.get(module)
                if isinstance(user, types.ModuleType) and _is_user_module(user):
                    self.ship_module(user)
                top = qualname.split(".")[0]
                if top == qualname:
                    line = f"from {module} import {qualname}" + (
                        f" as {name}" if name != qualname else ""
                    )
                    self.imports.add(line + "\n")
                else:
                    self.imports.add(f"from {module} import {top} as _clustrix_{top}\n")
                    self.imports.add(f"{name} = _clustrix_{top}.{qualname.split('.', 1)[1]}\n")
                return
        if _is_plain(value):
            self.constants[name] = value
            return
        try:
            pickle.dumps(value, protocol=2)
        except Exception as exc:
            raise SerializationError(
                f"{_qualname(self.main)} uses the global {name!r} (a {type(value).__module__}."
                f"{type(value).__qualname__}) that the source strategy cannot carry: it is not a module, "
                f"an importable function or class, a helper of the same module, or a picklable value ({exc})"
            ) from exc
        self.constants[name] = value

    def add_class(self, cls: type, name: str) -> None:
        if id(cls) in self.seen:
            return
        self.seen.add(id(cls))
        raw, first = _source_of(cls)
        text = textwrap.dedent(raw)
        tree = ast.parse(text)
        module_globals = vars(sys.modules[cls.__module__])
        node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
        if node is not None:  # @cluster on its methods: plain methods on the remote
            surgery = _Surgery(text)
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for dec in item.decorator_list:
                        if _is_cluster_decorator(dec, module_globals):
                            start = (dec.lineno, 0)
                            surgery.replace(start, (dec.end_lineno + 1, 0), "")  # type: ignore[operator]
            text = surgery.result()
            self.needs[cls.__name__] = _class_needs(node)
        self.defs.append(
            (
                (first, cls.__name__),
                text + (f"{name} = {cls.__name__}\n" if name != cls.__name__ else ""),
            )
        )
        used = {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
        for other in sorted(used):
            if other in module_globals and other != cls.__name__:
                self.add_global(self.main, other, module_globals[other])


def _class_needs(node: ast.ClassDef) -> set[str]:
    """The names a class statement uses when it runs: its bases, keywords, decorators and the
    statements of its body outside the functions it defines."""
    used: set[str] = set()
    roots: list[ast.AST] = [*node.bases, *node.keywords, *node.decorator_list]
    for stmt in node.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots += [*stmt.decorator_list, *stmt.args.defaults]
            roots += [d for d in stmt.args.kw_defaults if d is not None]
        else:
            roots.append(stmt)
    for root in roots:
        used |= {n.id for n in ast.walk(root) if isinstance(n, ast.Name)}
    return used


# --------------------------------------------- source of code from notebooks and prompts


def _source_of(obj: Any) -> tuple[str, int]:
    """(source text, first line) of a function or class. Beyond :func:`inspect.getsourcelines`:
    a class of a notebook cell or of Python 3.13's prompt (whose ``__main__`` has no file) is
    found in the cell or prompt its methods come from; a function or class typed at the
    ``>>>`` prompt of an older Python is recovered from the readline history, and used only
    when compiling it gives the very code object(s) the interpreter has."""
    error: Exception
    try:
        lines, first = inspect.getsourcelines(obj)
        if not isinstance(obj, type) or _defines_class("".join(lines), obj.__name__):
            return "".join(lines), first
        # 3.13's new prompt: __main__ has the prompt's own file, and inspect reads a class's
        # "source" there by its __firstlineno__
        error = OSError(f"inspect found no class {obj.__name__} where it looked")
    except (OSError, TypeError) as exc:
        error = exc
    found = _class_in_cached_lines(obj) if isinstance(obj, type) else None
    if found is None:
        found = _from_history(obj)
    if found is not None:
        return found
    kind = "class" if isinstance(obj, type) else "function"
    what = _qualname(obj)
    if _typed_at_prompt(obj):
        raise SerializationError(
            f"the source strategy needs the source code of the {kind} {what}, which was typed at "
            f"the interactive prompt: Python {platform.python_version()} keeps no source of what "
            f"is typed there (3.13's prompt does), and the readline history "
            f"{'has no definition of it that compiles to the same code' if _history_lines() else 'is not available'}"
            f". Put it in a file and import it (or %run it), or use the cloudpickle strategy with "
            f"a remote Python of the same version."
        ) from error
    raise SerializationError(
        f"the source strategy needs the source code of the {kind} {what}, and there is none "
        f"(generated at run time, or its file is gone?): {error}. Define it in a file, or use "
        f"the cloudpickle strategy with a remote Python of the same version."
    ) from error


def _typed_at_prompt(obj: Any) -> bool:
    codes = _codes_of(obj)
    return bool(codes) and all(c.co_filename == "<stdin>" for c in codes)


def _codes_of(obj: Any) -> list[types.CodeType]:
    """The code objects of a function, or of the methods a class defines itself."""
    if isinstance(obj, types.FunctionType):
        return [obj.__code__]
    if not isinstance(obj, type):
        return []
    codes = []
    for value in vars(obj).values():
        for candidate in (
            value,
            getattr(value, "__func__", None),
            *(getattr(value, a, None) for a in ("fget", "fset", "fdel")),
        ):
            if isinstance(candidate, types.FunctionType) and candidate.__qualname__.startswith(
                obj.__qualname__ + "."
            ):
                codes.append(candidate.__code__)
    return codes


def _class_in_cached_lines(cls: type) -> tuple[str, int] | None:
    """A class of ``__main__`` (no file) found in the source lines linecache keeps for the cell
    or prompt its methods come from, or (a class without methods) in any of those."""
    import linecache

    codes = _codes_of(cls)
    if codes:
        files = list(dict.fromkeys(c.co_filename for c in codes))
    else:
        files = [
            f for f in reversed(list(linecache.cache)) if f.startswith("<") or "ipykernel" in f
        ]
    for filename in files:
        lines = linecache.getlines(filename)
        if not lines:
            continue
        try:
            tree = ast.parse("".join(lines))
        except SyntaxError:
            continue
        for node in reversed(tree.body):
            if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                text = "".join(lines[first - 1 : node.end_lineno])  # type: ignore[attr-defined]
                if _same_class(text, cls, filename):
                    return text, first
    return None


def _history_lines() -> list[str]:
    """The lines of the readline history, when the interactive prompt loaded readline (never
    imported here: importing it can write to the terminal)."""
    readline: Any = sys.modules.get("readline")
    if readline is None:
        return []
    try:
        n = readline.get_current_history_length()
        return [readline.get_history_item(i) or "" for i in range(1, n + 1)]
    except Exception:
        return []


def _from_history(obj: Any) -> tuple[str, int] | None:
    """The latest definition of ``obj`` typed at the prompt (readline history) that compiles
    to the code the interpreter ran."""
    if not _typed_at_prompt(obj) and not (isinstance(obj, type) and obj.__module__ == "__main__"):
        return None
    lines = _history_lines()
    keyword = "class" if isinstance(obj, type) else "def"
    import re

    start = re.compile(rf"(async\s+)?{keyword}\s+{re.escape(obj.__name__)}\b")
    for i in range(len(lines) - 1, -1, -1):
        if not start.match(lines[i]):
            continue
        first = i
        while first > 0 and lines[first - 1].startswith("@"):
            first -= 1
        block = lines[first : i + 1]
        for line in lines[i + 1 :]:
            if not line[:1].isspace() and not line.startswith(("@", ")", "]", "}")):
                break
            if line.startswith("@"):
                break
            block.append(line)
        text = "".join(line + "\n" for line in block)
        if isinstance(obj, type) and _same_class(text, obj, "<stdin>"):
            return text, first + 1
        if isinstance(obj, types.FunctionType) and _compiles_to(text, obj.__code__):
            return text, first + 1
    return None


def _compiles_to(text: str, code: types.CodeType) -> bool:
    try:
        module = compile(text, code.co_filename, "exec", dont_inherit=True)
    except SyntaxError:
        return False
    return any(_same_code(c, code) for c in _inner_codes(module))


def _inner_codes(code: types.CodeType) -> Iterable[types.CodeType]:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield const
            yield from _inner_codes(const)


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    if (a.co_name, a.co_code, a.co_names, a.co_varnames, a.co_freevars) != (
        b.co_name,
        b.co_code,
        b.co_names,
        b.co_varnames,
        b.co_freevars,
    ) or len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _defines_class(text: str, name: str) -> bool:
    try:
        tree = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return False
    return any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body)


def _same_class(text: str, cls: type, filename: str) -> bool:
    """Whether ``text`` (from ``filename``) defines a class like ``cls``: same base names, the
    same names defined in its body, and methods (those of ``filename``) that compile to the
    very code objects ``cls`` has."""
    try:
        tree = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return False
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None or node.name != cls.__name__:
        return False
    bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
    if bases != [b.__name__ for b in cls.__bases__ if b is not object]:
        return False
    codes = [c for c in _codes_of(cls) if c.co_filename == filename]
    if codes:
        try:
            compiled = list(
                _inner_codes(
                    compile(textwrap.dedent(text), codes[0].co_filename, "exec", dont_inherit=True)
                )
            )
        except SyntaxError:
            return False
        return all(any(_same_code(c, code) for c in compiled) for code in codes)
    defined = {
        t.id
        for stmt in node.body
        for t in ast.walk(stmt)
        if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)
    } | {stmt.name for stmt in node.body if isinstance(stmt, (ast.FunctionDef, ast.ClassDef))}
    return defined == {k for k in vars(cls) if not k.startswith("__")}


def _is_cluster_object(value: Any) -> bool:
    return (
        type(value).__module__.startswith("clustrix_core")
        or getattr(value, "__module__", "") == "clustrix_core.decorator"
    )


def _assigned_names(tree: ast.Module) -> dict[str, ast.expr | None]:
    """Names a module binds by assignment at its top level (inside if/try/with blocks too) ->
    the value expression of a simple ``NAME = value`` (None for other assignments)."""
    found: dict[str, ast.expr | None] = {}

    def targets(node: ast.expr, value: ast.expr | None) -> None:
        if isinstance(node, ast.Name):
            found[node.id] = value
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                targets(elt, None)

    def walk(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    targets(target, stmt.value if len(stmt.targets) == 1 else None)
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
                targets(stmt.target, stmt.value if isinstance(stmt, ast.AnnAssign) else None)
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list) and not isinstance(
                    stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
                ):
                    walk(inner)
            for handler in getattr(stmt, "handlers", ()):
                walk(handler.body)

    walk(tree.body)
    return found


def _current_values(fn: Any, module: types.ModuleType, source: str) -> dict[str, Any]:
    """The current values of ``module``'s variables (bound by assignment at its top level) that
    are plain values, to be set after the shipped source ran: ``mytools.OFFSET = 0`` after
    ``import mytools`` holds remotely as it does here (and as it does under cloudpickle). A
    variable the source sets to a literal that now holds something else is refused, naming it."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    now = vars(module)
    values = {}
    for name, expr in _assigned_names(tree).items():
        if name not in now or name.startswith("__"):
            continue
        value = now[name]
        if _is_plain(value):
            values[name] = value
            continue
        if expr is None:
            continue
        try:
            ast.literal_eval(expr)
        except Exception:
            continue  # made by code (a call, a class...): the shipped source makes it again
        raise SerializationError(
            f"{_qualname(fn)} uses the local module {module.__name__!r}, whose variable {name!r} "
            f"was changed after import to a {type(value).__module__}.{type(value).__qualname__}; "
            f"the source strategy carries changed module variables only when they are plain "
            f"values (numbers, strings, lists, dicts...). Pass it as an argument instead, or use "
            f"the cloudpickle strategy with a remote Python of the same version."
        )
    return values


def _importable(fn: Any) -> tuple[str, str] | None:
    """(module, qualified name) by which the remote can import ``fn`` or a wrapper of it: a
    builtin, or a function of an installed package (not user code nor ``__main__``, which travel
    as source), whatever decorators it has."""
    seen: set[int] = set()
    obj = fn
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if (
            not _is_cluster_object(obj)
            and isinstance(module, str)
            and isinstance(qualname, str)
            and module != "__main__"
            and "<" not in qualname
            and (not isinstance(obj, types.FunctionType) or _user_module(obj) is None)
            and _resolves(module, qualname, obj)
        ):
            return module, qualname
        obj = getattr(obj, "__wrapped__", None)
    return None


def _resolves(module: str, qualname: str, value: Any) -> bool:
    mod = sys.modules.get(module)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj is value


# ---------------------------------------------------------------- payloads

BUILTIN_SERIALIZERS: dict[str, type[Serializer]] = {
    "cloudpickle": CloudpickleSerializer,
    "dill": DillSerializer,
    "source": SourceSerializer,
}


def choose_strategies(
    remote: RemoteInfo, requested: str, available: Sequence[Serializer]
) -> list[Serializer]:
    """The strategies to encode with, best first. ``requested`` is a profile's ``serializer``."""
    if requested != "auto":
        chosen = [s for s in available if s.name == requested]
        if not chosen:
            raise SerializationError(f"serializer {requested!r} is not installed")
        strategy = chosen[0]
        if not strategy.applies(remote):
            raise SerializationError(
                f"serializer {requested!r} cannot produce something the remote Python {remote.python} "
                f"loads (local Python {platform.python_version()}; remote cloudpickle {remote.cloudpickle}, "
                f"dill {remote.dill}); use serializer='source' or 'auto'"
            )
        return [strategy]
    return [s for s in available if s.in_auto and s.applies(remote)]


FALLBACK_LIMIT = 1 << 20


@attrs.frozen(kw_only=True)
class Payload:
    """A job's sealed inputs: ``payload.bin`` (the function) and ``calls[N]`` (task N's calls)."""

    function: bytes
    calls: tuple[bytes, ...]
    strategies: tuple[str, ...]

    def files(self, task: int | None = None) -> dict[str, bytes]:
        """File name -> content: everything, or what task ``task`` reads."""
        out = {"payload.bin": self.function}
        tasks = range(len(self.calls)) if task is None else [task]
        out.update((f"calls.{t}", self.calls[t]) for t in tasks)
        return out


def encode_payload(
    fn: Callable[..., Any],
    calls: Sequence[Call],
    tasks: Sequence[tuple[int, int]],
    *,
    job_id: str,
    key: bytes,
    remote: RemoteInfo,
    strategies: Sequence[Serializer],
) -> Payload:
    """Encode ``fn`` once and each task's calls with every strategy that applies, best first; the
    runner loads the first it can. Fallback encodings repeat the calls, so they are added only
    while the inputs stay under ``FALLBACK_LIMIT`` bytes. Fails locally when no strategy can."""
    protocol = min(pickle.HIGHEST_PROTOCOL, remote.pickle_protocol)
    errors = []
    encodings: list[tuple[str, bytes, list[bytes]]] = []
    size = 0
    for strategy in strategies:
        if encodings and size > FALLBACK_LIMIT:
            break
        try:
            data = strategy.encode_function(fn, protocol)
            per_task = [strategy.encode_calls(fn, calls[a:b], protocol) for a, b in tasks]
        except SerializationError as exc:
            errors.append(f"{strategy.name}: {exc}")
            continue
        except Exception as exc:  # a fallback must never break what a better strategy encoded
            if not encodings:
                raise
            logger.debug("fallback strategy %s failed on %s: %s", strategy.name, _qualname(fn), exc)
            continue
        cost = len(data) + sum(map(len, per_task))
        if encodings and size + cost > FALLBACK_LIMIT:
            break
        encodings.append((strategy.name, data, per_task))
        size += cost
    if not encodings:
        if not strategies:
            raise SerializationError(
                f"no serialization strategy applies to the remote Python {remote.python}"
            )
        raise SerializationError(f"cannot serialize {_qualname(fn)}: " + "; ".join(errors))
    envelope = {
        "version": FORMAT_VERSION,
        "job_id": job_id,
        "python": platform.python_version(),
        "strategies": [name for name, _, _ in encodings],
        "encodings": [{"strategy": name, "data": data} for name, data, _ in encodings],
        "tasks": [list(t) for t in tasks],
        "result_protocol": min(pickle.HIGHEST_PROTOCOL, 5),
    }
    function = runner.seal(
        runner.PAYLOAD_MAGIC, key, pickle.dumps(envelope, protocol=protocol), job_id
    )
    sealed_calls = tuple(
        runner.seal(
            runner.CALLS_MAGIC,
            key,
            pickle.dumps({name: per_task[t] for name, _, per_task in encodings}, protocol=protocol),
            runner.task_context(job_id, t),
        )
        for t in range(len(tasks))
    )
    return Payload(
        function=function, calls=sealed_calls, strategies=tuple(n for n, _, _ in encodings)
    )


def decode_result(
    blob: bytes, key: bytes, *, job_id: str, task: int, ncalls: int, what: str = "result"
) -> dict[str, Any]:
    """Verify and unpickle the outcome of task ``task`` of job ``job_id`` written by the runner.
    Anything but an authentic, well-formed report for exactly that task is an IntegrityError."""
    from .errors import IntegrityError

    try:
        body = runner.unseal(
            runner.RESULT_MAGIC, key, blob, what, runner.task_context(job_id, task)
        )
    except ValueError as exc:
        raise IntegrityError(f"{exc}; refusing to unpickle it") from None
    try:
        report = pickle.loads(body)  # noqa: S301 - authenticated above
    except Exception as exc:
        raise IntegrityError(f"{what} is authentic but cannot be read: {exc}") from None
    ok = (
        isinstance(report, dict)
        and report.get("task") == task
        and isinstance(report.get("outcomes"), list)
        and (
            report.get("error")
            or (
                len(report["outcomes"]) == ncalls
                and all(isinstance(o, dict) and "ok" in o for o in report["outcomes"])
            )
        )
    )
    if not ok:
        raise IntegrityError(
            f"{what} is authentic but is not the report of task {task} with {ncalls} call(s)"
        )
    return report


def loads_value(data: bytes) -> Any:
    return pickle.loads(data)  # noqa: S301 - from an authenticated result
