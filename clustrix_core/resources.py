"""Parsing and formatting of resource values: memory sizes and time limits."""

from __future__ import annotations

import math
import re

from .errors import ConfigError

_MEMORY_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
MEMORY_HELP = (
    "a number of bytes or a number with a unit: K/M/G/T or KiB/MiB/GiB/TiB (powers of 1024), "
    "KB/MB/GB/TB (powers of 1000), e.g. '8GB', '512M', '1.5GiB'"
)
TIME_HELP = "seconds as a number, [[D-]HH:]MM:SS, D-HH[:MM], or units like '90m', '2h', '1h30m', '45s', '1d'"


def parse_memory(value: object, *, key: str = "memory") -> int:
    """Return a memory size in bytes from an int or a string such as ``"8GB"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not a memory size; expected {MEMORY_HELP}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ConfigError(f"{key}={value!r} must be positive; expected {MEMORY_HELP}")
        return int(value)
    if isinstance(value, str):
        m = _MEMORY_RE.fullmatch(value)
        if m:
            unit = m.group(2).upper()
            if unit in _MEMORY_UNITS:
                amount = float(m.group(1)) * _MEMORY_UNITS[unit]
                if amount >= 1:
                    return int(math.ceil(amount))
    raise ConfigError(f"{key}={value!r} is not a memory size; expected {MEMORY_HELP}")


_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_RE = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_time(value: object, *, key: str = "time") -> int:
    """Return a time limit in seconds from an int or a scheduler-style string."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not a time limit; expected {TIME_HELP}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ConfigError(f"{key}={value!r} must be positive; expected {TIME_HELP}")
        return int(math.ceil(value))
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}={value!r} is not a time limit; expected {TIME_HELP}")
    text = value.strip().lower()
    seconds: float | None = None
    if re.fullmatch(r"(?:\d+(?:\.\d+)?[dhms])+", text):
        parts = _UNIT_RE.findall(text)
        units = [u for _, u in parts]
        if len(set(units)) == len(units):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    elif re.fullmatch(r"\d+", text):
        seconds = int(text)
    else:
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if m:
            days, a, b, c = m.groups()
            nums = [int(x) for x in (a, b, c) if x is not None]
            if days is not None:
                # D-HH, D-HH:MM, D-HH:MM:SS
                h, mi, s = (nums + [0, 0])[:3]
                seconds = int(days) * 86400 + h * 3600 + mi * 60 + s
            elif len(nums) == 2:  # MM:SS
                seconds = nums[0] * 60 + nums[1]
            elif len(nums) == 3:  # HH:MM:SS
                seconds = nums[0] * 3600 + nums[1] * 60 + nums[2]
    if seconds is None or seconds <= 0:
        raise ConfigError(f"{key}={value!r} is not a time limit; expected {TIME_HELP}")
    return int(math.ceil(seconds))


def format_hms(seconds: int) -> str:
    """``3725`` -> ``"01:02:05"`` (hours may exceed 24)."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def format_dhms(seconds: int) -> str:
    """``90061`` -> ``"1-01:01:01"``; under a day ``"HH:MM:SS"``."""
    d, rest = divmod(int(seconds), 86400)
    return f"{d}-{format_hms(rest)}" if d else format_hms(rest)


def mebibytes(nbytes: int) -> int:
    """Bytes rounded up to whole MiB (what most schedulers take)."""
    return max(1, -(-int(nbytes) // (1024**2)))
