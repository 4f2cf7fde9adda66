"""spidernet-ifacer as a process: `python -m spidernet.node.ifacer`."""

from spidernet.node.cni.pending import pending_plugin
from spidernet.node.cni.skel import run

run(pending_plugin("spidernet-ifacer", "VLAN and bond creation"))
