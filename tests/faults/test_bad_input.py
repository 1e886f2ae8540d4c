"""Bad input (issue 13): property-based (hypothesis) over every user-supplied string that reaches
a shell, a script or a file name, on the local, ssh, slurm and sge profiles. Each value arrives
intact where it should (an env value read back inside the job, a module name as the ``module``
command's argument, a setup line's output, the interpreter path) or fails with a clear
ConfigError/SubmissionError before anything runs; an injected command never runs (its marker
file never appears). Config fuzzing: random TOML values for every profile key and plugin option
give a ConfigError naming the key, never a traceback from deep inside."""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from clustrix_core.config import FIELD_NAMES, load_profile, reset_configuration  # noqa: E402
from clustrix_core.errors import ClustrixError, ConfigError, SubmissionError  # noqa: E402
from clustrix_core.executor import ClusterExecutor  # noqa: E402

from .conftest import TIMEOUT, cluster_values, records  # noqa: E402

pytestmark = pytest.mark.faults

EXAMPLES = int(os.environ.get("CLUSTRIX_FAULTS_EXAMPLES", "15"))
BACKENDS = ["local", "ssh", "slurm", "sge"]


def _injections(marker: Path) -> list[str]:
    m = shlex.quote(str(marker))
    return [
        f"$(touch {m})",
        f"`touch {m}`",
        f"'; touch {m}; '",
        f'"; touch {m}; "',
        f"\ntouch {m}\n",
        f"$(touch${{IFS}}{m})",
        f"x\\\ntouch {m}",
        "a b ${HOME} %s %a ' \" \\ ; | & > < * ? [ ] { } ~ # !",
        "Ünïcödé ✓ 雪 \u200b",
    ]


def hostile(marker: Path, *, newlines: bool = True, max_size: int = 12) -> st.SearchStrategy[str]:
    """Text with injections (that would create ``marker``), quotes, spaces and unicode."""
    blacklist = ["Cs", "Cc"] if not newlines else ["Cs"]
    chars = st.characters(blacklist_categories=blacklist, blacklist_characters="\x00")
    plain = st.text(chars, max_size=max_size)
    injected = st.tuples(plain, st.sampled_from(_injections(marker)), plain).map("".join)
    text = st.one_of(injected, plain)
    return text if newlines else text.map(lambda s: s.replace("\n", " ").replace("\r", " "))


def echo_env(key: str) -> dict[str, Any]:
    """Inside the job: what arrived (env value, the module command's argv, setup's output)."""
    import os as _os

    def read(name: str) -> str | None:
        try:
            with open(name, "rb") as fh:
                return fh.read().decode("utf-8", "surrogateescape")
        except OSError:
            return None

    return {"env": _os.environ.get(key), "module": read("module.args"), "setup": read("setup.out")}


def _fake_module(bin_dir: Path) -> None:
    """A ``module`` command that records its arguments (NUL-separated) in the job directory."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "module"
    script.write_text("#!/bin/sh\nprintf '%s\\0' \"$@\" >>module.args\n")
    script.chmod(0o755)


@pytest.mark.parametrize("cluster", BACKENDS)
def test_hostile_values_arrive_intact_or_are_refused(
    cluster: str,
    tmp_path: Path,
    profiles: Callable[..., Path],
    executors: Callable[..., ClusterExecutor],
) -> None:
    marker = tmp_path / "INJECTED"
    bin_dir = tmp_path / "fakebin"
    _fake_module(bin_dir)
    base = cluster_values(cluster)
    profiles(cluster)
    # an interpreter reached through a directory whose name is hostile
    pydir = tmp_path / "py dir $(touch x) `y` 'q' \"d\" ✓"
    pydir.mkdir()
    (pydir / "python").symlink_to(base["python"])
    path = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    outcomes = {"ran": 0, "refused": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        key=st.one_of(
            st.from_regex(r"CLX_[A-Za-z0-9_]{0,6}", fullmatch=True),
            st.from_regex(r"CLX_[A-Za-z0-9_]{0,6}", fullmatch=True),
            st.from_regex(r"CLX_[A-Za-z0-9_]{0,6}", fullmatch=True),
            hostile(marker, max_size=4).map(lambda s: "CLX_" + s),
        ),
        value=hostile(marker),
        module=hostile(marker),
        setup_value=hostile(marker),
        name=hostile(marker, newlines=False),
        work=st.one_of(
            st.text(st.characters(whitelist_categories=["L", "N", "Zs"]), max_size=8),
            hostile(marker, newlines=False),
        ),
        profile_name=hostile(marker, newlines=False),
        directive=st.one_of(
            st.from_regex(r"[A-Za-z0-9_.]{1,8}", fullmatch=True),
            st.from_regex(r"[A-Za-z0-9_.]{1,8}", fullmatch=True),
            hostile(marker, newlines=False),
        ),
    )
    def check(
        key: str,
        value: str,
        module: str,
        setup_value: str,
        name: str,
        work: str,
        profile_name: str,
        directive: str,
    ) -> None:
        work_dir = str(tmp_path / "work" / work.replace("/", "_"))
        values = {
            **base,
            "python": str(pydir / "python"),
            "env": {"PATH": path, key: value},
            "modules": [module],
            "setup": [f"printf '%s' {shlex.quote(setup_value)} >setup.out"],
            "job_name": name,
            "work_dir": work_dir,
            "cleanup": "always",
            "poll_max": 0.5,
        }
        if cluster in ("slurm", "sge"):
            values["directives"] = [
                f"--comment={directive}" if cluster == "slurm" else f"-ac note={directive}"
            ]
        pname = f"p-{profile_name}"
        try:
            reset_configuration()
            from clustrix_core import configure

            configure(profile=pname, **values)
            ex = executors(pname)
            fut = ex.submit(echo_env, key)
        except (ConfigError, SubmissionError) as exc:
            assert str(exc).strip()
            assert not marker.exists(), f"injected command ran: {values}"
            outcomes["refused"] += 1
            print(f"refused: {type(exc).__name__}: {str(exc)[:300]}")
            return
        got = fut.result(timeout=TIMEOUT)
        assert not marker.exists(), f"injected command ran: {values}"
        assert got["env"] == value
        assert got["module"] == f"load\0{module}\0"
        assert got["setup"] == setup_value
        assert records()[fut.job_id].profile == pname
        outcomes["ran"] += 1

    check()
    print(f"\nBAD-INPUT {cluster} {outcomes}")
    assert outcomes["ran"] >= min(3, EXAMPLES), outcomes  # the values did reach the jobs


# ------------------------------------------------------------------ config fuzzing

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5), inner, max_size=3),
    ),
    max_leaves=6,
)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_str(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _toml_str(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _plugin_options() -> dict[str, set[str]]:
    from clustrix_core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    out = {}
    for sched in ("local", "ssh", "slurm", "sge", "pbs"):
        spec = pm.find("scheduler", sched)
        if spec is not None:
            out[sched] = set(spec.options)
    return out


@pytest.mark.parametrize("scheduler", ["local", "ssh", "slurm", "sge", "pbs"])
def test_config_fuzz_names_the_key(
    scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _plugin_options().get(scheduler)
    if options is None:
        pytest.skip(f"the {scheduler} plugin is not installed")
    keys = sorted((FIELD_NAMES - {"options", "scheduler", "transport"}) | options)
    transport = "ssh" if scheduler in ("ssh",) else "local"
    config = tmp_path / "clustrix.toml"
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config))

    @settings(max_examples=40 * len(keys) // 10, deadline=None, derandomize=True)
    @given(key=st.sampled_from(keys), value=toml_values)
    def check(key: str, value: Any) -> None:
        text = (
            f'[profiles.fuzz]\nscheduler = "{scheduler}"\ntransport = "{transport}"\n'
            f'host = "127.0.0.1"\n'
            * (transport == "ssh" and key != "host")
            + f"{key} = {_toml(value)}\n"
        )
        if transport != "ssh":
            text = f'[profiles.fuzz]\nscheduler = "{scheduler}"\ntransport = "{transport}"\n'
            text += f"{key} = {_toml(value)}\n"
        config.write_text(text)
        reset_configuration()
        try:
            profile = load_profile("fuzz")
            from clustrix_core.executor import Backend

            Backend(profile)  # the scheduler's own validation
        except ConfigError as exc:
            assert key in str(exc), f"{key}={value!r}: {exc}"
        except ClustrixError as exc:  # e.g. a transport that cannot be set up: still named
            assert key in str(exc) or "profile" in str(exc), f"{key}={value!r}: {exc!r}"
        except Exception as exc:  # a traceback from deep inside: the defect this looks for
            raise AssertionError(
                f"{key} = {_toml(value)} raised {type(exc).__name__}: {exc}"
            ) from exc

    check()


def test_bad_strings_refused_before_submission(tmp_path: Path) -> None:
    """Strings no shell can carry (NUL, lone surrogates) and env names no shell accepts are a
    ConfigError naming the field, not an error from deep inside staging."""
    from clustrix_core.config import build_profile

    bad = {
        "env": [{"CLX": "a\x00b"}, {"CLX": "\udcff"}, {"é": "x"}, {"A-B": "x"}, {"CLX\n": "x"}],
        "work_dir": ["/tmp/a\x00b", "/tmp/\udcff"],
        "python": ["py\x00thon", "\udcff"],
        "setup": [["echo a\x00b"], ["\udcff"]],
        "modules": [["mod\x00"], ["\udcff"]],
        "job_name": ["a\x00b", "\udcff"],
    }
    for field, values in bad.items():
        for value in values:
            with pytest.raises(ConfigError) as info:
                build_profile("bad", {field: value})
            assert field.rstrip("s") in str(info.value) or field in str(info.value), (
                field,
                value,
                str(info.value),
            )
    assert sys.version_info >= (3, 8)
