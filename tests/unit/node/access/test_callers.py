"""Namespace paths as the service's caller sees them: the decisions (with the effects
injected), the per-call view every opener consults, and openat2 on this process's own
root. The real thing, a runtime in another mount namespace, is tests/netns/test_caller_mounts.py.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.access import callers
from spidernet.node.access.callers import System, caller_view, open_in_root, resolve

CALLER, US = 4242, 100
THEIRS, OURS = (1, 11), (1, 12)  # two mount namespaces
POD, DECOY = (3, 31), (3, 32)  # two network namespaces
PATH = "/run/netns/cni-1"


class FakeSystem:
    """The effects `resolve` uses, as a table: what the caller and the service find."""

    def __init__(
        self,
        *,
        same_mounts: bool = False,
        theirs: tuple[int, int] | int = POD,  # what the caller finds (an int: an errno)
        ours: tuple[int, int] | None = DECOY,  # what the service finds
        mounts_errno: int = 0,
    ) -> None:
        self.mounts = {CALLER: OURS if same_mounts else THEIRS, US: OURS}
        self.theirs, self.ours, self.mounts_errno = theirs, ours, mounts_errno
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.next_fd = 7

    def mount_ns(self, pid: int) -> tuple[int, int]:
        if self.mounts_errno and pid == CALLER:
            raise OSError(self.mounts_errno, os.strerror(self.mounts_errno))
        return self.mounts[pid]

    def open_in_root(self, pid: int, path: str) -> int:
        assert pid == CALLER
        if isinstance(self.theirs, int):
            raise OSError(self.theirs, os.strerror(self.theirs), path)
        self.next_fd += 1
        self.opened.append(self.next_fd)
        return self.next_fd

    def fstat(self, fd: int) -> tuple[int, int]:
        assert fd in self.opened
        assert fd not in self.closed
        assert not isinstance(self.theirs, int)
        return self.theirs

    def stat(self, path: str) -> tuple[int, int] | None:
        return self.ours

    def close(self, fd: int) -> None:
        self.closed.append(fd)

    def system(self) -> System:
        return System(US, self.mount_ns, self.open_in_root, self.fstat, self.stat, self.close)


def test_the_callers_own_mounts_cost_nothing_more() -> None:
    fake = FakeSystem(same_mounts=True)
    assert resolve(CALLER, [PATH], fake.system()) == ({}, [])
    assert fake.opened == []


def test_the_same_namespace_keeps_its_path() -> None:
    fake = FakeSystem(ours=POD)
    assert resolve(CALLER, [PATH], fake.system()) == ({}, [])
    assert fake.closed == fake.opened == [8]


@pytest.mark.parametrize("ours", [DECOY, None], ids=["another-namespace", "nothing"])
def test_what_the_service_does_not_see_is_opened_through_a_descriptor(
    ours: tuple[int, int] | None,
) -> None:
    fake = FakeSystem(ours=ours)
    with caller_view(CALLER, [PATH, PATH, "", "relative"], fake.system()) as view:
        assert view == {PATH: f"/proc/{US}/fd/8"}
        assert netns.openable(PATH) == f"/proc/{US}/fd/8"
        assert netns.openable("/run/netns/other") == "/run/netns/other"
        assert netns.exec_argv(PATH, ["true"]) == [
            "nsenter",
            f"--net=/proc/{US}/fd/8",
            "--",
            "true",
        ]
        assert fake.closed == []
    assert fake.closed == [8]  # closed when the call ends
    assert netns.openable(PATH) == PATH  # outside the call: the service's own view


@pytest.mark.parametrize("ours", [DECOY, None])
@pytest.mark.parametrize("code", [errno.ENOENT, errno.ENOTDIR])
def test_nothing_in_the_callers_view_is_gone_whatever_the_service_sees(
    ours: tuple[int, int] | None, code: int
) -> None:
    fake = FakeSystem(theirs=code, ours=ours)
    with caller_view(CALLER, [PATH], fake.system()):
        with pytest.raises(netns.NetnsGone, match=f"'{PATH}' does not exist"):
            netns.openable(PATH)
        with pytest.raises(netns.NetnsGone):
            netns.check(PATH)
        assert netns.identity(PATH) is None


def test_another_failure_in_the_callers_view_is_an_error_naming_the_path() -> None:
    fake = FakeSystem(theirs=errno.EACCES)
    why = f"'{PATH}' as the caller sees it: Permission denied"
    with caller_view(CALLER, [PATH], fake.system()), pytest.raises(OSError, match=why):
        netns.openable(PATH)


def test_a_caller_whose_mounts_cannot_be_read_is_not_given_the_services_view() -> None:
    fake = FakeSystem(mounts_errno=errno.ENOENT)  # the caller has exited
    view, fds = resolve(CALLER, [PATH], fake.system())
    assert (view, fds) == ({PATH: netns.Unopenable(errno.ENOENT)}, [])


@pytest.mark.parametrize(("pid", "paths"), [(0, [PATH]), (CALLER, []), (CALLER, ["", "x/y"])])
def test_nothing_to_resolve(pid: int, paths: list[str]) -> None:
    fake = FakeSystem()
    assert resolve(pid, paths, fake.system()) == ({}, [])
    assert fake.opened == []


def test_the_view_belongs_to_the_calls_thread() -> None:
    seen: list[str] = []
    inside, done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(5)
        seen.append(netns.openable(PATH))
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with netns.seen_as({PATH: "/proc/1/fd/3"}):
        inside.set()
        done.wait(5)
        assert netns.openable(PATH) == "/proc/1/fd/3"
    thread.join()
    assert seen == [PATH]


# -- openat2 on this process's own root (no other mount namespace needed) -----------------


def same_file(fd: int, path: str | Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    finally:
        os.close(fd)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_open_in_root_follows_an_absolute_symlink_inside_the_root(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)  # absolute: resolved against the given root
    assert same_file(open_in_root(os.getpid(), str(tmp_path / "link")), target)


def test_open_in_root_reports_a_missing_path_as_enoent(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_in_root(os.getpid(), str(tmp_path / "none"))


def test_a_magic_link_is_opened_through_the_proc_root_string() -> None:
    # RESOLVE_IN_ROOT refuses magic links (EXDEV): /proc/PID/ns/net is one.
    path = f"/proc/{os.getpid()}/ns/net"
    log: list[str] = []
    assert same_file(open_in_root(os.getpid(), path, log.append), path)
    assert log == []  # not a missing openat2


def test_without_openat2_the_string_is_used_and_the_log_says_so_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def missing(*_: object) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(callers, "_openat2", missing)
    monkeypatch.setattr(callers, "_said", set())
    target = tmp_path / "f"
    target.write_text("x")
    log: list[str] = []
    opener: Callable[[str], int] = lambda p: open_in_root(os.getpid(), p, log.append)  # noqa: E731
    assert same_file(opener(str(target)), target)
    assert same_file(opener(str(target)), target)
    assert len(log) == 1
    assert "openat2(2) is not available" in log[0]
