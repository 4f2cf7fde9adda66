"""The spidernet-ifacer config (pure)."""
