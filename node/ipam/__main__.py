"""spidernet-ipam as a process: `python -m spidernet.node.ipam`."""

from spidernet.node.cni.pending import pending_plugin
from spidernet.node.cni.skel import run

run(pending_plugin("spidernet-ipam", "IP address management"))
