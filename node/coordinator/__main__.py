"""spidernet-coordinator as a process: `python -m spidernet.node.coordinator` does the work in
this process (the fallback when no node service takes the call)."""

from spidernet.node.local import run_coordinator

run_coordinator()
