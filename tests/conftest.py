"""Every lane: the fixtures the root lanes share come from the test bed's plugin."""

pytest_plugins = ["spidernet.testbed.lanefixtures"]
