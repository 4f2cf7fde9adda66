"""Throw-away network topologies, a minimal CNI runtime and a leak checker.

The netns test lane and the lab (`spidernet lab`) build the same things: a "host"
namespace, pod namespaces, an L2 underlay segment (a bridge in its own namespace) and a
gateway; they call CNI plugins exactly as a container runtime does; and they check that
nothing was left behind.
"""
