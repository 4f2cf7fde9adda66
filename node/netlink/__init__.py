"""The netlink adapter: the only code that talks to pyroute2.

`open_netlink(netns)` returns a `Netlink` whose methods take and return our own records
(`records.py`) and raise our own errors (`errors.py`).
"""

from .client import Netlink, open_netlink
from .errors import AlreadyExists, NetlinkFailure, NotFound

__all__ = ["AlreadyExists", "Netlink", "NetlinkFailure", "NotFound", "open_netlink"]
