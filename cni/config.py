"""Network configuration: the plugin config a plugin reads on stdin, and the runtime side.

A runtime reads a network config list (`plugins[]`) and hands each plugin its own config with
`name`, `cniVersion`, `prevResult` and the `runtimeConfig` keys the plugin has declared in
`capabilities` (CNI spec, "Section 4: Plugin Delegation" and "Deriving execution
configuration"). Both directions live here so tests and the lab chain plugins exactly as
libcni does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import version as cni_version
from .env import validate_name
from .errors import CNIError, Code
from .result import DNS, Result, parse_dns, parse_result, to_dict

# The GC verb's list of attachments to keep; libcni writes both keys (cni#1101).
VALID_ATTACHMENTS_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")
# Spiderpool's key for the node agent's socket (reference/spiderpool.md §2.10): under `ipam`
# for spidernet-ipam, at the top of the coordinator's and the ifacer's config. The
# forwarders read it (forward.py, forward.c); the plugins only check it.
SOCKET_KEY = "ipam_unix_socket_path"


@dataclass(frozen=True)
class Attachment:
    """One (container, interface) pair that GC must keep."""

    container_id: str
    ifname: str


@dataclass(frozen=True)
class PluginConf:
    """The config one plugin receives on stdin; `raw` keeps every key, known or not."""

    cni_version: str
    name: str
    type: str
    raw: Mapping[str, Any] = field(default_factory=dict)
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    ipam: Mapping[str, Any] = field(default_factory=dict)
    dns: DNS = field(default_factory=DNS)
    prev_result: Result | None = None
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
    args: Mapping[str, Any] = field(default_factory=dict)
    valid_attachments: tuple[Attachment, ...] | None = None


def socket_path(value: object) -> str:
    """A config's `ipam_unix_socket_path`, checked: "" when unset (absent, null or empty,
    as the forwarders read it), else an absolute path. Raises ValueError: a relative path
    would be looked up from whatever directory the runtime runs its plugins in."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if not value.startswith("/"):
        raise ValueError(f"'{value}' is not an absolute path")
    return value


def decode_json(data: bytes, what: str = "network config") -> dict[str, Any]:
    """Decode a JSON object; raise DECODING_FAILURE (6) for anything else."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(Code.DECODING_FAILURE, f"failed to decode {what}: {e}") from e
    if not isinstance(obj, dict):
        raise CNIError(Code.DECODING_FAILURE, f"failed to decode {what}: not a JSON object")
    return obj


def config_version(obj: Mapping[str, Any]) -> str:
    """The config's cniVersion ("" means 0.1.0, as in the reference library)."""
    value = obj.get("cniVersion", "")
    if not isinstance(value, str):
        raise CNIError(Code.DECODING_FAILURE, "failed to decode network config: bad cniVersion")
    return value or "0.1.0"


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"invalid config key '{key}': not an object")
    return value


def _attachments(obj: Mapping[str, Any]) -> tuple[Attachment, ...] | None:
    for key in VALID_ATTACHMENTS_KEYS:
        if key not in obj:
            continue
        items = obj[key]
        if not isinstance(items, list):
            raise CNIError(Code.INVALID_NETWORK_CONFIG, f"invalid config key '{key}': not a list")
        out = []
        for item in items:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("containerID"), str)
                and isinstance(item.get("ifname"), str)
            ):
                raise CNIError(
                    Code.INVALID_NETWORK_CONFIG,
                    f"invalid config key '{key}': entries need string containerID and ifname",
                )
            out.append(Attachment(item["containerID"], item["ifname"]))
        return tuple(out)
    return None


def parse_plugin_conf(data: bytes) -> PluginConf:
    """Parse and check a plugin's stdin config (the checks of the reference skel and more).

    Raises CNIError: 6 for undecodable JSON or prevResult, 7 for a missing or invalid
    network name or a malformed well-known key.
    """
    return plugin_conf_from(decode_json(data))


def plugin_conf_from(obj: dict[str, Any]) -> PluginConf:
    """`parse_plugin_conf` for a config already decoded from JSON."""
    version = config_version(obj)
    name = obj.get("name", "")
    if not isinstance(name, str) or not name:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, "missing network name")
    validate_name("network name", name, Code.INVALID_NETWORK_CONFIG)
    plugin_type = obj.get("type", "")
    if not isinstance(plugin_type, str):
        raise CNIError(Code.INVALID_NETWORK_CONFIG, "invalid config key 'type': not a string")
    capabilities = _mapping(obj, "capabilities")
    prev = obj.get("prevResult")
    prev_result = None
    if prev is not None:
        if not isinstance(prev, dict):
            raise CNIError(Code.DECODING_FAILURE, "failed to decode prevResult: not an object")
        # A prevResult is read in the config's version when it names none (reference
        # library: version.ParsePrevResult).
        prev_result = parse_result({"cniVersion": version, **prev}, "prevResult")
    dns_obj = obj.get("dns")
    try:
        dns = parse_dns(dns_obj)
    except CNIError as e:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"invalid config key 'dns': {e.msg}") from e
    return PluginConf(
        cni_version=version,
        name=name,
        type=plugin_type,
        raw=obj,
        capabilities={str(k): bool(v) for k, v in capabilities.items()},
        ipam=_mapping(obj, "ipam"),
        dns=dns,
        prev_result=prev_result,
        runtime_config=_mapping(obj, "runtimeConfig"),
        args=_mapping(obj, "args"),
        valid_attachments=_attachments(obj),
    )


@dataclass(frozen=True)
class ConfList:
    """A network configuration list, the runtime's view of a chain."""

    cni_version: str
    name: str
    plugins: tuple[Mapping[str, Any], ...]
    disable_check: bool = False
    disable_gc: bool = False


def parse_conflist(data: bytes) -> ConfList:
    """Parse a .conflist; `cniVersions` picks the highest version both sides speak."""
    obj = decode_json(data, "network config list")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, "missing network name")
    validate_name("network name", name, Code.INVALID_NETWORK_CONFIG)
    version = config_version(obj)
    versions = obj.get("cniVersions")
    if isinstance(versions, list):
        common = [v for v in versions if v in cni_version.SUPPORTED]
        if common:
            version = max(common, key=cni_version.parse)
    plugins = obj.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, "invalid config key 'plugins': empty")
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG, f"invalid config key 'plugins[{i}]': needs a type"
            )
    return ConfList(
        cni_version=version,
        name=name,
        plugins=tuple(plugins),
        disable_check=bool(obj.get("disableCheck", False)),
        disable_gc=bool(obj.get("disableGC", False)),
    )


def plugin_config(
    conflist: ConfList,
    index: int,
    *,
    prev_result: Result | None = None,
    runtime_config: Mapping[str, Any] | None = None,
    valid_attachments: tuple[Attachment, ...] | None = None,
) -> dict[str, Any]:
    """Derive the stdin config of `conflist.plugins[index]` the way libcni does."""
    conf = dict(conflist.plugins[index])
    conf["name"] = conflist.name
    conf["cniVersion"] = conflist.cni_version
    caps = conf.get("capabilities") or {}
    chosen = {k: v for k, v in (runtime_config or {}).items() if caps.get(k)}
    if chosen:
        conf["runtimeConfig"] = chosen
    else:
        conf.pop("runtimeConfig", None)
    if prev_result is not None:
        conf["prevResult"] = to_dict(prev_result, conflist.cni_version)
    if valid_attachments is not None:
        items = [{"containerID": a.container_id, "ifname": a.ifname} for a in valid_attachments]
        for key in VALID_ATTACHMENTS_KEYS:
            conf[key] = items
    return conf
