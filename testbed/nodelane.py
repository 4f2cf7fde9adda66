"""What the node lane needs before its node can start: the Go-built programs and the images.

`prepare()` builds whatever the cache lacks (kube-apiserver and etcd as for the k8s lane, the
node's own Kubernetes binaries, Multus, helm, and the images: spidernet's from deploy/Dockerfile,
a pause and a workload image) and returns where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.gotools import ensure_helm, ensure_multus
from spidernet.testbed.images import ensure_images
from spidernet.testbed.kubebuild import ensure_binaries, ensure_node_binaries
from spidernet.testbed.node import NodeImages, NodeTools


@dataclass(frozen=True)
class Prepared:
    """The node's programs, its images, and the names a test gives its pods."""

    tools: NodeTools
    images: NodeImages
    spidernet_image: str
    workload_image: str
    workload_archive: Path
    helm: Path


def prepare() -> Prepared:
    """Build or find everything the node lane runs (raises the builders' BuildFailed)."""
    control = ensure_binaries()
    node = ensure_node_binaries()
    multus = ensure_multus()
    helm = ensure_helm()
    built = ensure_images()
    tools = NodeTools(
        etcd=control.etcd,
        apiserver=control.apiserver,
        controller_manager=node.kube_controller_manager,
        scheduler=node.kube_scheduler,
        kubelet=node.kubelet,
        kube_proxy=node.kube_proxy,
        kubectl=node.kubectl,
        multus=multus,
    )
    archives = (built.spidernet.archive, built.pause.archive, built.busybox.archive)
    return Prepared(
        tools=tools,
        images=NodeImages(pause=built.pause.name, archives=archives),
        spidernet_image=built.spidernet.name,
        workload_image=built.busybox.name,
        workload_archive=built.busybox.archive,
        helm=helm,
    )
