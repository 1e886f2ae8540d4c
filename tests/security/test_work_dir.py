"""Issue 14 item 1: directories clustrix adopts instead of owning. Another user (mallory) plants,
links, swaps or creates "meanwhile" the directories a victim's jobs would live in; the victim is
root or an ordinary user, on the local machine or over the real test sshd."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.config import Profile
from clustrix_core.errors import TransportError
from clustrix_core.transport import LocalTransport

from .conftest import MALLORY, VICTIM, mallory, mode, names, owner


def _is_root(victim: Any) -> bool:
    return victim.user_name() == "root"


def test_planted_work_dir_is_not_adopted(victim: Any, arena: Path, users: dict[str, int]) -> None:
    work = arena / "work"
    assert mallory("mkdir", "-m", "0777", str(work)).returncode == 0
    with pytest.raises(TransportError, match=rf"{work}.*uid {users[MALLORY]}.*0777"):
        victim.makedirs(str(work))
    with pytest.raises(TransportError, match=rf"{work}.*uid {users[MALLORY]}.*0777"):
        victim.private_dir(str(work))
    with pytest.raises(TransportError, match=rf"{work}.*uid {users[MALLORY]}"):
        victim.makedirs(str(work / "jobs"))
    assert (owner(work), mode(work), names(work)) == (MALLORY, 0o777, [])


def test_symlinked_work_dir_is_refused(victim: Any, arena: Path, users: dict[str, int]) -> None:
    theirs = arena / "mallory-jobs"
    assert mallory("mkdir", "-m", "0777", str(theirs)).returncode == 0
    assert mallory("ln", "-s", str(theirs), str(arena / "work")).returncode == 0
    for path in (arena / "work", arena / "work" / "jobs"):
        for method in ("makedirs", "private_dir"):
            with pytest.raises(
                TransportError, match=rf"{arena}/work.*symbolic link.*{users[MALLORY]}"
            ):
                getattr(victim, method)(str(path))
    with pytest.raises(TransportError):
        victim.mkdir_exclusive(str(arena / "work" / "job"))
    with pytest.raises(TransportError):
        victim.put_bytes(str(arena / "work" / "key"), b"secret")
    assert names(theirs) == []


def test_pre_planted_per_user_directory_is_refused(victim: Any, arena: Path) -> None:
    mine = arena / f"clustrix-{victim.user_name()}"
    assert mallory("mkdir", "-m", "0777", str(mine)).returncode == 0
    with pytest.raises(TransportError, match=rf"clustrix-{victim.user_name()}.*not to you"):
        victim.private_dir(str(arena))
    assert mallory("rmdir", str(mine)).returncode == 0
    assert mallory("mkdir", str(arena / "elsewhere")).returncode == 0
    assert mallory("ln", "-s", str(arena / "elsewhere"), str(mine)).returncode == 0
    with pytest.raises(TransportError, match="symbolic link"):
        victim.private_dir(str(arena))
    assert names(arena / "elsewhere") == []


def test_private_dir_in_a_sticky_directory_cannot_be_swapped(victim: Any, arena: Path) -> None:
    own = victim.private_dir(str(arena))
    assert own == f"{arena}/clustrix-{victim.user_name()}"
    victim.mkdir_exclusive(f"{own}/job")
    victim.put_bytes(f"{own}/job/key", b"secret")
    moved = mallory("mv", own, str(arena / "stolen"))
    assert moved.returncode != 0, "the sticky bit must stop mallory from renaming it"
    assert mallory("cat", f"{own}/job/key").returncode != 0
    assert victim.private_dir(str(arena)) == own
    assert mode(arena) == 0o1777


def test_swapped_per_user_directory_in_a_project_dir_is_detected(
    victim: Any, project: Path
) -> None:
    """A group member renames the victim's directory in a 2775 project directory (no sticky
    bit: the kernel lets her) and puts her own in its place."""
    if _is_root(victim):
        with pytest.raises(TransportError, match="as root"):
            victim.private_dir(str(project))
        assert names(project) == []
        return
    own = victim.private_dir(str(project))
    assert own == f"{project}/clustrix-{VICTIM}"
    victim.mkdir_exclusive(f"{own}/job1")
    assert mallory("mv", own, str(project / "stolen")).returncode == 0
    assert mallory("mkdir", "-m", "0777", own).returncode == 0
    with pytest.raises(TransportError, match=rf"clustrix-{VICTIM}.*not to you"):
        victim.private_dir(str(project))
    with pytest.raises(TransportError, match="privately own"):
        victim.mkdir_exclusive(f"{own}/job2")
    with pytest.raises(TransportError, match="privately own"):
        victim.put_bytes(f"{own}/key", b"secret")
    assert names(Path(own)) == []
    assert mode(project) == 0o2775


def test_shared_project_directory_keeps_its_mode(victim: Any, project: Path) -> None:
    """Issue 9 defect 5: a shared 2775 directory is never chmod-ed."""
    with pytest.raises(TransportError, match="2775"):
        victim.makedirs(str(project))
    assert mode(project) == 0o2775


@pytest.mark.parametrize("victim", ["local-root", "ssh-root", "ssh-victim"], indirect=True)
def test_foreign_directory_created_meanwhile_is_refused(
    victim: Any, arena: Path, monkeypatch: pytest.MonkeyPatch, users: dict[str, int]
) -> None:
    """Mallory wins the race between the victim's check and its mkdir, with a 0777 directory."""
    if victim.name == "ssh":
        import paramiko

        real = paramiko.SFTPClient.mkdir

        def racing(self: Any, path: str, mode: int = 0o777) -> None:
            mallory("mkdir", "-m", "0777", path)
            return real(self, path, mode)

        monkeypatch.setattr(paramiko.SFTPClient, "mkdir", racing)
    else:  # the race is injected into the victim's own process
        assert isinstance(victim, LocalTransport)
        real_mkdir = os.mkdir

        def racing_local(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
            if dir_fd is not None:
                parent = os.readlink(f"/proc/self/fd/{dir_fd}")
                mallory("mkdir", "-m", "0777", os.path.join(parent, path))
            return real_mkdir(path, mode, dir_fd=dir_fd)

        monkeypatch.setattr(os, "mkdir", racing_local)
    target = arena / "work" / "jobs"
    with pytest.raises(TransportError, match=rf"{arena}/work.*uid {users[MALLORY]}"):
        victim.makedirs(str(target))
    monkeypatch.undo()
    assert owner(arena / "work") == MALLORY and names(arena / "work") == []


def test_put_bytes_does_not_write_through_a_planted_temporary_name(arena: Path) -> None:
    """The old temporary name (``NAME.tmpPID.THREAD``) was predictable and opened without
    O_EXCL: mallory's symlink there made root overwrite a file of her choice."""
    precious = arena / "precious"
    precious.write_text("original")
    theirs = arena / "jobdir"
    assert mallory("mkdir", "-m", "0777", str(theirs)).returncode == 0
    planted = theirs / f"key.tmp{os.getpid()}.{threading.get_ident()}"
    assert mallory("ln", "-s", str(precious), str(planted)).returncode == 0
    with pytest.raises(TransportError, match="privately own"):
        LocalTransport(profile=Profile()).put_bytes(str(theirs / "key"), b"secret")
    assert precious.read_text() == "original"
    assert "key" not in names(theirs)


def test_remove_tree_refuses_what_is_not_yours(victim: Any, arena: Path) -> None:
    """A forged job record may name any directory: remove_tree never deletes another user's
    tree, nor anything through a symlink."""
    theirs = arena / "theirs"
    assert mallory("mkdir", "-p", str(theirs / "sub")).returncode == 0
    with pytest.raises(TransportError, match="not to you"):
        victim.remove_tree(str(theirs))
    own = victim.private_dir(str(arena))
    victim.makedirs(f"{own}/keep")
    victim.put_bytes(f"{own}/keep/file", b"1")
    assert mallory("ln", "-s", f"{own}/keep", str(arena / "link")).returncode == 0
    with pytest.raises(TransportError, match="symbolic link"):
        victim.remove_tree(str(arena / "link"))
    assert names(theirs) == ["sub"]
    assert (arena / "link").is_symlink()
