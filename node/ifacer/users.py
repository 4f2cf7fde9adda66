"""Which pods use which ifacer-made links: one small JSON record per attachment (effects).

ADD writes a record before it touches the host and DEL removes it; a master is left in
place by DEL (other pods use it), and `spidernet ifacer prune` removes the ifacer-made
links that no live record uses. Records live under /run (tmpfs), as the links do: both are
gone after a reboot. Each record names the host namespace it was made in (its inode), so
the ifacer of one namespace never counts another's users. One lock file serialises the
ifacer's calls on a node: two pods asking for the same VLAN at once must not both try to
create it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_DIR = "/run/spidernet/ifacer"


@dataclass(frozen=True)
class User:
    """One attachment's use of host links: `uses` names the NICs, bond and VLAN its master
    stands on; `host_ns` is the inode of the host namespace the record belongs to."""

    network: str
    container_id: str
    ifname: str
    netns: str
    host_ns: int
    uses: tuple[str, ...]

    @property
    def alive(self) -> bool:
        """False once the pod's namespace is gone (its DEL never came)."""
        return bool(self.netns) and os.path.exists(self.netns)


def state_dir(explicit: str = "") -> Path:
    """The config's stateDir, else $SPIDERNET_IFACER_DIR, else /run/spidernet/ifacer."""
    return Path(explicit or os.environ.get("SPIDERNET_IFACER_DIR") or DEFAULT_DIR)


def host_ns(path: str | None = None) -> int:
    """The inode of the network namespace at `path` (None: this process's)."""
    return os.stat(path or "/proc/self/ns/net").st_ino


def _path(root: Path, container_id: str, ifname: str) -> Path:
    return root / "users" / f"{container_id}-{ifname}.json"


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the node's ifacer lock."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def save(root: Path, user: User) -> None:
    """Write `user`'s record (atomically)."""
    path = _path(root, user.container_id, user.ifname)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(user)), encoding="utf-8")
    os.replace(tmp, path)


def remove(root: Path, container_id: str, ifname: str) -> bool:
    """Drop one record; False when there was none."""
    try:
        _path(root, container_id, ifname).unlink()
    except FileNotFoundError:
        return False
    return True


def load_all(root: Path, namespace: int | None = None) -> list[User]:
    """Every record (of the host namespace `namespace`, when given); unreadable ones are
    skipped, as a record half-written by a crash."""
    out = []
    for path in sorted((root / "users").glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            user = User(**{**raw, "uses": tuple(raw["uses"])})
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if namespace is None or user.host_ns == namespace:
            out.append(user)
    return out
