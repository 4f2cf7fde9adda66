"""The CNI protocol layer: pure parsing, results, errors and the plugin skel.

Nothing here touches the kernel or imports a third-party package, so every plugin process
can load it cheaply.
"""
