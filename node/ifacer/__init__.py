"""spidernet-ifacer: creates the VLAN and bond masters that underlay NICs hang from.

config (pure) -> plan (pure, from the host's links) -> apply (node/plan/apply.py); users
records which attachment stands on which links, and inventory lists and prunes the links the
ifacer made that no pod uses (`spidernet ifacer list|prune`).
"""
