"""nftables in a namespace: the pod's "answer through the link it came in on" marking.

Only the connection marking lives here, as scripts (pure); a `Namespaces` runs them in the
pod's namespace (access/), each as one transaction, applied whole or not at all (nft(8),
"-f"), so a failed install leaves no half table behind. The policy rules that act on the
mark (`fwmark <mark> lookup <table>`, one per family) and the routes of that table are
ordinary plan operations (AddRule, AddRoute) that apply installs through netlink: they
carry their own priorities and undos, and DEL removes them like any other rule.
"""

from __future__ import annotations

import re
import subprocess

from spidernet.node import netns
from spidernet.node.errors import NodeError

TABLE = "spidernet_reply"
# Interface names are at most IFNAMSIZ - 1 = 15 bytes (include/uapi/linux/if.h); anything
# else would be spliced into the nft script, so only names `ip link` accepts go through.
_IFNAME = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}")
TIMEOUT_S = 10

# Declaring the table (`table ...` adds it if absent) and deleting it in the same
# transaction succeeds whether or not it existed.
DROP_SCRIPT = f"table inet {TABLE}\ndelete table inet {TABLE}\n"
ADD_ACTION = f"add nftables table 'inet {TABLE}'"
DROP_ACTION = f"delete nftables table 'inet {TABLE}'"


class NftError(NodeError):
    """Raised when nftables refuses a script or cannot run; the message carries nft's own."""


def reason(output: str) -> str:
    """The first line of nft's error output, without its "Error: " prefix (nft prints the
    offending line and a caret under it after that)."""
    first = output.strip().splitlines()[0] if output.strip() else ""
    return first.split("Error: ", 1)[-1] or "nft failed"


def reply_via_link_script(iifname: str, mark: int) -> str:
    """The script that gives connections arriving on `iifname` connection mark `mark`, and
    copies it to the packet mark of what the namespace sends on them, so `fwmark` rules can
    route the replies back out of `iifname`. It fails (nothing changed) if the table exists.

    - prerouting, priority mangle (-150), after conntrack (-200) has looked the packet up
      (nftables wiki, "Netfilter hooks", priority table): a NEW connection arriving on
      `iifname` gets `ct mark`.
    - output, a chain of type `route`: the replies are generated here (the pod is the
      connection's endpoint), so they pass the output hook, not prerouting or forward
      (nftables wiki, "Netfilter hooks"). Only a `route` chain makes a mark change count:
      "a new route lookup is performed if relevant parts of the IP header have changed"
      (nft(8), CHAINS; the packet mark is one of them, net/netfilter/nft_chain_route.c),
      which is what lets `fwmark <mark> lookup <table>` pick the reply's route; the type
      exists only for the output hook (nftables wiki, "Configuring chains"). A `filter`
      chain would set the mark after routing, too late.
    - No mark is restored in prerouting: that would matter only for replies this namespace
      *forwards* (routed before any output hook), and a pod does not forward for others.
    """
    if not _IFNAME.fullmatch(iifname):
        raise ValueError(f"'{iifname}' is not an interface name")
    # `create table` fails with EEXIST when the table is there: a forward step never
    # adopts state it did not make (its undo would remove someone else's table).
    return (
        f"create table inet {TABLE}\n"
        f"add chain inet {TABLE} prerouting"
        " { type filter hook prerouting priority mangle; policy accept; }\n"
        f'add rule inet {TABLE} prerouting iifname "{iifname}" ct state new'
        f" ct mark set {mark:#x}\n"
        f"add chain inet {TABLE} output"
        " { type route hook output priority mangle; policy accept; }\n"
        f"add rule inet {TABLE} output ct mark {mark:#x} meta mark set ct mark\n"
    )


def run_script(netns_path: str, script: str, action: str) -> None:
    """Run `script` with the `nft` program in the namespace (a new process there)."""
    netns.check(netns_path)
    argv = netns.exec_argv(netns_path, ["nft", "-f", "-"])
    try:
        proc = subprocess.run(
            argv, input=script, capture_output=True, text=True, check=False, timeout=TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NftError(f"failed to {action} in netns '{netns_path}': {e}") from e
    if proc.returncode != 0:
        why = reason(proc.stderr) if proc.stderr.strip() else f"exit status {proc.returncode}"
        raise NftError(f"failed to {action} in netns '{netns_path}': {why}")


def list_reply_via_link(netns_path: str) -> str | None:
    """The table as `nft list` prints it, or None when there is none (for CHECK and tests)."""
    netns.check(netns_path)
    argv = netns.exec_argv(netns_path, ["nft", "list", "tables", "inet"])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise NftError(f"failed to list nftables tables in netns '{netns_path}': {proc.stderr}")
    if f"table inet {TABLE}" not in proc.stdout.splitlines():
        return None
    argv = netns.exec_argv(netns_path, ["nft", "list", "table", "inet", TABLE])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise NftError(f"failed to list table 'inet {TABLE}' in netns '{netns_path}'")
    return proc.stdout
