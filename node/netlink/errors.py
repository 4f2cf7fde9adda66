"""Errors of the netlink adapter; pyroute2's own exceptions never leave it."""

from __future__ import annotations

import errno
import os

from spidernet.node.errors import NodeError


class NetlinkFailure(NodeError):
    """Raised when the kernel refuses a netlink request; `errno` is the kernel's answer."""

    def __init__(self, action: str, obj: str, code: int) -> None:
        name = errno.errorcode.get(code, str(code))
        super().__init__(f"failed to {action} {obj}: {os.strerror(code)} ({name})")
        self.action = action
        self.obj = obj
        self.errno = code


class NetlinkMissing(NetlinkFailure):
    """Raised when the object named in a request does not exist (ENODEV, ENOENT, ESRCH, ...)."""


class NetlinkExists(NetlinkFailure):
    """Raised when the object to create exists already (EEXIST)."""


# What the kernel answers when a link, address, route, rule or neighbour is missing.
MISSING_ERRNOS = frozenset({errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL})


def classify(action: str, obj: str, code: int) -> NetlinkFailure:
    """The adapter error for kernel errno `code`."""
    if code == errno.EEXIST:
        return NetlinkExists(action, obj, code)
    if code in MISSING_ERRNOS:
        return NetlinkMissing(action, obj, code)
    return NetlinkFailure(action, obj, code)
