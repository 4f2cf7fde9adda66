"""spidernet-ifacer: creates the VLAN and bond masters that underlay NICs hang from."""
