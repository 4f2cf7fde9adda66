"""SpiderMultusConfig -> NetworkAttachmentDefinition (reference §1.6 and §6; docs/multus.md).

`render_nad` is pure: one SpiderMultusConfig document (as the API server holds it, with the
CRD's defaults; missing defaults are filled here too) -> the NAD document that Multus reads.
The plugin chain is Spiderpool's, with spidernet's plugin types: [spidernet-ifacer] main CNI
[rdma] [chainCNIJsonData...] [spidernet-coordinator] [tuning]. What the CRD schema cannot
check (JSON strings, the bond and VLAN the ifacer would make, the coordinator's values) raises
`MultusConfigError` naming the field.

`reconcile_multus` is one pass of the controller over a `MultusApi` (the Kubernetes store's
`KubeMultusApi`, or a fake): create missing NADs, replace drifted ones, delete those whose
owning SpiderMultusConfig is gone (no garbage collector is assumed), and never write a NAD
that no SpiderMultusConfig owns: a foreign NAD with the wanted name is a conflict, reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from spidernet.cni.errors import CNIError
from spidernet.control.errors import ControlError
from spidernet.control.store.base import StoreError
from spidernet.netconf.coordinator.config import parse_coordinator
from spidernet.netconf.ifacer.config import parse_ifacer

SMC_API_VERSION = "spiderpool.spidernet.io/v2beta1"
SMC_KIND = "SpiderMultusConfig"
NAD_API_VERSION = "k8s.cni.cncf.io/v1"
NAD_KIND = "NetworkAttachmentDefinition"

ANNO_CR_NAME = "multus.spidernet.io/cr-name"
ANNO_CNI_VERSION = "multus.spidernet.io/cni-version"
ANNO_CNICONFIG_NAME = "cni.spidernet.io/cniconfig-name"
ANNO_RESOURCE_NAME = "k8s.v1.cni.cncf.io/resourceName"
DEFAULT_CNI_VERSION = "0.3.1"  # Spiderpool's default (reference §1.6)
CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")

IFACER = "spidernet-ifacer"
IPAM = "spidernet-ipam"
COORDINATOR = "spidernet-coordinator"

# SpiderMultusConfig `coordinator` fields -> the spidernet-coordinator plugin keys.
# (`podCIDRType` is not a plugin key: Spiderpool drops it too.)
_COORDINATOR_KEYS = {
    "mode": "mode",
    "hijackCIDR": "hijackCIDR",
    "policyRoutes": "policyRoutes",
    "podMACPrefix": "podMACPrefix",
    "tunePodRoutes": "tunePodRoutes",
    "podDefaultRouteNIC": "podDefaultRouteNic",
    "hostRuleTable": "hostRuleTable",
    "podRPFilter": "podRPFilter",
    "txQueueLen": "txQueueLen",
    "vethLinkAddress": "vethLinkAddress",
    "vethMTU": "vethMTU",
}
# cniType -> the spec field holding its settings.
_SUB_CONFIG = {
    "macvlan": "macvlan",
    "ipvlan": "ipvlan",
    "vlan": "vlan",
    "sriov": "sriov",
    "ovs": "ovs",
    "ib-sriov": "ibsriov",
    "ipoib": "ipoib",
}

Doc = dict[str, Any]


class MultusConfigError(ControlError, ValueError):
    """A SpiderMultusConfig that cannot be rendered; `field` is the path of the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MultusConfigError(field, "must be an object")
    return value


def _json_object(text: object, field: str) -> Doc:
    if not isinstance(text, str):
        raise MultusConfigError(field, "must be a JSON string")
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise MultusConfigError(field, f"is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise MultusConfigError(field, "must be a JSON object")
    return obj


def nad_name(smc: Mapping[str, Any]) -> str:
    """The NAD's name: the `multus.spidernet.io/cr-name` annotation, else the SMC's name."""
    meta = _mapping(smc.get("metadata"), "metadata")
    annotations = _mapping(meta.get("annotations"), "metadata.annotations")
    name = annotations.get(ANNO_CR_NAME) or meta.get("name")
    if not isinstance(name, str) or not name:
        raise MultusConfigError("metadata.name", "missing")
    return name


# The types whose NIC has a master on the node (`master`, or an SR-IOV VF's PF): the ones
# whose pools may be chosen by the master's subnet (node/ipam/master.py).
MASTER_TYPES = ("macvlan", "ipvlan", "vlan", "sriov", "ib-sriov", "ipoib")


def _ipam(sub: Mapping[str, Any], field: str, disable: bool, cni_type: str) -> Doc | None:
    if disable:
        return None
    pools = _mapping(sub.get("ippools"), f"{field}.ippools")
    match = pools.get("matchMasterSubnet")
    if match is not None and not isinstance(match, bool):
        raise MultusConfigError(f"{field}.ippools.matchMasterSubnet", "expected true or false")
    if match and cni_type not in MASTER_TYPES:
        raise MultusConfigError(
            f"{field}.ippools.matchMasterSubnet",
            f"needs a master on the node; {cni_type} has none ({', '.join(MASTER_TYPES)} do)",
        )
    ipam: Doc = {"type": IPAM}
    if match:
        ipam["match_master_subnet"] = True
    if pools.get("ipv4"):
        ipam["default_ipv4_ippool"] = list(pools["ipv4"])
    if pools.get("ipv6"):
        ipam["default_ipv6_ippool"] = list(pools["ipv6"])
    return ipam


def _with_ipam(plugin: Doc, ipam: Doc | None) -> Doc:
    if ipam is not None:
        plugin["ipam"] = ipam
    return plugin


def _ifacer(sub: Mapping[str, Any], field: str, vlan_id: int) -> tuple[Doc | None, str]:
    """The spidernet-ifacer entry (None when not needed) and the main plugin's master, as
    netconf/ifacer/config.py names the bond and VLAN links."""
    masters = sub.get("master")
    if not isinstance(masters, list) or not masters:
        raise MultusConfigError(f"{field}.master", "needs at least one interface")
    bond = sub.get("bond")
    if len(masters) >= 2 and not bond:
        raise MultusConfigError(f"{field}.bond", "is required with two or more masters")
    if len(masters) < 2 and not vlan_id:
        return None, str(masters[0])
    plugin: Doc = {"type": IFACER, "interfaces": list(masters), "vlanID": vlan_id}
    if len(masters) >= 2:
        b = _mapping(bond, f"{field}.bond")
        plugin["bond"] = {"name": b.get("name"), "mode": b.get("mode", 0)}
        if b.get("options"):
            plugin["bond"]["options"] = b["options"]
    try:
        conf = parse_ifacer(plugin)
    except CNIError as e:
        raise MultusConfigError(field, e.msg) from e
    return plugin, conf.master


def _main(cni_type: str, sub: Mapping[str, Any], field: str, disable_ipam: bool) -> list[Doc]:
    """The ifacer (when needed), the main plugin and what Spiderpool chains right after it."""
    ipam = _ipam(sub, field, disable_ipam, cni_type)
    mtu = int(sub.get("mtu") or 0)
    if cni_type in ("macvlan", "ipvlan"):
        ifacer, master = _ifacer(sub, field, int(sub.get("vlanID") or 0))
        plugin: Doc = {"type": cni_type, "master": master}
        if cni_type == "macvlan":
            plugin["mode"] = "bridge"
        if mtu:
            plugin["mtu"] = mtu
        return [*([ifacer] if ifacer else []), _with_ipam(plugin, ipam)]
    if cni_type == "vlan":
        mode = sub.get("vlanMode") or "manual"
        vlan_id = int(sub.get("vlanID") or 0)
        if mode == "manual" and not vlan_id:
            raise MultusConfigError(f"{field}.vlanID", "is required with vlanMode manual")
        if mode == "auto" and vlan_id:
            raise MultusConfigError(f"{field}.vlanID", "is not allowed with vlanMode auto")
        ifacer, master = _ifacer(sub, field, 0)
        plugin = {"type": "vlan", "master": master}
        if mode == "manual":
            plugin["vlanId"] = vlan_id
        if mtu:
            plugin["mtu"] = mtu
        return [*([ifacer] if ifacer else []), _with_ipam(plugin, ipam)]
    if cni_type == "sriov":
        plugin = {"type": "sriov"}
        if sub.get("vlanID"):
            plugin["vlan"] = sub["vlanID"]
        if sub.get("minTxRateMbps") is not None:
            plugin["min_tx_rate"] = sub["minTxRateMbps"]
        if sub.get("maxTxRateMbps") is not None:
            plugin["max_tx_rate"] = sub["maxTxRateMbps"]
        out = [_with_ipam(plugin, ipam)]
        if sub.get("rdmaIsolation"):
            out.append({"type": "rdma"})
        return out
    if cni_type == "ib-sriov":
        plugin = {"type": "ib-sriov"}
        if sub.get("pkey"):
            plugin["pkey"] = sub["pkey"]
        plugin["link_state"] = sub.get("linkState") or "enable"
        plugin["rdmaIsolation"] = bool(sub.get("rdmaIsolation", True))
        plugin["ibKubernetesEnabled"] = bool(sub.get("enableIbKubernetes", False))
        return [_with_ipam(plugin, ipam)]
    if cni_type == "ipoib":
        if not sub.get("master"):
            raise MultusConfigError(f"{field}.master", "is required")
        return [_with_ipam({"type": "ipoib", "master": sub["master"]}, ipam)]
    # ovs
    if not sub.get("bridge"):
        raise MultusConfigError(f"{field}.bridge", "is required")
    plugin = {"type": "ovs", "bridge": sub["bridge"]}
    for key in ("vlan", "trunk", "deviceID"):
        if sub.get(key) not in (None, "", []):
            plugin[key] = sub[key]
    return [_with_ipam(plugin, ipam)]


def _coordinator(block: Mapping[str, Any]) -> Doc:
    """The spidernet-coordinator entry: `mode` (default auto, as Spiderpool's webhook fills
    it) and the fields the SMC sets; the rest is left to the SpiderCoordinator settings."""
    plugin: Doc = {"type": COORDINATOR, "mode": block.get("mode") or "auto"}
    for smc_key, key in _COORDINATOR_KEYS.items():
        if smc_key != "mode" and block.get(smc_key) not in (None, "", []):
            plugin[key] = block[smc_key]
    try:
        parse_coordinator(plugin)
    except CNIError as e:
        raise MultusConfigError("spec.coordinator", e.msg) from e
    return plugin


def render_config(smc: Mapping[str, Any]) -> str:
    """The NAD's `spec.config`: the CNI network configuration list as a JSON string."""
    meta = _mapping(smc.get("metadata"), "metadata")
    annotations = _mapping(meta.get("annotations"), "metadata.annotations")
    spec = _mapping(smc.get("spec"), "spec")
    cni_type = spec.get("cniType") or "custom"
    if cni_type == "custom":
        custom = spec.get("customCNI")
        if not custom:
            raise MultusConfigError("spec.customCNI", "is required with cniType custom")
        _json_object(custom, "spec.customCNI")
        return str(custom)
    if cni_type not in _SUB_CONFIG:
        raise MultusConfigError("spec.cniType", f"unknown type '{cni_type}'")
    for other_type, other in _SUB_CONFIG.items():
        if other_type != cni_type and spec.get(other) is not None:
            raise MultusConfigError(f"spec.{other}", f"is not allowed with cniType {cni_type}")
    field = f"spec.{_SUB_CONFIG[cni_type]}"
    if spec.get(_SUB_CONFIG[cni_type]) is None:
        raise MultusConfigError(field, f"is required with cniType {cni_type}")
    sub = _mapping(spec.get(_SUB_CONFIG[cni_type]), field)
    version = annotations.get(ANNO_CNI_VERSION) or DEFAULT_CNI_VERSION
    if version not in CNI_VERSIONS:
        raise MultusConfigError(
            f"metadata.annotations[{ANNO_CNI_VERSION}]",
            f"'{version}' is not one of {', '.join(CNI_VERSIONS)}",
        )
    plugins = _main(cni_type, sub, field, bool(spec.get("disableIPAM", False)))
    for i, text in enumerate(spec.get("chainCNIJsonData") or []):
        where = f"spec.chainCNIJsonData[{i}]"
        plugin = _json_object(text, where)
        if not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise MultusConfigError(where, "needs a 'type'")
        plugins.append(plugin)
    if spec.get("enableCoordinator", True):
        plugins.append(_coordinator(_mapping(spec.get("coordinator"), "spec.coordinator")))
    if cni_type == "sriov" and int(sub.get("mtu") or 0) > 0:
        plugins.append({"type": "tuning", "mtu": int(sub["mtu"])})
    conflist = {
        "cniVersion": version,
        "name": annotations.get(ANNO_CNICONFIG_NAME) or nad_name(smc),
        "plugins": plugins,
    }
    return json.dumps(conflist, separators=(",", ":"))


def _annotations(smc: Mapping[str, Any]) -> dict[str, str]:
    """The SMC's annotations (Spiderpool copies them) plus the device-plugin resource."""
    meta = _mapping(smc.get("metadata"), "metadata")
    out = {str(k): str(v) for k, v in _mapping(meta.get("annotations"), "").items()}
    out.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    spec = _mapping(smc.get("spec"), "spec")
    cni_type = spec.get("cniType")
    if cni_type in ("sriov", "ib-sriov"):
        sub = _mapping(spec.get(_SUB_CONFIG[str(cni_type)]), "spec")
        if sub.get("resourceName"):
            out[ANNO_RESOURCE_NAME] = str(sub["resourceName"])
    elif cni_type == "ovs":
        ovs = _mapping(spec.get("ovs"), "spec.ovs")
        if ovs.get("deviceID"):
            out[ANNO_RESOURCE_NAME] = f"ovs-cni.network.kubevirt.io/{ovs.get('bridge')}"
    return out


def owner_reference(smc: Mapping[str, Any]) -> Doc:
    """The controller ownerReference of a NAD made for `smc`."""
    meta = _mapping(smc.get("metadata"), "metadata")
    uid = meta.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MultusConfigError("metadata.uid", "missing (the SMC must come from the API server)")
    return {
        "apiVersion": SMC_API_VERSION,
        "kind": SMC_KIND,
        "name": meta.get("name"),
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def render_nad(smc: Mapping[str, Any]) -> Doc:
    """The NetworkAttachmentDefinition for the SpiderMultusConfig `smc`; raises
    MultusConfigError naming the field when `smc` cannot be rendered."""
    meta = _mapping(smc.get("metadata"), "metadata")
    nad_meta: Doc = {
        "name": nad_name(smc),
        "namespace": meta.get("namespace") or "default",
        "ownerReferences": [owner_reference(smc)],
    }
    annotations = _annotations(smc)
    if annotations:
        nad_meta["annotations"] = annotations
    return {
        "apiVersion": NAD_API_VERSION,
        "kind": NAD_KIND,
        "metadata": nad_meta,
        "spec": {"config": render_config(smc)},
    }


# -- the reconciler ------------------------------------------------------------------------------


class MultusApi(Protocol):
    """What the reconciler needs of the API server (the Kubernetes store's KubeMultusApi).
    Documents are the API server's JSON, `metadata.resourceVersion` and `uid` included."""

    def list_multus_configs(self) -> list[Doc]: ...

    def list_nads(self) -> list[Doc]: ...

    def create_nad(self, doc: Mapping[str, Any]) -> None: ...

    def replace_nad(self, doc: Mapping[str, Any]) -> None: ...

    def delete_nad(self, namespace: str, name: str, uid: str) -> None: ...


def _key(doc: Mapping[str, Any]) -> tuple[str, str]:
    meta = doc.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def controller_uid(nad: Mapping[str, Any]) -> str | None:
    """The uid of the SpiderMultusConfig that controls `nad`, or None."""
    for ref in (nad.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == SMC_KIND
            and str(ref.get("apiVersion", "")).startswith("spiderpool.spidernet.io/")
        ):
            return str(ref.get("uid"))
    return None


def _drifted(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    cur_meta = current.get("metadata") or {}
    want_meta = desired["metadata"]
    if (current.get("spec") or {}).get("config") != desired["spec"]["config"]:
        return True
    if (cur_meta.get("annotations") or {}) != want_meta.get("annotations", {}):
        return True
    return bool(list(cur_meta.get("ownerReferences") or []) != want_meta["ownerReferences"])


def _name(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def reconcile_multus(api: MultusApi) -> list[str]:
    """One pass: make the NADs match the SpiderMultusConfigs; what it did (or could not do),
    one line each ("created ns/name", "updated ...", "deleted ...", "conflict ...",
    "invalid ...", "failed ...")."""
    smcs = [s for s in api.list_multus_configs() if not s["metadata"].get("deletionTimestamp")]
    nads = {_key(n): n for n in api.list_nads()}
    live = {str(s["metadata"].get("uid")) for s in smcs}
    wanted: set[tuple[str, str]] = set()
    done: list[str] = []
    for smc in sorted(smcs, key=_key):
        try:
            desired = render_nad(smc)
        except MultusConfigError as e:
            done.append(f"invalid SpiderMultusConfig {_name(_key(smc))}: {e}")
            continue
        key = _key(desired)
        wanted.add(key)
        current = nads.get(key)
        try:
            if current is None:
                api.create_nad(desired)
                done.append(f"created {NAD_KIND} {_name(key)}")
                continue
            owner = controller_uid(current)
            mine = smc["metadata"]["uid"]
            if owner != mine and (owner is None or owner in live):
                holder = "no SpiderMultusConfig" if owner is None else f"SpiderMultusConfig {owner}"
                done.append(
                    f"conflict SpiderMultusConfig {_name(_key(smc))}: {NAD_KIND} {_name(key)}"
                    f" exists and is owned by {holder}; left alone"
                )
                continue
            if _drifted(current, desired):
                body = {**desired, "metadata": dict(desired["metadata"])}
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                api.replace_nad(body)
                done.append(f"updated {NAD_KIND} {_name(key)}")
        except StoreError as e:  # reported per object; the next pass retries
            done.append(f"failed {NAD_KIND} {_name(key)}: {e}")
    for key, nad in sorted(nads.items()):
        owner = controller_uid(nad)
        if owner is None or key in wanted:
            continue
        if owner in live and _owner_wants(smcs, owner, key):
            continue
        try:
            api.delete_nad(key[0], key[1], str(nad["metadata"].get("uid", "")))
            done.append(f"deleted {NAD_KIND} {_name(key)}")
        except StoreError as e:  # as above
            done.append(f"failed {NAD_KIND} {_name(key)}: {e}")
    return done


def _owner_wants(smcs: Sequence[Mapping[str, Any]], uid: str, key: tuple[str, str]) -> bool:
    """Whether the live SMC `uid` (an invalid one, not rendered this pass) still names the NAD
    `key`: an SMC that became invalid keeps its NAD until it is fixed or deleted."""
    for smc in smcs:
        if smc["metadata"].get("uid") == uid:
            try:
                return (smc["metadata"].get("namespace"), nad_name(smc)) == key
            except MultusConfigError:
                return True
    return False
