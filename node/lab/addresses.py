"""The standard underlay's addresses, shared by `spidernet lab` and the test bed's world.

Documentation prefixes (RFC 5737, RFC 3849): never routed anywhere, and only ever
configured inside namespaces a run made itself.
"""

from __future__ import annotations

SUBNET4 = "192.0.2.0/24"
GATEWAY4 = "192.0.2.1"
GATEWAY6 = "2001:db8:1::1"
# The "host" namespace's own addresses on the underlay (macvlan pods reach them through the
# coordinator's veth0, never through the macvlan master), and a "service" address on its lo
# inside the service CIDR.
HOST4 = "192.0.2.2"
HOST6 = "2001:db8:1::2"
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.10"
