"""`spidernet diag`: explain a pod's data path and name what is wrong (docs/diag.md).

model (records) -> plan (what to ask, pure) -> gather (ask: netlink, probes, the service)
-> analyze (findings, pure) -> render (JSON document and tables); run ties them together,
command is the CLI around it.
"""
