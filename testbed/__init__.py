"""The test lanes' infrastructure: Go-built fixtures, clusters, images and the real node.

Not part of the distribution (pyproject's package list leaves it out, and the package lane
checks the wheel holds none of it); the product never imports it (an import-linter
contract). Tests and benchmarks import it as `spidernet.testbed` from a checkout.
"""
