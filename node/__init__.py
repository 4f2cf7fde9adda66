"""The node data plane: CNI protocol, netns and netlink edges, and the CNI plugins."""
