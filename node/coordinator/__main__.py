"""spidernet-coordinator as a process (`python -m spidernet.node.coordinator`): the fallback
when no node agent takes the call; node/plugins.py wires it."""

from spidernet.cni.skel import run
from spidernet.node.plugins import coordinator_in_process

run(coordinator_in_process())
