"""Namespace paths as the node service's caller sees them (effects: /proc, openat2).

A path such as CNI_NETNS=/run/netns/cni-1234 is a name in the *caller's* mount namespace.
The service's may differ (the agent runs in a container; a runtime may run with private
mounts): there the path may be missing or, worse, name another namespace. For one call,
`caller_view` opens each path as the caller sees it and installs the view `netns.seen_as`
consults, so that every opener of the call opens what the caller meant:

- the caller's mount namespace is the service's own: nothing changes (two stats);
- otherwise the path is opened with openat2(2) and RESOLVE_IN_ROOT under the caller's root
  (/proc/PID/root), so an absolute symlink on the way (/var/run -> /run) resolves inside the
  caller's root, as the caller's own open(2) would. Where openat2 is missing (ENOSYS, Linux
  < 5.6, or a seccomp filter that refuses it), or refuses a magic link on the way
  (RESOLVE_IN_ROOT follows none for now: /proc/PID/ns/net gives EXDEV), the path is opened
  as /proc/PID/root + path, whose absolute symlinks resolve in the service's root;
- the same namespace (st_dev, st_ino) as the service finds at that path: the path stays;
- another namespace, or none, at that path in the service's view: the call opens
  `/proc/<service pid>/fd/<n>` instead (the broker and the commands the service starts open
  it too), and the descriptor is closed when the call ends;
- nothing at that path in the caller's view (ENOENT): the namespace is gone (NetnsGone, so
  DEL succeeds as the spec asks), whatever the service finds there.

Records keep the path the caller gave; only the opening is redirected.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from spidernet.node.netns import Unopenable, seen_as

# openat2(2): the same number on every architecture with the common syscall table (Linux 5.6).
_SYS_OPENAT2 = 437
# RESOLVE_IN_ROOT from linux/openat2.h.
_RESOLVE_IN_ROOT = 0x10
# openat2 is not there (ENOSYS; EPERM from a container's seccomp filter): open through the
# /proc/PID/root string instead, and say so once.
_MISSING = (errno.ENOSYS, errno.EPERM)
# openat2 would not follow a magic link under RESOLVE_IN_ROOT (EXDEV, ELOOP: nd_jump_link in
# fs/namei.c), or a rename raced the lookup (EAGAIN): that path goes through the string.
_FALL_BACK = (*_MISSING, errno.EXDEV, errno.ELOOP, errno.EAGAIN)

NsId = tuple[int, int]  # (st_dev, st_ino): two namespaces are the same when these agree
View = Mapping[str, str | Unopenable]


class _Openat2:
    """openat2(2) through libc's syscall(2) (Python has no binding for it)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long

    def __call__(self, dirfd: int, path: str, flags: int, resolve: int) -> int:
        # struct open_how {u64 flags; u64 mode; u64 resolve;} (linux/openat2.h)
        how = struct.pack("=QQQ", flags, 0, resolve)
        fd = self._syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_char_p(how),
            ctypes.c_size_t(len(how)),
        )
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return int(fd)


_openat2 = _Openat2()
_said: set[int] = set()  # the errnos of openat2's absence the log has told of


def _log(message: str) -> None:
    sys.stderr.write(f"{message}\n")


def open_in_root(pid: int, path: str, log: Callable[[str], None] = _log) -> int:
    """An O_RDONLY descriptor of `path` as process `pid` sees it (see the module's doc);
    raises OSError as that open would (ENOENT: nothing there)."""
    # O_NONBLOCK: a FIFO named as a namespace must not hold up the call (open(2) on a FIFO
    # waits for a writer); it changes nothing for an nsfs file.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            return _openat2(root, path, flags, _RESOLVE_IN_ROOT)
        except OSError as e:
            if e.errno not in _FALL_BACK:
                raise
            if e.errno in _MISSING and e.errno not in _said:
                _said.add(e.errno or 0)
                log(
                    f"openat2(2) is not available ({os.strerror(e.errno or 0)}): namespace "
                    f"paths are opened as /proc/PID/root/PATH, where an absolute symlink "
                    f"resolves in this process's root, not the caller's"
                )
        return os.open(f"/proc/{pid}/root/{path.lstrip('/')}", flags)
    finally:
        os.close(root)


def _mount_ns(pid: int) -> NsId:
    st = os.stat(f"/proc/{pid}/ns/mnt")
    return st.st_dev, st.st_ino


def _fstat(fd: int) -> NsId:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _stat(path: str) -> NsId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class System:
    """The effects the resolution uses (tests give their own)."""

    pid: int = 0  # this process (0: os.getpid() at the time of the call)
    mount_ns: Callable[[int], NsId] = _mount_ns
    open_in_root: Callable[[int, str], int] = open_in_root
    fstat: Callable[[int], NsId] = _fstat
    stat: Callable[[str], NsId | None] = _stat
    close: Callable[[int], None] = os.close


def resolve(pid: int, paths: Iterable[str], system: System | None = None) -> tuple[View, list[int]]:
    """The view of `paths` for a call from process `pid`, and the descriptors it holds
    open (the caller closes them when the call ends). Relative paths and an unknown caller
    (pid 0: not a unix socket) are left alone."""
    system = system or System()
    wanted = [p for p in dict.fromkeys(paths) if p.startswith("/")]
    if pid <= 0 or not wanted:
        return {}, []
    ours = system.pid or os.getpid()
    try:
        same = system.mount_ns(pid) == system.mount_ns(ours)
    except OSError as e:
        # The caller is gone (ENOENT, ESRCH) or hidden from us (EACCES): its view cannot
        # be known, and the service's own must not stand in for it.
        return {p: Unopenable(e.errno or errno.EIO) for p in wanted}, []
    if same:
        return {}, []
    view: dict[str, str | Unopenable] = {}
    fds: list[int] = []
    try:
        for path in wanted:
            try:
                fd = system.open_in_root(pid, path)
            except OSError as e:
                view[path] = Unopenable(e.errno or errno.EIO)
                continue
            if system.fstat(fd) == system.stat(path):
                system.close(fd)  # the service finds the same namespace there
                continue
            fds.append(fd)
            view[path] = f"/proc/{ours}/fd/{fd}"
    except BaseException:
        for fd in fds:
            system.close(fd)
        raise
    return view, fds


@contextmanager
def caller_view(pid: int, paths: Iterable[str], system: System | None = None) -> Iterator[View]:
    """Open `paths` as process `pid` sees them until the block ends (see the module's doc);
    yields the view (empty when nothing differs)."""
    system = system or System()
    view, fds = resolve(pid, paths, system)
    try:
        with seen_as(view):
            yield view
    finally:
        for fd in fds:
            system.close(fd)
