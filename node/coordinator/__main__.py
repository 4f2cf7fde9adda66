"""spidernet-coordinator as a process: `python -m spidernet.node.coordinator`."""

from spidernet.node.cni.pending import pending_plugin
from spidernet.node.cni.skel import run

run(pending_plugin("spidernet-coordinator", "host connectivity and policy routing"))
