"""spidernet-ipam as a process: `python -m spidernet.node.ipam` forwards the call to the
node service, exactly as the installed executable does."""

from spidernet.cni.forward import main
from spidernet.cni.version import version_info_json

main("spidernet-ipam", version_info_json())
