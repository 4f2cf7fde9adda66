"""`spidernet install-cni`: its parser (cli.py calls `register`); the installing is
install.py's, imported only when the command runs."""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILURE = 0, 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `install-cni` to the subcommands (cli.py calls this)."""
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
    install.add_argument(
        "--forwarder",
        choices=["auto", "c", "python"],
        default="auto",
        help="spidernet-ipam as a compiled C forwarder (c), the Python one (python), or C when "
        "a compiler is present (auto, the default)",
    )
    install.set_defaults(func=_install_cni)


def _install_cni(args: argparse.Namespace) -> int:
    """What it installed on stdout, notes and failures on stderr."""
    from pathlib import Path

    from spidernet.cni.launcher import LauncherError
    from spidernet.node.install import install_cni

    try:
        installed = install_cni(Path(args.bin_dir), args.python, forwarder=args.forwarder)
    except (LauncherError, OSError) as e:
        print(
            f"spidernet: failed to install CNI plugins into '{args.bin_dir}': {e}", file=sys.stderr
        )
        return EXIT_FAILURE
    for item in installed:
        print(f"installed {item.path} ({item.kind})")
        if item.note:
            print(f"spidernet: {item.path.name}: {item.note}", file=sys.stderr)
    return EXIT_OK
