"""deploy/: the manifests and examples, checked without a cluster.

The example networks' `spec.config` must pass the plugins' own parsers (the conflist, then each
spidernet plugin's config as libcni derives it); every container's command must parse with the
real `spidernet` argument parser; the kustomization must name every manifest and the image tag
must be the package's version; no RBAC rule may use a wildcard. tests/k8s/test_deploy.py
renders deploy/ with a real kustomize and lints it on a real API server.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from spidernet.cli import build_parser
from spidernet.cni.config import parse_conflist, plugin_config
from spidernet.cni.errors import CNIError
from spidernet.control.controller.multus import render_config
from spidernet.netconf.coordinator.config import parse_coordinator
from spidernet.netconf.ifacer.config import parse_ifacer
from spidernet.node.ipam.conf import parse_ipam

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = DEPLOY / "examples"


def documents(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def check_network(config: str) -> list[str]:
    """Parse a NAD's config as the plugins would; the plugin types, in order."""
    conflist = parse_conflist(config.encode())
    for i, plugin in enumerate(conflist.plugins):
        conf = plugin_config(conflist, i)
        if plugin["type"] == "spidernet-coordinator":
            parse_coordinator(conf)
        elif plugin["type"] == "spidernet-ifacer":
            parse_ifacer(conf)
        if plugin.get("ipam", {}).get("type") == "spidernet-ipam":
            parse_ipam(conf["ipam"])
    return [p["type"] for p in conflist.plugins]


def nads() -> list[tuple[str, str]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["config"])
        for _, doc in documents(EXAMPLES)
        if doc["kind"] == "NetworkAttachmentDefinition"
    ]


def test_examples_cover_the_documented_networks() -> None:
    chains = {name: check_network(config) for name, config in nads()}
    assert chains == {
        "macvlan-ens192": ["macvlan", "spidernet-coordinator"],
        "ipvlan-eth1": ["ipvlan", "spidernet-coordinator"],
        "macvlan-bond0-vlan100": ["spidernet-ifacer", "macvlan", "spidernet-coordinator"],
    }


def test_spidermultusconfig_example_renders_a_network_the_plugins_accept() -> None:
    docs = {doc["kind"]: doc for _, doc in documents(EXAMPLES)}
    smc, pool = docs["SpiderMultusConfig"], docs["SpiderIPPool"]
    config = render_config(smc)
    assert check_network(config) == ["spidernet-ifacer", "macvlan", "spidernet-coordinator"]
    ipam = parse_conflist(config.encode()).plugins[1]["ipam"]
    assert ipam["default_ipv4_ippool"] == [pool["metadata"]["name"]]


def test_a_bad_example_would_be_caught() -> None:
    """The parsers refuse a misspelt key, so the checks above can fail."""
    config = dict(nads())["macvlan-ens192"].replace("default_ipv4_ippool", "default_ipv4_pool")
    with pytest.raises(CNIError, match="default_ipv4_pool"):
        check_network(config)


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in documents(DEPLOY / "manifests"):
        if doc["kind"] in ("DaemonSet", "Deployment"):
            spec = doc["spec"]["template"]["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                yield f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", c


def spidernet_argvs() -> list[tuple[str, list[str]]]:
    """Every `spidernet ...` command line in the manifests and the Dockerfile."""
    found = [
        (where, c["command"][1:]) for where, c in containers() if c["command"][0] == "spidernet"
    ]
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    for i, m in enumerate(re.finditer(r"/spidernet install-cni [^&\n]*", text)):
        found.append((f"Dockerfile install-cni #{i}", shlex.split(m.group(0))[1:]))
    return found


def test_every_spidernet_command_parses_with_the_real_cli() -> None:
    argvs = dict(spidernet_argvs())
    assert {where.split(" ")[0].split("/")[-1] for where in argvs} >= {
        "agent",
        "controller",
        "Dockerfile",
    }
    parser = build_parser()
    for where, argv in argvs.items():
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `spidernet {' '.join(argv)}` does not parse")


def test_agent_and_controller_flags() -> None:
    parser = build_parser()
    argvs = dict(spidernet_argvs())
    agent = parser.parse_args(argvs["DaemonSet/spidernet-agent/agent"])
    assert agent.kube
    assert agent.socket == "/run/spidernet/spidernet.sock"
    assert agent.node is None  # NODE_NAME from the downward API
    env = dict(containers())["DaemonSet/spidernet-agent/agent"]["env"]
    assert env == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    ctl = parser.parse_args(argvs["Deployment/spidernet-controller/controller"])
    assert (ctl.lease_namespace, ctl.lease_name) == ("kube-system", "spidernet-controller")
    install = parser.parse_args(argvs["Dockerfile install-cni #0"])
    assert (install.python, install.forwarder) == ("/usr/bin/python3", "c")


def test_kustomization_names_every_manifest_and_the_package_version() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    folders = ("chart/crds", "manifests")
    files = {str(p.relative_to(DEPLOY)) for d in folders for p in (DEPLOY / d).glob("*")}
    assert listed == files
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert kustomization["images"] == [
        {"name": "spidernet", "newName": "ghcr.io/spidernet/spidernet", "newTag": version}
    ]
    images = {c["image"] for _, c in containers()}
    # Rendered from the chart as `spidernet:<version>`; kustomize's `images:` names the registry.
    assert images == {f"spidernet:{version}"}


def test_rbac_has_no_wildcards() -> None:
    rules = [
        rule
        for _, doc in documents(DEPLOY / "manifests")
        if doc["kind"] in ("ClusterRole", "Role")
        for rule in doc["rules"]
    ]
    assert len(rules) > 10
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule


def test_agent_probes_use_what_the_agent_serves() -> None:
    agent = dict(containers())["DaemonSet/spidernet-agent/agent"]
    argv = build_parser().parse_args(agent["command"][1:])
    # Both ask /healthz on the metrics address the agent is told to serve (serve.py answers
    # it only when the plugins' socket answers).
    host, _, port = argv.metrics_address.rpartition(":")
    for probe in ("readinessProbe", "livenessProbe"):
        get = agent[probe]["httpGet"]
        # The kubelet probes the node's loopback, which an all-addresses bind includes.
        assert get["host"] == "127.0.0.1"
        assert host in ("0.0.0.0", "127.0.0.1")
        assert str(get["port"]) == port
        assert get["path"] == "/healthz"
    mounts = {m["mountPath"] for m in agent["volumeMounts"]}
    assert {"/run/spidernet", "/var/lib/spidernet", "/run/netns", "/var/run/netns"} <= mounts
