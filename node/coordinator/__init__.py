"""spidernet-coordinator: veth host connectivity and policy routing across NICs."""
