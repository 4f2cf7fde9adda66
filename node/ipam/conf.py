"""The `ipam` section of a spidernet-ipam network config (Spiderpool's keys, §2.10) and the
pod facts a CNI call carries.

Unknown keys are refused by name: a misspelt `default_ipv4_ippool` silently ignored is the
kind of mistake that costs an afternoon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spidernet.cni.errors import CNIError, Code
from spidernet.cni.skel import CallArgs

# The `args` key (CNI CONVENTIONS.md: `args` keys other than `cni` belong to an organisation)
# under which a runtime or a test passes pod metadata in embedded mode.
ARGS_KEY = "spidernet.io"

# Keys Spiderpool's IPAM plugin reads; the log_* keys are accepted and checked for type, and
# the plugin logs through its service instead.
_STR_KEYS = ("type", "log_level", "log_file_path", "ipam_unix_socket_path")
_INT_KEYS = ("log_file_max_size", "log_file_max_age", "log_file_max_count")
_BOOL_KEYS = ("clean_gateway", "match_master_subnet")
# Spiderpool's detection switches (agent settings there; per network here, over the node
# service's own defaults) and the probe timing profile.
_DETECT_KEYS = ("enableIPConflictDetection", "enableGatewayDetection")
_PROFILE_KEY = "detectionProfile"
PROFILES = ("fast", "rfc")
_LIST_KEYS = ("default_ipv4_ippool", "default_ipv6_ippool")


@dataclass(frozen=True)
class IpamConf:
    """The checked `ipam` section."""

    default_ipv4_ippool: tuple[str, ...] = ()
    default_ipv6_ippool: tuple[str, ...] = ()
    clean_gateway: bool = False
    match_master_subnet: bool = False
    # None: the node service's default decides.
    ip_conflict_detection: bool | None = None
    gateway_detection: bool | None = None
    detection_profile: str | None = None


@dataclass(frozen=True)
class PodMeta:
    """What the call says about its pod: CNI_ARGS K8S_POD_* plus `args["spidernet.io"]`."""

    namespace: str = ""
    name: str = ""
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_kind: str = ""
    owner_name: str = ""


def _bad(key: str, why: str) -> CNIError:
    return CNIError(Code.INVALID_NETWORK_CONFIG, f"invalid ipam config key '{key}': {why}")


def parse_ipam(ipam: Mapping[str, Any]) -> IpamConf:
    """Check the `ipam` section; raises CNIError 7 naming the key."""
    known = {*_STR_KEYS, *_INT_KEYS, *_BOOL_KEYS, *_LIST_KEYS, *_DETECT_KEYS, _PROFILE_KEY}
    for key in ipam:
        if key not in known:
            raise _bad(key, f"unknown key (known: {', '.join(sorted(known))})")
    for key in _STR_KEYS:
        if key in ipam and not isinstance(ipam[key], str):
            raise _bad(key, "expected a string")
    for key in _INT_KEYS:
        value = ipam.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _bad(key, "expected an integer")
    for key in (*_BOOL_KEYS, *_DETECT_KEYS):
        if key in ipam and not isinstance(ipam[key], bool):
            raise _bad(key, "expected true or false")
    profile = ipam.get(_PROFILE_KEY)
    if profile is not None and profile not in PROFILES:
        raise _bad(_PROFILE_KEY, f"expected one of {', '.join(PROFILES)}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in _LIST_KEYS:
        value = ipam.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _bad(key, "expected a list of pool names")
        lists[key] = tuple(value)
    return IpamConf(
        default_ipv4_ippool=lists["default_ipv4_ippool"],
        default_ipv6_ippool=lists["default_ipv6_ippool"],
        clean_gateway=bool(ipam.get("clean_gateway", False)),
        match_master_subnet=bool(ipam.get("match_master_subnet", False)),
        ip_conflict_detection=ipam.get("enableIPConflictDetection"),
        gateway_detection=ipam.get("enableGatewayDetection"),
        detection_profile=profile,
    )


def _str_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"invalid {what}: expected string to string")
    return dict(value)


def pod_meta(call: CallArgs) -> PodMeta:
    """The pod facts of a call; every field is optional (plain CNI runtimes send none)."""
    env = call.env
    extra = call.conf.args.get(ARGS_KEY, {})
    if not isinstance(extra, dict):
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"invalid args key '{ARGS_KEY}': not an object")
    unknown = set(extra) - {"labels", "annotations", "owner"}
    if unknown:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"invalid args.{ARGS_KEY}: unknown key {sorted(unknown)[0]!r}",
        )
    owner = _str_map(extra.get("owner"), f"args.{ARGS_KEY}.owner")
    return PodMeta(
        namespace=env.arg("K8S_POD_NAMESPACE"),
        name=env.arg("K8S_POD_NAME"),
        uid=env.arg("K8S_POD_UID"),
        labels=_str_map(extra.get("labels"), f"args.{ARGS_KEY}.labels"),
        annotations=_str_map(extra.get("annotations"), f"args.{ARGS_KEY}.annotations"),
        owner_kind=owner.get("kind", ""),
        owner_name=owner.get("name", ""),
    )
