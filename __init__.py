"""spidernet: Kubernetes underlay pod networking (CNI plugins, probes, IPAM control plane).

The repository root is this package; `node/` is `spidernet.node`, `control/` is
`spidernet.control`. Keep this module import-free: every CNI plugin process imports it.
"""

__version__ = "0.1.0"
