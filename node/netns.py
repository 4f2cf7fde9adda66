"""Network namespaces: naming, checking and creating them, never entering them.

A namespace belongs to a thread, not a process (CNI pkg/ns README), so nothing here calls
setns. Sockets are opened *in* a namespace by the netlink adapter (pyroute2 forks a child
for that); commands run in one through `ip netns exec`, a new process. A missing namespace
is reported as NetnsGone and is never created by accident.

A path is a name in a mount namespace. The node service works for callers whose mounts may
differ from its own (a runtime with private mounts, an agent in a container): for the length
of one call, `seen_as` installs the caller's view (node/access/callers.py makes it), and
every opener here and above (`check`, `open_fd`, `open_socket_in`, `exec_argv`, the
broker) opens `openable(path)` instead of `path`. Records keep the path the caller gave.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from spidernet.node.errors import NodeError

RUN_DIR = Path("/run/netns")
# ioctl(NS_GET_NSTYPE) = _IO(0xb7, 0x3), Linux >= 4.11 (ioctl_ns(2)); CLONE_NEWNET from sched.h.
_NS_GET_NSTYPE = 0xB703
_CLONE_NEWNET = 0x40000000


class NetnsGone(NodeError):
    """Raised when a namespace path does not exist (any more): a torn-down sandbox."""


class NotANetns(NodeError):
    """Raised when a path exists but is not a network namespace."""


class NetnsCommandError(NodeError):
    """Raised when `ip netns` fails to create or remove a namespace."""


@dataclass(frozen=True)
class Unopenable:
    """A path the current call's caller could not open: `code` is the errno of its attempt."""

    code: int


# The current call's view: path -> a path this process and its helper processes can open
# for the call (`/proc/<our pid>/fd/<n>`), or why it cannot be opened. A path not in the
# view opens as itself. None outside a call.
_VIEW: ContextVar[Mapping[str, str | Unopenable] | None] = ContextVar(
    "spidernet_netns_view", default=None
)
# ENOENT on a component, or ENOTDIR (a file where the path needs a directory): nothing there.
_GONE_ERRNOS = (errno.ENOENT, errno.ENOTDIR)


@contextmanager
def seen_as(view: Mapping[str, str | Unopenable]) -> Iterator[None]:
    """Open paths as `view` says until the block ends (in this thread's context)."""
    token = _VIEW.set(dict(view))
    try:
        yield
    finally:
        _VIEW.reset(token)


def openable(path: str) -> str:
    """`path` as this process (and the processes it starts) can open it for the current
    call. Raises NetnsGone when the call's caller does not see it (ENOENT there: the
    namespace is gone, whatever this process finds at that path), and OSError for another
    reason it could not open it."""
    view = _VIEW.get()
    found = view.get(path) if view else None
    if found is None:
        return path
    if isinstance(found, str):
        return found
    if found.code in _GONE_ERRNOS:
        raise NetnsGone(f"network namespace '{path}' does not exist")
    raise OSError(
        found.code,
        f"failed to open network namespace '{path}' as the caller sees it: "
        f"{os.strerror(found.code)}",
    )


def path_of(ref: str) -> str:
    """`ref` as a path: a bare name means /run/netns/NAME, as for `ip netns`."""
    return ref if "/" in ref else str(RUN_DIR / ref)


def open_fd(path: str) -> int:
    """An O_RDONLY descriptor of the network namespace at `path` (the caller closes it);
    raises NetnsGone or NotANetns."""
    check(path)
    try:
        return os.open(openable(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NetnsGone(f"network namespace '{path}' does not exist") from e


def identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the namespace at `path` as the current call sees it (two paths
    name the same namespace when these agree), or None when there is none."""
    try:
        st = os.stat(openable(path))
    except (NetnsGone, OSError):
        return None
    return st.st_dev, st.st_ino


def check(path: str) -> None:
    """Raise NetnsGone or NotANetns unless `path` is a network namespace."""
    try:
        fd = os.open(openable(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NetnsGone(f"network namespace '{path}' does not exist") from e
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EINVAL):
            raise NotANetns(f"'{path}' is not a network namespace") from e
        raise
    finally:
        os.close(fd)
    if kind != _CLONE_NEWNET:
        raise NotANetns(f"'{path}' is not a network namespace")


def names() -> set[str]:
    """Names of the namespaces under /run/netns."""
    try:
        return {p.name for p in RUN_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsCommandError(f"failed to run 'ip {' '.join(args)}': {proc.stderr.strip()}")


def create(name: str) -> str:
    """Create the named namespace with `lo` up; returns its path."""
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
    except NetnsCommandError:
        remove(name)
        raise
    return path_of(name)


def remove(name: str) -> None:
    """Remove the named namespace; a missing one is already removed."""
    if name in names():
        _ip("netns", "delete", name)


def exec_argv(name_or_path: str, argv: list[str]) -> list[str]:
    """The argv that runs `argv` inside a namespace (a new process, as a runtime does)."""
    path = path_of(name_or_path)
    if "/" in name_or_path or openable(path) != path:
        return ["nsenter", f"--net={openable(path)}", "--", *argv]
    return ["ip", "netns", "exec", name_or_path, *argv]


def sysctl_path(key: str) -> str:
    """The /proc/sys file of sysctl `key`. Dots separate the levels unless the key uses
    slashes (needed for names with dots, such as a VLAN `eth0.100`), as sysctl(8) reads
    them; only keys under `net` (what a namespace has of its own) are accepted."""
    parts = key.split("/") if "/" in key else key.split(".")
    if not all(parts) or ".." in parts or parts[0] != "net":
        raise ValueError(f"'{key}' is not a network sysctl key")
    return "/proc/sys/" + "/".join(parts)


def set_sysctl(name_or_path: str, key: str, value: str, *, missing_ok: bool = False) -> None:
    """Set sysctl `key` inside a namespace (/proc/sys/net shows the reading task's netns,
    so this runs in a new process there rather than switching ours).

    `missing_ok`: a key that does not exist (a per-interface key of a link already gone) is
    skipped instead of an error (sysctl(8) `-e`)."""
    flags = "-eqw" if missing_ok else "-qw"
    argv = exec_argv(name_or_path, ["sysctl", flags, f"{key}={value}"])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsCommandError(
            f"failed to set sysctl '{key}' in '{name_or_path}': {proc.stderr.strip()}"
        )


def get_sysctl(name_or_path: str, key: str) -> str:
    """The value of sysctl `key` inside a namespace (read by a new process there)."""
    argv = exec_argv(name_or_path, ["sysctl", "-n", key])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsCommandError(
            f"failed to read sysctl '{key}' in '{name_or_path}': {proc.stderr.strip()}"
        )
    return proc.stdout.strip()


def open_socket_in(netns_path: str, family: int, sock_type: int, proto: int = 0) -> socket.socket:
    """A socket created inside the namespace at `netns_path`, without entering it.

    pyroute2's `netns.create_socket` forks a child that enters the namespace, creates the
    socket there and passes its descriptor back over a unix socket (SCM_RIGHTS); a socket
    belongs to the namespace it was created in for its whole life (network_namespaces(7)),
    so this process binds and sends on it from its own namespace, and no thread of ours
    calls setns. `flags=0` keeps pyroute2 from creating a namespace that is missing: that
    raises NetnsGone.
    """
    from pyroute2.netns import create_socket

    check(netns_path)
    try:
        sock = create_socket(openable(netns_path), family, sock_type, proto, flags=0)
    except FileNotFoundError as e:
        raise NetnsGone(f"network namespace '{netns_path}' does not exist") from e
    if not isinstance(sock, socket.socket):  # pragma: no cover - pyroute2's contract
        raise TypeError(f"pyroute2 returned {sock!r}, not a socket")
    return sock


def identity_text(ident: tuple[int, int]) -> str:
    """A namespace identity as records keep it: `DEV:INODE` (decimal)."""
    return f"{ident[0]}:{ident[1]}"


def live_identities(proc: Path = Path("/proc")) -> frozenset[str]:
    """The identities (`identity_text`) of every network namespace that something on this
    host still holds: a process living in it, a bind mount of it in any mount namespace (what
    `ip netns add` and runtimes make, e.g. under /run/netns; a runtime with private mounts
    keeps its mounts where only its own mount namespace sees them), or an open descriptor of
    it. Paths are not compared: the same path may name another namespace in another mount
    namespace, and a namespace outlives every path to it while a process holds it.

    A namespace held only by a socket created in it is not counted: nothing can enter it any
    more. Processes that exit during the scan are skipped."""
    live: set[str] = set()
    mount_namespaces: set[tuple[int, int]] = set()
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        base = entry.path
        try:
            st = os.stat(f"{base}/ns/net")
            live.add(identity_text((st.st_dev, st.st_ino)))
            mnt = os.stat(f"{base}/ns/mnt")
        except OSError:
            continue  # exited, or a kernel thread
        if (mnt.st_dev, mnt.st_ino) not in mount_namespaces:
            mount_namespaces.add((mnt.st_dev, mnt.st_ino))
            live.update(_mounted(f"{base}/mountinfo"))
        live.update(_held_open(f"{base}/fd", st.st_dev))
    return frozenset(live)


def _mounted(mountinfo: str) -> set[str]:
    """Network namespaces bind-mounted in one mount namespace (proc(5), mountinfo: the
    fourth field of an nsfs mount is `net:[INODE]`, the third its MAJOR:MINOR)."""
    found: set[str] = set()
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[3].startswith("net:["):
                    major, _, minor = fields[2].partition(":")
                    dev = os.makedev(int(major), int(minor))
                    found.add(identity_text((dev, int(fields[3][5:-1]))))
    except (OSError, ValueError):
        pass
    return found


def _held_open(fd_dir: str, nsfs_dev: int) -> set[str]:
    """Network namespaces a process holds open descriptors of (`net:[INODE]` links; they all
    live on the nsfs device `nsfs_dev`)."""
    found: set[str] = set()
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("net:["):
            found.add(identity_text((nsfs_dev, int(target[5:-1]))))
    return found
