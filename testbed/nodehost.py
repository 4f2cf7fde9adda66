"""What the node lane changes in its own process before a node runs, and undoes afterwards.

The lane runs in network and mount namespaces of its own (`tests/lanes.py node` starts it
with `unshare --net --mount --propagation slave`), so the node's links, routes, nftables and
mounts never reach this machine's. Here:

- `check_isolated`: refuse to run in this machine's own network or mount namespace;
- `private_mounts`: a tmpfs on each standard path the node's software hard-codes
  (nodespec.PRIVATE_PATHS); a missing mount point is made first and removed again;
- `kernel_settings`: the three sysctls a kubelet insists on, set and then restored (the only
  settings the lane changes outside its namespaces);
- `cgroup_root`: the kubelet's cgroup root, made in every v1 hierarchy and removed again,
  with every process still in it killed first (all of them the lane's own);
- `reap_descendants`: this process becomes a child subreaper, so the processes containerd's
  shims and podman's conmon leave behind stay its descendants and are stopped by pid at the
  end, never by name.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from spidernet.testbed.kubespec import cache_root

CGROUP_V1 = Path("/sys/fs/cgroup")
PR_SET_CHILD_SUBREAPER = 36
STOP_TIMEOUT_S = 15.0


class NotIsolated(Exception):
    """The lane was started in this machine's own network or mount namespace."""


def _ns(pid: str, kind: str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/{kind}")
    except PermissionError:
        return None  # an init that forbids it (this machine's pid 1 does)
    return st.st_dev, st.st_ino


def check_isolated() -> None:
    """Raise NotIsolated unless this process has network and mount namespaces of its own:
    other than pid 1's where that can be read, and other than its parent's."""
    for kind in ("net", "mnt"):
        mine = _ns("self", kind)
        if mine in (_ns("1", kind), _ns(str(os.getppid()), kind)):
            raise NotIsolated(
                f"the node lane runs in a {kind} namespace of its own: start it with "
                "`tests/lanes.py node` (or under `unshare --net --mount --propagation slave`)"
            )


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"failed to run 'mount {' '.join(args)}': {done.stderr.strip()}")


@contextmanager
def private_mounts(paths: tuple[str, ...], shared: tuple[str, ...] = ()) -> Iterator[None]:
    """A tmpfs on each of `paths` in this mount namespace (those in `shared` made shared, so
    later mounts below them reach containers' HostToContainer copies); on leaving, each is
    unmounted lazily and the mount points this made are removed again."""
    made: list[Path] = []
    mounted: list[str] = []
    # As on a node booted by systemd, every mount of this namespace is shared (within it:
    # it was made a slave of this machine's, so nothing goes back): containerd refuses a
    # HostToContainer volume whose path lies on a mount that is neither shared nor slave,
    # and it looks the mount up without following symlinks (/var/run/netns is on "/").
    _mount("--make-rshared", "/")
    try:
        for path in paths:
            target = Path(path)
            if not target.exists():
                missing = [p for p in (target, *target.parents) if not p.exists()]
                target.mkdir(parents=True)
                made.extend(reversed(missing))
            _mount("-t", "tmpfs", "-o", "mode=0755", "spidernet-node", path)
            mounted.append(path)
            if path in shared:
                _mount("--make-rshared", path)
        yield
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", path], capture_output=True, check=False)
        for point in reversed(made):
            with suppress(OSError):
                point.rmdir()


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def settings_record(env: Mapping[str, str] | None = None) -> Path:
    """Where a lane writes the kernel settings it found before changing them, until it has
    put them back: a lane that died (SIGKILL) leaves it, and the next one restores from it
    instead of taking the changed values for the machine's own."""
    return cache_root(os.environ if env is None else env) / "node" / "kernel-settings.json"


def restore_recorded(record: Path) -> dict[str, str]:
    """Write back the settings `record` holds, if it exists, and remove it; returns them."""
    try:
        found: dict[str, str] = json.loads(record.read_text())
    except FileNotFoundError:
        return {}
    restore_settings(found)
    record.unlink()
    return found


@contextmanager
def kernel_settings(wanted: Mapping[str, str], record: Path) -> Iterator[dict[str, str]]:
    """Set each sysctl in `wanted`; yields what was there before, written back on leaving.
    What was there is kept in `record` meanwhile (see settings_record)."""
    restore_recorded(record)
    before = {key: sysctl_path(key).read_text().strip() for key in wanted}
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(before))
    try:
        for key, value in wanted.items():
            if before[key] != value:
                sysctl_path(key).write_text(value)
        yield before
    finally:
        restore_recorded(record)


def restore_settings(before: Mapping[str, str]) -> None:
    """Write each sysctl in `before` back where it differs now."""
    for key, value in before.items():
        path = sysctl_path(key)
        if path.read_text().strip() != value:
            path.write_text(value)


def hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (one directory per controller set)."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup" and fields[1].startswith(str(CGROUP_V1)):
            out.append(Path(fields[1]))
    return sorted(set(out))


def cgroup_pids(name: str) -> set[int]:
    """Every process in cgroup `name` or below, in any hierarchy."""
    pids: set[int] = set()
    for hierarchy in hierarchies():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
    return pids


def remove_cgroup(name: str) -> list[str]:
    """Kill what is left in cgroup `name` and remove it from every hierarchy, deepest first;
    returns what could not be removed."""
    kill_pids(cgroup_pids(name))
    left = []
    for hierarchy in hierarchies():
        top = hierarchy / name
        if not top.is_dir():
            continue
        dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*dirs, top]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # a process leaving it is still being torn down
            else:
                left.append(str(d))
    return left


CGROUP_PREFIX = "spidernet-node-"


def remove_leftover_cgroups() -> list[str]:
    """Remove every node cgroup root (CGROUP_PREFIX) a node lane left, with what is in it;
    returns what could not be removed."""
    names = {d.name for h in hierarchies() for d in h.glob(f"{CGROUP_PREFIX}*") if d.is_dir()}
    return [left for name in sorted(names) for left in remove_cgroup(name)]


@contextmanager
def cgroup_root(name: str) -> Iterator[str]:
    """`/<name>` in every v1 hierarchy (the kubelet's cgroupRoot must exist); removed on
    leaving with everything in it. cpuset children start empty in v1, so the root copies its
    parent's CPUs and memory nodes."""
    if not hierarchies():
        raise OSError(f"no cgroup v1 hierarchy is mounted under {CGROUP_V1}")
    try:
        for hierarchy in hierarchies():
            top = hierarchy / name
            top.mkdir(exist_ok=True)
            _inherit_cpuset(top)
        yield "/" + name
    finally:
        remove_cgroup(name)


def kill_pids(pids: set[int], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each pid, then SIGKILL what is left after `timeout_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = {p for p in pids if _alive(p)}
            if not pids:
                return
            _reap()
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _reap() -> None:
    """Collect exited children (as a subreaper this process inherits orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def descendants(root: int | None = None) -> set[int]:
    """Every live descendant of `root` (this process by default)."""
    me = os.getpid() if root is None else root
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out = set()
    for pid in parents:
        p = pid
        while p in parents and p > 1:
            p = parents[p]
            if p == me:
                out.add(pid)
                break
    return {p for p in out if _alive(p)}


PR_SET_PDEATHSIG = 1


def confine(cgroup: str) -> Callable[[], None]:
    """A `preexec_fn` for a node process: it joins cgroup `cgroup` (a path below the node's
    root) in every hierarchy, so whatever it forks is found and stopped even when the lane's
    own process died, and it gets SIGKILL if the lane's process dies first."""
    procs = [str(h / cgroup.strip("/") / "cgroup.procs") for h in hierarchies()]
    for path in procs:
        Path(path).parent.mkdir(exist_ok=True)
        _inherit_cpuset(Path(path).parent)
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        pid = str(os.getpid()).encode()
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


def _inherit_cpuset(group: Path) -> None:
    """cpuset children start with no CPUs and no memory nodes in v1: copy the parent's."""
    for knob in ("cpuset.cpus", "cpuset.mems"):
        mine, parents = group / knob, group.parent / knob
        if mine.exists() and not mine.read_text().strip():
            mine.write_text(parents.read_text())


@contextmanager
def reap_descendants() -> Iterator[None]:
    """Become a child subreaper; on leaving, stop every descendant still running."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    before = descendants()
    try:
        yield
    finally:
        kill_pids(descendants() - before)
        _reap()
