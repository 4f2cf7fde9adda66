"""spidernet-ifacer as a process: `python -m spidernet.node.ifacer` does the work in this
process, in the runtime's (the host's) namespace: the fallback when no node service takes
the call."""

import sys

from spidernet.cni.skel import run

from .commands import Context, make_plugin

sys.stderr.write("spidernet-ifacer: no node service forwarding: running in-process\n")
run(make_plugin(Context()))
