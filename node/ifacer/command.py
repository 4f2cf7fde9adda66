"""`spidernet ifacer list` and `spidernet ifacer prune`.

list: the VLANs and bonds spidernet-ifacer made in this namespace (the host's), with the
attachments using each and the links standing on it. Exit 0.

prune: remove those no attachment uses (DEL leaves them, other pods may use them), uppers
first, and forget the records of pods whose namespace is gone. `--dry-run` only says what
would go. Exit 0 when everything asked went, 1 when a removal failed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TextIO

from spidernet.node.netlink import NetlinkFailure

from .inventory import current, prune

EXIT_OK, EXIT_FAILURE = 0, 1


def list_main(state_dir: str = "", output: str = "table", out: TextIO = sys.stdout) -> int:
    """Print the survey; returns the exit status."""
    try:
        made = current(state_dir)
    except (NetlinkFailure, OSError) as e:
        print(f"spidernet ifacer: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if output == "json":
        docs = [{**asdict(m), "unused": m.unused} for m in made]
        out.write(json.dumps(docs, indent=2) + "\n")
        return EXIT_OK
    if not made:
        out.write("no ifacer-made links in this namespace\n")
        return EXIT_OK
    out.write(f"{'NAME':<16} {'KIND':<5} {'STATE':<5} {'DETAIL':<28} USED BY\n")
    for m in made:
        used = ", ".join(m.users + tuple(f"link {u}" for u in m.uppers)) or "-- (unused)"
        state = "up" if m.up else "down"
        out.write(f"{m.name:<16} {m.kind:<5} {state:<5} {m.detail:<28} {used}\n")
    return EXIT_OK


def prune_main(state_dir: str = "", *, dry_run: bool = False, out: TextIO = sys.stdout) -> int:
    """Prune and say what went; returns the exit status."""
    try:
        report = prune(state_dir, dry_run=dry_run)
    except (NetlinkFailure, OSError) as e:
        print(f"spidernet ifacer: {e}", file=sys.stderr)
        return EXIT_FAILURE
    verb = "would remove" if dry_run else "removed"
    for name in report.removed:
        out.write(f"{verb} {name}\n")
    for label in report.stale_records:
        out.write(f"{'would forget' if dry_run else 'forgot'} the record of {label}: netns gone\n")
    if not report.removed and not report.stale_records:
        out.write("nothing to prune\n")
    for error in report.errors:
        print(f"spidernet ifacer: failed to remove {error}", file=sys.stderr)
    return EXIT_FAILURE if report.errors else EXIT_OK
