"""Paths shared by the PBS tests (parsers and golden scripts need no cluster)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"


def read(name: str) -> str:
    return (DATA / name).read_text()
