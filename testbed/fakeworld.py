"""A standard underlay on the in-memory kernel (testbed/fakekernel.py), for unit tests of
apply, unwind and the plugins' verbs: a "host" namespace with eth0 (192.0.2.2/24) and a
"pod" namespace whose eth0 (192.0.2.10/24) the main plugin made, both with a default route
via 192.0.2.1 and the sysctls the coordinator reads."""

from __future__ import annotations

import ipaddress

from spidernet.node.netlink.records import Route

from .fakekernel import FakeKernel

HOST = "/run/netns/host"
POD = "/run/netns/pod"
HOST_IP, POD_IP, GATEWAY = "192.0.2.2", "192.0.2.10", "192.0.2.1"
POD_SYSCTLS = {
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.eth0.rp_filter": "1",
    "net.ipv6.conf.all.disable_ipv6": "1",
}


def underlay() -> FakeKernel:
    """The kernel with the host and the pod (see the module's doc)."""
    kernel = FakeKernel()
    kernel.namespace(HOST, {"net.ipv4.conf.all.rp_filter": "0"})
    kernel.namespace(POD, POD_SYSCTLS)
    for path, kind, address in ((HOST, "physical", HOST_IP), (POD, "macvlan", POD_IP)):
        with kernel.netlink(path) as nl:
            nl.add_link("eth0", kind)
            nl.set_link("eth0", state="up")
            nl.add_address("eth0", ipaddress.ip_interface(f"{address}/24"))
            default = ipaddress.ip_network("0.0.0.0/0")
            gateway = ipaddress.ip_address(GATEWAY)
            nl.add_route(Route(default, gateway=gateway, oif=nl.index("eth0")))
    kernel.mutations.clear()
    return kernel
