"""`spidernet ifacer list|prune`: its parser (cli.py calls `register`); the commands are
command.py's, imported only when one runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ifacer` (list, prune) to the subcommands."""
    ifacer = sub.add_parser(
        "ifacer",
        help="the VLANs and bonds spidernet-ifacer made: list them, prune the unused",
        description="spidernet-ifacer's DEL leaves the VLANs and bonds it made (other pods "
        "may stand on them). list shows them with their users; prune removes those no pod "
        "uses, VLANs before their bond.",
    )
    ifacer_sub = ifacer.add_subparsers(dest="ifacer_command", metavar="ACTION", required=True)
    listing = ifacer_sub.add_parser("list", help="ifacer-made links and who uses them")
    listing.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="table or JSON"
    )
    pruning = ifacer_sub.add_parser("prune", help="remove ifacer-made links no pod uses")
    pruning.add_argument("--dry-run", action="store_true", help="only say what would go")
    for p in (listing, pruning):
        p.add_argument(
            "--state-dir",
            help="the ifacer's records (default: $SPIDERNET_IFACER_DIR or /run/spidernet/ifacer)",
        )
    listing.set_defaults(func=_ifacer_list)
    pruning.set_defaults(func=_ifacer_prune)


def _ifacer_list(args: argparse.Namespace) -> int:
    from spidernet.node.ifacer import command

    return command.list_main(args.state_dir or "", output=args.output)


def _ifacer_prune(args: argparse.Namespace) -> int:
    from spidernet.node.ifacer import command

    return command.prune_main(args.state_dir or "", dry_run=args.dry_run)
