"""spidernet-ifacer as a process (`python -m spidernet.node.ifacer`): the fallback when no
node agent takes the call, in the runtime's (the host's) namespace; node/plugins.py wires
it."""

from spidernet.cni.skel import run
from spidernet.node.plugins import ifacer_in_process

run(ifacer_in_process())
