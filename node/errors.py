"""The root of the node side's exceptions: every error spidernet.node raises on purpose is a
NodeError (netlink's, the namespaces', the plugins' planners', the agent's, diag's), so a
caller can tell them from a bug with one `except`. CNI errors (spidernet.cni) are their own
kind: they are what a plugin answers."""

from __future__ import annotations


class NodeError(Exception):
    """An error of the node side: kernel, namespaces, plugins, the agent."""
