"""Remote Python environments: a virtual environment per (interpreter, requirement set), built
once on the submit host under the user's private work directory, keyed by a hash, guarded by a
lock directory, and reused afterwards (the scheduler caches the answer per cluster)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, TransportError
from .transport import Transport

_BUILD = r"""
set -u
V=$1; PY=$2; REQ=$3; OLD=$4
if [ -e "$V/.clustrix-ready" ]; then echo "$V/bin/python"; exit 0; fi
mkdir -p "$(dirname "$V")"
i=0
until mkdir "$V.lock" 2>/dev/null; do
  i=$((i + 1)); if [ $i -gt 1800 ]; then echo "timed out waiting for the lock $V.lock" >&2; exit 3; fi
  sleep 0.5
  if [ -e "$V/.clustrix-ready" ]; then echo "$V/bin/python"; exit 0; fi
done
trap 'rmdir "$V.lock" 2>/dev/null' EXIT
if [ -e "$V/.clustrix-ready" ]; then echo "$V/bin/python"; exit 0; fi
rm -rf "$V"
fail() { echo "$1" >&2; rm -rf "$V"; exit 4; }
"$PY" -m venv "$V" >&2 || fail "creating a virtual environment with $PY failed"
if [ "$OLD" = 1 ]; then "$V/bin/python" -m pip install -q -U 'pip<22' >&2 || fail "upgrading pip failed"; fi
if command -v uv >/dev/null 2>&1; then
  uv pip install -q --python "$V/bin/python" -r "$REQ" >&2 || fail "uv pip install failed (requirements above)"
else
  "$V/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2 || fail "pip install failed (requirements above)"
fi
touch "$V/.clustrix-ready"
echo "$V/bin/python"
"""


def requirement_lines(environment: Sequence[str]) -> list[str]:
    """A profile's ``environment``: requirement strings, or the path of a local requirements file."""
    lines: list[str] = []
    for item in environment:
        if item.endswith(".txt") and Path(item).expanduser().is_file():
            for line in Path(item).expanduser().read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    lines.append(line)
        elif item.endswith(".txt"):
            raise ConfigError(f"environment={item!r}: the requirements file does not exist")
        else:
            lines.append(item.strip())
    return sorted(set(lines))


def prepare(
    transport: Transport,
    python: str,
    python_version: tuple[int, int],
    requirements: Sequence[str],
    base_dir: str,
) -> str:
    """Return the interpreter of a ready environment with ``requirements``, building it if
    needed. ``base_dir`` is inside the user's private work directory (nobody else can plant an
    environment there)."""
    reqs = sorted(set(requirements))
    digest = hashlib.sha256("\n".join([python, *reqs]).encode()).hexdigest()[:16]
    venv = f"{base_dir.rstrip('/')}/env-{digest}"
    req_path = f"{venv}.requirements.txt"
    transport.makedirs(base_dir, mode=0o700)
    transport.put_bytes(req_path, ("\n".join(reqs) + "\n").encode(), mode=0o600)
    old = "1" if python_version < (3, 8) else "0"
    result = transport.run(["sh", "-c", _BUILD, "clustrix-env", venv, python, req_path, old])
    if result.returncode != 0:
        raise TransportError(
            f"preparing the remote environment {venv} for {python} with {', '.join(reqs)} failed "
            f"(exit {result.returncode}):\n{result.stderr.strip()[-4000:]}"
        )
    return result.stdout.strip().splitlines()[-1]


__all__ = ["prepare", "requirement_lines"]
