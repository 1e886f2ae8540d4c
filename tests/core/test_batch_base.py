"""The BatchScheduler base's own checks (no scheduler needed)."""

from __future__ import annotations

import pytest

from clustrix_core import ConfigError
from clustrix_core.config import Profile
from clustrix_core.scheduler import BatchScheduler
from clustrix_core.transport import LocalTransport


class Demo(BatchScheduler):
    name = "demo"
    directive_prefix = "#DEMO"


def make(**values: object) -> tuple[Demo, Profile]:
    profile = Profile(**values)  # type: ignore[arg-type]
    return Demo(profile=profile, transport=LocalTransport(profile=profile)), profile


@pytest.mark.parametrize(
    ("directive", "message"),
    [("--a\n--b", "spans several lines"), ("#SBATCH --x", "starts with '#' but not '#DEMO'")],
)
def test_bad_passthrough_directives_rejected(directive: str, message: str) -> None:
    sched, profile = make(directives=[directive])
    with pytest.raises(ConfigError, match=message):
        sched.validate(profile)


def test_good_passthrough_directives_are_prefixed() -> None:
    sched, profile = make(directives=["--x=1", "#DEMO --y"])
    sched.validate(profile)
    assert sched.prefixed(["--z"]) == ["#DEMO --z"]
