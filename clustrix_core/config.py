"""Profiles: where and how jobs run, read from TOML files, the environment and ``configure()``.

The most specific setting wins: call-site arguments > ``configure()`` > config file(s) > defaults.
Files: ``$CLUSTRIX_CONFIG`` alone when set; otherwise the user config file
(``$XDG_CONFIG_HOME/clustrix/clustrix.toml``) then ``./clustrix.toml`` (later wins, per key).
``./clustrix.toml`` is read only when it is the user's own file and not writable by group or
others: a profile names the interpreter and setup commands jobs run, so a file planted in a shared
directory must not configure them (it is ignored with a logged warning that says why).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError
from .resources import parse_memory, parse_time

logger = logging.getLogger(__name__)

DEFAULT_PROFILE = "local"
_SERIALIZERS = ("auto", "cloudpickle", "dill", "source")
_CLEANUP = ("on_success", "always", "never")
_ON_INTERRUPT = ("cancel", "detach")


def _str_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{value!r} must be a string or a list of strings")
    for item in value:
        try:
            _check_text(item)
        except ConfigError as exc:  # a converter: build_profile names the key (_culprit)
            raise TypeError(str(exc)) from None
    return tuple(value)


def _check_text(value: str, key: str = "") -> None:
    """Refuse text no shell, file name or environment can carry (NUL, lone surrogates)."""
    what = f"{key}={value!r}" if key else repr(value)
    if "\x00" in value:
        raise ConfigError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} is not valid text (a lone surrogate)") from None


def _number(key: str, *, optional: bool = False, positive: bool = True):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None and optional:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value != value  # NaN
            or value in (float("inf"), float("-inf"))
            or value < 0
            or (positive and value == 0)
        ):
            raise ConfigError(
                f"{key}={value!r} must be a number of seconds {'> 0' if positive else '>= 0'}"
            )

    return check


def _opt_pos_int(key: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"{key}={value!r} must be a whole number >= 1")

    return check


def _nonneg_int(key: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{key}={value!r} must be a whole number >= 0")

    return check


def _opt_str(key: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} must be a string")
        if value is not None:
            _check_text(value, key)

    return check


def _choice(key: str, choices: tuple[str, ...]):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")

    return check


def _opt_bool(key: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")

    return check


def _memory(value: Any) -> int | None:
    return None if value is None else parse_memory(value)


def _time(value: Any) -> int | None:
    return None if value is None else parse_time(value)


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"env={value!r} must be a table of NAME = value")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ConfigError(f"env key {k!r} is not a valid environment variable name")
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ConfigError(f"env value {k}={v!r} must be a string or a number")
        _check_text(str(v), f"env value {k}")
        out[k] = str(v)
    return out


@attrs.frozen(kw_only=True)
class Profile:
    """Everything needed to run a job somewhere. Frozen; build changed copies with ``evolve``."""

    name: str = DEFAULT_PROFILE
    scheduler: str = attrs.field(default="local", validator=_opt_str("scheduler"))
    transport: str = attrs.field(default="local", validator=_opt_str("transport"))
    # how to reach the submit host (host, port, user, key_file, ...) is the transport plugin's:
    # its declared options, in ``options``
    # remote side
    python: str | None = attrs.field(default=None, validator=_opt_str("python"))
    work_dir: str = attrs.field(default="~/.clustrix/jobs", validator=_opt_str("work_dir"))
    environment: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    env: dict[str, str] = attrs.field(factory=dict, converter=_env)
    modules: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    setup: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    # resources
    cores: int = attrs.field(default=1, validator=_opt_pos_int("cores"))
    memory: int | None = attrs.field(default=None, converter=_memory)
    time: int | None = attrs.field(default=None, converter=_time)
    gpus: int = attrs.field(default=0, validator=_nonneg_int("gpus"))
    nodes: int = attrs.field(default=1, validator=_opt_pos_int("nodes"))
    partition: str | None = attrs.field(default=None, validator=_opt_str("partition"))
    queue: str | None = attrs.field(default=None, validator=_opt_str("queue"))
    account: str | None = attrs.field(default=None, validator=_opt_str("account"))
    qos: str | None = attrs.field(default=None, validator=_opt_str("qos"))
    job_name: str = attrs.field(default="clustrix", validator=_opt_str("job_name"))
    directives: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    # behaviour
    max_parallel: int | None = attrs.field(default=None, validator=_opt_pos_int("max_parallel"))
    chunksize: int | None = attrs.field(default=None, validator=_opt_pos_int("chunksize"))
    retries: int = attrs.field(default=0, validator=_nonneg_int("retries"))
    serializer: str = attrs.field(default="auto", validator=_choice("serializer", _SERIALIZERS))
    cleanup: str = attrs.field(default="on_success", validator=_choice("cleanup", _CLEANUP))
    stream_output: bool | None = attrs.field(default=None, validator=_opt_bool("stream_output"))
    """Show a job's stdout/stderr here as it arrives: None (default) for the blocking calls of
    ``@cluster`` (``f(x)``, ``f.map(xs)``) only; True also for executor futures; False never."""
    on_interrupt: str = attrs.field(
        default="cancel", validator=_choice("on_interrupt", _ON_INTERRUPT)
    )
    """What Ctrl-C during a blocking call (or an exception leaving ``with ClusterExecutor()``)
    does to the jobs it started: ``cancel`` them on the scheduler, or ``detach`` (they keep
    running; re-attach by id)."""
    poll_min: float | None = attrs.field(
        default=None, validator=_number("poll_min", optional=True, positive=False)
    )
    """Fastest status-poll interval (seconds); default: the scheduler's ``poll_min``."""
    poll_max: float = attrs.field(default=2.0, validator=_number("poll_max"))
    command_timeout: float = attrs.field(default=120.0, validator=_number("command_timeout"))
    """Seconds a scheduler command (submit, status, cancel) may take before it counts as failed."""
    status_patience: float = attrs.field(
        default=60.0, validator=_number("status_patience", positive=False)
    )
    """Seconds of consecutive failed status queries (at least 5 of them) after which the waiting
    futures fail with the error, instead of waiting for ever (the jobs stay re-attachable)."""
    options: dict[str, Any] = attrs.field(factory=dict)
    """Scheduler- or transport-specific settings declared by the plugin (e.g. ``pe`` for SGE)."""

    def evolve(self, **changes: Any) -> Profile:
        return build_profile(self.name, {**profile_to_dict(self), **changes})

    def option(self, key: str, default: Any = None) -> Any:
        """A plugin-declared option (``SchedulerSpec.options``), or ``default`` when unset."""
        value = self.options.get(key)
        return default if value is None else value

    @property
    def is_local(self) -> bool:
        return self.transport == "local"


FIELD_NAMES = frozenset(f.name for f in attrs.fields(Profile)) - {"name"}


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    data = attrs.asdict(profile, recurse=False)
    data.pop("name")
    options = data.pop("options")
    data.update(options)
    return data


def build_profile(
    name: str, values: Mapping[str, Any], *, plugin_options: Mapping[str, str] | None = None
) -> Profile:
    """Validate ``values`` and build a profile. Keys that are not profile fields must be options
    declared by the profile's scheduler or transport plugin (looked up when not given)."""
    core = {k: v for k, v in values.items() if k in FIELD_NAMES and k != "options"}
    extra = {k: v for k, v in values.items() if k not in FIELD_NAMES}
    extra.update(values.get("options") or {})
    if extra:
        if plugin_options is None:
            plugin_options = _declared_options(
                core.get("scheduler", "local"), core.get("transport", "local")
            )
        unknown = sorted(set(extra) - set(plugin_options))
        if unknown:
            accepted = ", ".join(sorted(FIELD_NAMES - {"options"} | set(plugin_options)))
            raise ConfigError(
                f"profile {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; accepted keys: {accepted}"
            )
    for field in ("cores", "gpus", "nodes", "max_parallel", "chunksize", "retries"):
        if isinstance(core.get(field), str) and core[field].strip().isdigit():
            core[field] = int(core[field])
    try:
        return Profile(name=name, options=extra, **core)
    except ConfigError as exc:
        raise ConfigError(f"profile {name!r}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"profile {name!r}: {_culprit(name, core, exc)}") from None


def _culprit(name: str, values: Mapping[str, Any], exc: TypeError) -> str:
    """Which value made building a profile fail with ``exc`` (a converter's TypeError)."""
    for key, value in values.items():
        try:
            Profile(name=name, **{key: value})
        except (TypeError, ConfigError) as own:
            return f"{key}={value!r}: {own}"
    return str(exc)


def _declared_options(scheduler: str, transport: str) -> dict[str, str]:
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    options: dict[str, str] = {}
    for kind, name in (("scheduler", scheduler), ("transport", transport)):
        spec = pm.find(kind, name)
        if spec is not None:
            options.update(spec.options)
    return options


# ---------------------------------------------------------------- loading


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "clustrix"


def cwd_config() -> Path:
    return Path.cwd() / "clustrix.toml"


def config_files() -> list[Path]:
    explicit = os.environ.get("CLUSTRIX_CONFIG")
    if explicit:
        return [Path(p) for p in explicit.split(os.pathsep) if p]
    files = [p for p in (user_config_dir() / "clustrix.toml",) if p.is_file()]
    local = cwd_config()
    if local.is_file() and _untrusted(local) is None:
        files.append(local)
    return files


def _untrusted_reason(st: os.stat_result) -> str | None:
    """Why a file with ``st`` must not configure this user's jobs (``None``: it may)."""
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_uid != os.geteuid():
        return f"it belongs to {_user_name(st.st_uid)} (uid {st.st_uid}), not to you"
    if st.st_mode & 0o022:
        return f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


_warned: set[tuple[str, str]] = set()


def _untrusted(path: Path, st: os.stat_result | None = None) -> str | None:
    """Check ``./clustrix.toml``; log (once per reason) why it is ignored."""
    if st is None:
        try:
            st = os.stat(path)
        except OSError:
            return "it cannot be read"
    reason = _untrusted_reason(st)
    if reason is not None:
        key = (str(path), reason)
        if key not in _warned:
            _warned.add(key)
            logger.warning(
                "clustrix: ignoring %s: %s. A config file names the commands your jobs run, so "
                "clustrix reads ./clustrix.toml only when it is yours and not writable by "
                "others (chmod go-w it if it is yours), or pass it explicitly with "
                "CLUSTRIX_CONFIG=%s",
                path,
                reason,
                path,
            )
    return reason


def _load_toml(path: Path, *, check_owner: bool = False) -> dict[str, Any]:
    """Parse ``path``; with ``check_owner``, the opened file itself must pass :func:`_untrusted`
    (checked on the descriptor, so it cannot be swapped after the check): else ``{}``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            if check_owner and _untrusted(path, os.fstat(fh.fileno())) is not None:
                return {}
            return tomllib.load(fh)
    except FileNotFoundError:
        if check_owner:
            return {}
        raise ConfigError(
            f"config file {str(path)!r} (from CLUSTRIX_CONFIG) does not exist"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


_lock = threading.Lock()
_configured: dict[str, dict[str, Any]] = {}
_configured_default: list[str] = []


def configure(profile: str | None = None, *, default: bool = False, **values: Any) -> None:
    """Set profile values in-process (they beat config files). ``configure(profile="hpc", cores=4)``.
    With ``default=True`` the profile becomes the default one. Values are validated at once."""
    name = profile or default_profile_name()
    with _lock:
        merged = {**_configured.get(name, {}), **values}
    load_profile(name, _extra=merged)  # validate now: bad values fail here
    with _lock:
        _configured[name] = merged
        if default:
            _configured_default[:] = [name]


def reset_configuration() -> None:
    """Forget everything ``configure()`` set (for tests)."""
    with _lock:
        _configured.clear()
        _configured_default.clear()


def file_profiles() -> dict[str, dict[str, Any]]:
    """All profiles from the config files, merged per key (later files win)."""
    profiles: dict[str, dict[str, Any]] = {}
    explicit = bool(os.environ.get("CLUSTRIX_CONFIG"))
    local = cwd_config()
    for path in config_files():
        data = _load_toml(path, check_owner=not explicit and path == local)
        unknown = set(data) - {"profiles", "default_profile"}
        if unknown:
            raise ConfigError(
                f"config file {str(path)!r}: unknown top-level key(s) {sorted(unknown)}; "
                "expected [profiles.NAME] tables and default_profile"
            )
        for name, values in (data.get("profiles") or {}).items():
            if not isinstance(values, dict):
                raise ConfigError(f"config file {str(path)!r}: profiles.{name} must be a table")
            profiles.setdefault(name, {}).update(values)
        if "default_profile" in data:
            profiles.setdefault("", {})["default_profile"] = data["default_profile"]
    return profiles


def default_profile_name() -> str:
    if _configured_default:
        return _configured_default[0]
    env = os.environ.get("CLUSTRIX_PROFILE")
    if env:
        return env
    meta = file_profiles().get("", {})
    return str(meta.get("default_profile", DEFAULT_PROFILE))


def profile_names() -> list[str]:
    names = {DEFAULT_PROFILE} | set(file_profiles()) | set(_configured)
    names.discard("")
    return sorted(names)


_ENV_LIST_FIELDS = {"environment", "modules", "setup", "directives"}


def env_overrides() -> dict[str, Any]:
    """Profile values from ``CLUSTRIX_<FIELD>`` environment variables (e.g. ``CLUSTRIX_PARTITION``);
    they beat config files and lose to ``configure()`` and call-site arguments. List fields take
    newline-separated values."""
    out: dict[str, Any] = {}
    for field in sorted(FIELD_NAMES - {"options", "env"}):
        raw = os.environ.get(f"CLUSTRIX_{field.upper()}")
        if raw is None:
            continue
        if field in _ENV_LIST_FIELDS:
            out[field] = [line for line in raw.splitlines() if line.strip()]
        elif field == "stream_output":
            word = raw.strip().lower()
            if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ConfigError(f"CLUSTRIX_STREAM_OUTPUT={raw!r} must be true or false")
            out[field] = word in ("1", "true", "yes", "on")
        elif field in (
            "poll_min",
            "poll_max",
            "command_timeout",
            "status_patience",
        ):
            try:
                out[field] = float(raw)
            except ValueError:
                raise ConfigError(f"CLUSTRIX_{field.upper()}={raw!r} must be a number") from None
        else:
            out[field] = raw
    return out


def load_profile(
    name: str | None = None, *, _extra: Mapping[str, Any] | None = None, **overrides: Any
) -> Profile:
    """The profile ``name`` (default: the default profile) with call-site ``overrides`` applied."""
    name = name or default_profile_name()
    from_files = file_profiles()
    values: dict[str, Any] = {}
    if name in from_files and name != "":
        values.update(from_files[name])
    elif name != DEFAULT_PROFILE and name not in _configured and not _extra:
        known = ", ".join(profile_names())
        files = ", ".join(str(p) for p in config_files()) or "no config file found"
        raise ConfigError(
            f"unknown profile {name!r}; known profiles: {known} (config files: {files})"
        )
    values.update(env_overrides())
    later: dict[str, Any] = {}
    with _lock:
        later.update(_configured.get(name, {}))
    if _extra:
        later.update(_extra)
    later.update({k: v for k, v in overrides.items() if v is not None})
    # CLUSTRIX_<OPTION> for the options the profile's plugins declare (CLUSTRIX_HOST=...): as
    # the core's fields, they beat config files and lose to configure() and call-site values
    merged = {**values, **later}
    for key in _declared_options(
        merged.get("scheduler", "local"), merged.get("transport", "local")
    ):
        raw = os.environ.get(f"CLUSTRIX_{key.upper()}")
        if raw is not None and key not in FIELD_NAMES:
            values[key] = raw
    values.update(later)
    return build_profile(name, values)
