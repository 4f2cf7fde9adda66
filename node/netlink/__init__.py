"""The netlink adapter: the only code that talks to pyroute2.

`open_netlink(netns)` returns a `Netlink` whose methods take and return our own records
(`records.py`) and raise our own errors (`errors.py`); `Rtnetlink` (`protocol.py`) is the part
of it the plugins' apply, gather and CHECK steps use.
"""

from .client import Netlink, open_netlink
from .errors import NetlinkExists, NetlinkFailure, NetlinkMissing
from .protocol import Rtnetlink

__all__ = [
    "Netlink",
    "NetlinkExists",
    "NetlinkFailure",
    "NetlinkMissing",
    "Rtnetlink",
    "open_netlink",
]
