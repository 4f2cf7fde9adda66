"""spidernet-ifacer as a process: `python -m spidernet.node.ifacer`."""

from spidernet.node.cni.skel import run

from .commands import make_plugin

run(make_plugin())
