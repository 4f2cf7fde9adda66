"""The `spidernet` command line. Subcommands import their machinery only when run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spidernet import __version__

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _install_cni(args: argparse.Namespace) -> int:
    from spidernet.node.cni.launcher import LauncherError
    from spidernet.node.install import install_cni

    try:
        paths = install_cni(Path(args.bin_dir), args.python)
    except (LauncherError, OSError) as e:
        print(
            f"spidernet: failed to install CNI plugins into '{args.bin_dir}': {e}", file=sys.stderr
        )
        return EXIT_FAILURE
    for path in paths:
        print(f"installed {path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spidernet",
        description="Kubernetes underlay pod networking: CNI plugins, probes and IPAM.",
    )
    parser.add_argument("--version", action="version", version=f"spidernet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    install = sub.add_parser(
        "install-cni",
        help="install the spidernet-ipam, -coordinator and -ifacer executables",
        description="Write the CNI plugin executables into a CNI bin directory.",
    )
    install.add_argument("--bin-dir", required=True, help="CNI bin directory, e.g. /opt/cni/bin")
    install.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter the plugins run under (default: this one)",
    )
    install.set_defaults(func=_install_cni)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
