"""What a network configuration may say to each spidernet plugin: the coordinator's and the
ifacer's config schemas, parsed and checked (pure). Below both trees: the node's plugins run
them, the controller renders NADs that pass them."""
