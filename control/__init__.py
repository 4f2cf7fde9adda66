"""The control plane: resources, the allocator, stores and the trio service (IPAM issue)."""
