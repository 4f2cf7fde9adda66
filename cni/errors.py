"""CNI error codes and the one exception type plugins raise (CNI spec, "Error")."""

from __future__ import annotations

import enum
import json
from typing import Any


class Code(enum.IntEnum):
    """Error codes of the CNI spec (codes 0-99 are reserved; 100+ are plugin-specific)."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    # Not in the spec's table, but used by the reference Go library for a bad CNI_NETNS.
    INVALID_NETNS = 8
    TRY_AGAIN_LATER = 11
    # STATUS only: the plugin cannot serve ADD now (50), or existing containers may
    # have limited connectivity (51).
    PLUGIN_NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # spidernet's own: the verb is valid but this plugin does not implement it yet.
    NOT_IMPLEMENTED = 100
    # spidernet-ipam: no pool may serve this pod (none named, or all filtered out by affinity).
    NO_POOL = 110
    # spidernet-ipam: the candidate pools have no free address.
    ADDRESSES_EXHAUSTED = 111
    # spidernet-ipam with detection on: every address tried is held by another station.
    IP_CONFLICT = 112
    # spidernet-ipam with detection on: the pool's gateway does not answer ARP / NDP.
    GATEWAY_UNREACHABLE = 113
    # The Go library's catch-all for unexpected failures.
    INTERNAL = 999


class CNIError(Exception):
    """Raised by plugin code to answer a CNI call with the spec's error object.

    The skel prints it as JSON on stdout (where libcni reads it first) and exits 1.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        """The spec's error object for `cni_version`."""
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def to_json(self, cni_version: str) -> str:
        """The error object as the JSON text a plugin prints."""
        return json.dumps(self.to_dict(cni_version), indent=4) + "\n"

    def __repr__(self) -> str:
        return f"CNIError(code={self.code}, msg={self.msg!r}, details={self.details!r})"


class Deferred(Exception):
    """Raised by a plugin served in the node service when it cannot answer yet but may
    soon (a SpiderSubnet auto pool the controller has not made or grown): the skel lets it
    through, and the service runs the call again after `after_s` seconds, without holding
    its worker in between."""

    def __init__(self, after_s: float, why: str) -> None:
        super().__init__(why)
        self.after_s = after_s
        self.why = why
