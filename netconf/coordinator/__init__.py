"""The spidernet-coordinator config: keys, values, modes (pure)."""
