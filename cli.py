"""The `spidernet` command line: the top parser, `completion`, and `main`. Every other
subcommand's parser is registered by its own module on its side (REGISTRARS); each imports
its machinery only when run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from spidernet import __version__
from spidernet.control import cluster_cli, resource_cli
from spidernet.control.controller import cli as controller_cli
from spidernet.node import install_cli
from spidernet.node.agent import cli as agent_cli
from spidernet.node.detect import cli as detect_cli
from spidernet.node.diag import cli as diag_cli
from spidernet.node.ifacer import cli as ifacer_cli
from spidernet.node.lab import cli as lab_cli

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT

# Each command family adds its own subcommands, on its own side (node/ or control/), in the
# order `spidernet --help` lists them; `completion` is this module's.
REGISTRARS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    install_cli.register,  # install-cni
    agent_cli.register,  # serve
    resource_cli.register,  # apply, get, delete, gc
    controller_cli.register,  # controller, migrate
    lab_cli.register,  # lab
    cluster_cli.register,  # ip
    diag_cli.register,  # diag
    detect_cli.register,  # detect
    ifacer_cli.register,  # ifacer
)


def _completion(args: argparse.Namespace) -> int:
    from spidernet import completion
    from spidernet.control.model.printing import CLI_NAMES

    # KIND of get and delete: the plural and short names, then the node records' kinds.
    kinds = [n for names in CLI_NAMES.values() for n in names if not n.startswith("spider")]
    kinds += ["pods", "namespaces", "nodes", "statefulsets"]
    words = {"get": kinds, "delete": kinds}
    make = completion.bash if args.shell == "bash" else completion.zsh
    print(make(build_parser(), words), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spidernet",
        description="Kubernetes underlay pod networking: CNI plugins, probes and IPAM.",
    )
    parser.add_argument("--version", action="version", version=f"spidernet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    complete = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description='bash: eval "$(spidernet completion bash)" (or save it in '
        '/etc/bash_completion.d/spidernet); zsh: eval "$(spidernet completion zsh)" after '
        "compinit. Subcommands, options and their choices complete.",
    )
    complete.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")
    complete.set_defaults(func=_completion)
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
