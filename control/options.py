"""Command-line options that commands of both halves take: the service's socket, a metrics
address, a kubeconfig. Only argparse: every command module imports this while the parser is
built, before any command runs."""

from __future__ import annotations

import argparse

KUBECONFIG_HELP = "the kubeconfig (default: $KUBECONFIG, else in-cluster)"


def add_socket(parser: argparse.ArgumentParser) -> None:
    """`--socket`: the node service's unix socket (control/client.py's `socket_path`)."""
    parser.add_argument(
        "--socket",
        help="service socket (default: $SPIDERNET_SOCKET or /run/spidernet/spidernet.sock)",
    )


def metrics_address(text: str) -> tuple[str, int] | None:
    """--metrics-address: (host, port), or None for 'off'; ValueError when malformed."""
    if text == "off":
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("--metrics-address must be HOST:PORT or 'off'")
    return host, int(port)
