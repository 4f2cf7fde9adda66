"""spidernet-ipam: the IPAM plugin, a thin client of the control service."""
