"""Security defaults of the ssh backend against the real sshd: host keys, result integrity,
private job directories, and injection attempts that must stay inert."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clustrix_ssh.errors import HostKeyError
from clustrix_ssh.transport import SshTransport

from clustrix_core.config import load_profile
from clustrix_core.errors import IntegrityError
from clustrix_core.transport import shared_transport

from .test_connection import add, make_profile, ssh_values


def _fake_known_hosts(path: Path, tmp_path: Path) -> None:
    """known_hosts naming the test server with a key that is not its own (same key type)."""
    v = ssh_values()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "imposter")],
        check=True,
    )
    kind, key = (tmp_path / "imposter.pub").read_text().split()[:2]
    path.write_text(f"[{v['host']}]:{v['port']} {kind} {key}\n")


def test_unknown_host_key_is_refused(ssh_config: Path, tmp_path: Path, make_executor) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    trusted = shared_transport(SshTransport, load_profile("ssh"))
    assert trusted.run(["true"]).ok  # a trusted connection exists and must not be reused
    untrusted = make_profile(known_hosts=str(empty))
    transport = shared_transport(SshTransport, untrusted)
    assert transport is not trusted
    with pytest.raises(HostKeyError) as info:
        transport.run(["true"])
    text = str(info.value)
    assert "unknown" in text and "ssh-keyscan -p" in text and "auto_add_host_keys" in text
    assert info.value.fingerprint.split()[1].startswith("SHA256:")
    assert empty.read_text() == ""
    ex = make_executor(known_hosts=str(empty))
    with pytest.raises(HostKeyError):
        ex.submit(add, 1, 2)


def test_changed_host_key_is_refused_even_with_auto_add(ssh_config: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    _fake_known_hosts(known, tmp_path)
    for auto in (False, True):
        with pytest.raises(HostKeyError) as info:
            SshTransport(profile=make_profile(known_hosts=str(known), auto_add_host_keys=auto)).run(
                ["true"]
            )
        text = str(info.value)
        assert "CHANGED" in text and "ssh-keygen -R" in text and "man in the middle" in text


def test_auto_add_accepts_a_new_host_once_and_remembers_it(
    ssh_config: Path, tmp_path: Path
) -> None:
    known = tmp_path / "sub" / "known_hosts"
    t = SshTransport(profile=make_profile(known_hosts=str(known), auto_add_host_keys=True))
    try:
        assert t.run(["true"]).ok
    finally:
        t.close()
    v = ssh_values()
    assert known.read_text().startswith(f"[{v['host']}]:{v['port']} ")
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    t = SshTransport(profile=make_profile(known_hosts=str(known)))  # strict again: now known
    try:
        assert t.run(["true"]).ok
    finally:
        t.close()


def test_tampered_result_is_refused(make_executor) -> None:
    ex = make_executor(cleanup="never")
    transport = ex.backend.transport
    original = transport.get_bytes

    def tamper_then_read(path: str) -> bytes:
        if os.path.basename(path).startswith("result."):  # flip a byte on the remote, then read
            transport.run(
                [
                    "sh",
                    "-c",
                    'printf X | dd of="$1" bs=1 seek=90 conv=notrunc 2>/dev/null',
                    "sh",
                    path,
                ]
            )
        return original(path)

    transport.get_bytes = tamper_then_read  # type: ignore[method-assign]
    try:
        with pytest.raises(IntegrityError, match="HMAC"):
            ex.submit(add, 1, 2).result(timeout=60)
    finally:
        del transport.get_bytes


def test_job_directory_is_private(make_executor, tmp_path: Path) -> None:
    ex = make_executor(cleanup="never")
    fut = ex.submit(add, 1, 2)
    assert fut.result(timeout=60) == 3
    job_dir = fut.job.record.job_dir
    t = ex.backend.transport
    modes = t.run(
        [
            "stat",
            "-c",
            "%a %n",
            job_dir,
            f"{job_dir}/key",
            f"{job_dir}/payload.bin",
            f"{job_dir}/calls.0",
            f"{job_dir}/env.sh",
            f"{job_dir}/runner.py",
            f"{job_dir}/result.0",
        ]
    ).stdout.split("\n")
    assert [m.split()[0] for m in modes if m] == ["700", "600", "600", "600", "600", "600", "600"]
    t.remove_tree(job_dir)
    # the work directory: an existing one of the user's keeps its mode (never chmod-ed), and is
    # used only while nobody else can write to it; one clustrix creates is 0700
    root = ex.backend.store.root()
    info = t.lstat(root)
    assert info is not None and info.uid == t.uid() and info.mode & 0o022 == 0, (root, info)
    fresh = make_executor(work_dir=f"{tmp_path}/fresh/jobs")
    assert fresh.backend.store.root() == f"{tmp_path}/fresh/jobs"
    assert t.run(["stat", "-c", "%a", f"{tmp_path}/fresh/jobs"]).stdout.strip() == "700"


def echo_env(name: str) -> Any:
    import os as _os

    return _os.environ.get(name)


def test_injection_through_job_name_env_and_paths_is_inert(make_executor, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    m = str(marks)
    evil = f"$(touch {m}/a); `touch {m}/b` ; touch {m}/c && echo ' \" \\ ${{HOME}} *"
    multi = f"first line\nsecond; touch {m}/d\n\ttabbed"
    work = f"{tmp_path}/work dir;touch {m}/e;$(touch {m}/f)'q'"
    ex = make_executor(
        job_name=f"x; touch {m}/g; $(touch {m}/h)",
        env={"EVIL": evil, "MULTI": multi},
        work_dir=work,
        cleanup="never",
    )
    assert ex.submit(echo_env, "EVIL").result(timeout=60) == evil
    assert ex.submit(echo_env, "MULTI").result(timeout=60) == multi
    assert sorted(os.listdir(m)) == []
    assert Path(work).is_dir()

    t = ex.backend.transport
    odd = f"{tmp_path}/odd $(touch {m}/i);name'`touch {m}/j`\nnewline"
    t.makedirs(odd)
    name = "f;touch k;$(touch l)`touch m`'"
    t.put_bytes(f"{odd}/{name}", b"content")
    assert t.listdir(odd) == [name]
    assert t.get_bytes(f"{odd}/{name}") == b"content"
    assert t.run(["cat", f"{odd}/{name}"]).stdout == "content"
    assert t.run(["sh", "-c", 'cd "$1" && ls -A', "sh", odd]).stdout.splitlines() == [
        name
    ]  # no k, l, m
    t.remove_tree(odd)
    assert not Path(odd).exists()
    assert sorted(os.listdir(m)) == []
