"""`spidernet lab`: a throw-away underlay with pods on it, and what it is built from.

Throw-away topologies (a "host" namespace, pod namespaces, an L2 segment and a gateway), a
minimal CNI runtime that calls plugins exactly as a container runtime does, and a runner for
the node service. The test lanes build on the same pieces; their own infrastructure (the leak
checker, the kernel VM, pool helpers) lives in the test bed (`testbed/`), outside the wheel.
"""
