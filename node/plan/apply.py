"""Execute a plan against the kernel, and undo it (effect).

`apply` runs a plan's operations in order and registers each one's undo right after it
succeeds; when one fails it runs the registered undos, last first, and raises ApplyFailed:
a failed ADD leaves nothing behind (STYLE.md §2). `unwind` is DEL's side: it runs undo
operations one after the other, counts "not found", "already there" and "namespace gone"
as done, carries on past errors and returns them (STYLE.md §3).

Where each operation acts: through a `Reach` (node/access/), which reaches into the
pod's namespace and the host's without any thread of ours entering one (STYLE.md §5):
- netlink work goes through one client per side, opened on first use and kept for the
  whole plan;
- sysctls are written under /proc/sys/net as seen from the side's namespace;
- ReplyViaLink runs the script of `nft.py`, which only writes the nftables connection
  marking: the `fwmark <mark> lookup <table>` rules and the table's default route are
  AddRule and AddRoute operations of the plan, each with its own priority and undo;
- Announce sends through a packet socket opened in the namespace, with frames the
  `announce` hook builds (the detect adapter; scapy stays out of here).

An operation that does several things (AddVeth: create, then set both MACs) removes what
it made when a later part of it fails, so only whole operations have undos to run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import assert_never

from spidernet.node import netns, nft
from spidernet.node.access.base import Reach
from spidernet.node.access.spawn import Spawning
from spidernet.node.errors import NodeError
from spidernet.node.netlink import NetlinkExists, NetlinkFailure, NetlinkMissing
from spidernet.node.netlink.protocol import Rtnetlink
from spidernet.node.netlink.records import (
    NUD_PERMANENT,
    RTPROT_STATIC,
    IPAddress,
    Neighbour,
    Route,
    Rule,
)

from .describe import describe
from .ops import (
    AddAddress,
    AddBond,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    AddVlan,
    Announce,
    DeleteAddress,
    DeleteLink,
    DeleteNeighbour,
    DeleteRoute,
    DeleteRule,
    DropReplyViaLink,
    Enslave,
    Op,
    Release,
    ReplyViaLink,
    SetLinkDown,
    SetLinkUp,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
    Side,
    undo_all,
)

# Operations on links (the rest act on addresses, routes, rules, neighbours and sysctls).
_LinkOp = (
    AddVeth
    | DeleteLink
    | SetLinkUp
    | SetLinkDown
    | SetMac
    | SetTxQueueLen
    | AddVlan
    | AddBond
    | Enslave
    | Release
)

Announcer = Callable[[socket.socket, str, IPAddress], None]
"""`announce(packet_socket, dev, address)`: tell the neighbours on link `dev` about `address`,
through an AF_PACKET socket opened in the link's namespace."""

# rtm_protocol 0 (RTPROT_UNSPEC) in a delete request matches a route of any protocol
# (fib_table_delete, ip6_route_del): a route moved out of main was added by someone else.
_ANY_PROTO = 0


@dataclass(frozen=True)
class Target:
    """Where a plan acts: the pod's namespace and the host's, as paths (`/run/netns/x`,
    `/proc/PID/ns/net`); `host_netns` None is this process's own namespace."""

    pod_netns: str
    host_netns: str | None


class ApplyFailed(NodeError):
    """Raised when an operation of a plan failed; everything before it has been undone.

    `op` is the operation, `cause` its error, `undo_errors` what could not be undone (empty
    when the namespaces are back as they were)."""

    def __init__(self, op: Op, cause: Exception, undo_errors: Sequence[str] = ()) -> None:
        message = f"failed to {describe(op)}: {reason(cause)}"
        if undo_errors:
            message += "; and undoing what was done failed too: " + "; ".join(undo_errors)
        super().__init__(message)
        self.op = op
        self.cause = cause
        self.undo_errors = list(undo_errors)


def reason(error: BaseException) -> str:
    """An error as the cause part of a message: the kernel's words for netlink errors."""
    if isinstance(error, NetlinkFailure):
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


def _gone(error: Exception) -> bool:
    """True for what an undo counts as done: the object or its namespace is not there, or
    (an undo that adds something back) it is there already."""
    return isinstance(error, NetlinkMissing | NetlinkExists | netns.NetnsGone)


class _Executor:
    """Runs operations in a Target, holding one netlink client per side."""

    def __init__(
        self,
        target: Target,
        announce: Announcer | None,
        clients: Mapping[Side, Rtnetlink] | None = None,
        access: Reach | None = None,
    ) -> None:
        self._target = target
        self._announce = announce
        self._access: Reach = access or Spawning()
        # Clients the caller opened (and closes); opening one in a namespace costs a fork.
        self._given = dict(clients or {})
        self._clients: dict[Side, Rtnetlink] = dict(self._given)

    def close(self) -> None:
        for side, client in self._clients.items():
            if side not in self._given:
                client.close()
        self._clients.clear()

    def _path(self, side: Side) -> str | None:
        return self._target.pod_netns if side == "pod" else self._target.host_netns

    def _nl(self, side: Side) -> Rtnetlink:
        client = self._clients.get(side)
        if client is None:
            client = self._clients[side] = self._access.netlink(self._path(side))
        return client

    def run_all(self, ops: Iterable[Op]) -> list[str]:
        """Run undo-type operations forgivingly; return the errors as sentences.

        Shared rules go last: whether their table is empty is known only once the other
        undos (its routes, the links whose routes go with them) have run."""
        pending = list(ops)
        last = [op for op in pending if isinstance(op, DeleteRule) and op.shared]
        errors = []
        for op in [op for op in pending if op not in last] + last:
            try:
                self.run(op, undoing=True)
            except Exception as e:  # every failure is reported, none stops the others
                if not _gone(e):
                    errors.append(f"failed to {describe(op)}: {reason(e)}")
        return errors

    def run(self, op: Op, *, undoing: bool) -> None:
        """Execute one operation."""
        match op:
            case (
                AddVeth()
                | DeleteLink()
                | SetLinkUp()
                | SetLinkDown()
                | SetMac()
                | SetTxQueueLen()
                | AddVlan()
                | AddBond()
                | Enslave()
                | Release()
            ):
                self._link(op)
            case AddAddress():
                self._nl(op.side).add_address(op.name, op.address)
            case DeleteAddress():
                self._nl(op.side).delete_address(op.name, op.address)
            case AddRoute():
                self._nl(op.side).add_route(self._route(op, RTPROT_STATIC))
            case DeleteRoute():
                self._nl(op.side).delete_route(self._route(op, _ANY_PROTO))
            case AddRule():
                self._add_rule(op)
            case DeleteRule():
                self._delete_rule(op)
            case AddNeighbour():
                nl = self._nl(op.side)
                nl.add_neighbour(Neighbour(nl.index(op.dev), op.ip, op.mac, NUD_PERMANENT))
            case DeleteNeighbour():
                nl = self._nl(op.side)
                nl.delete_neighbour(Neighbour(nl.index(op.dev), op.ip))
            case SetSysctl():
                self._sysctl(op, missing_ok=undoing)
            case ReplyViaLink():
                script = nft.reply_via_link_script(op.iifname, op.mark)
                self._access.nft(self._path(op.side), script, nft.ADD_ACTION)
            case DropReplyViaLink():
                self._access.nft(self._path(op.side), nft.DROP_SCRIPT, nft.DROP_ACTION)
            case Announce():
                # No hook: the caller decided not to announce and logs that itself.
                if self._announce is not None:
                    family, kind = socket.AF_PACKET, socket.SOCK_RAW
                    # Protocol 0: the socket only sends, so nothing is queued for it to read.
                    sock = self._access.open_socket(self._path(op.side), family, kind, 0)
                    try:
                        self._announce(sock, op.dev, op.address)
                    finally:
                        self._access.discard(sock)
            case _:  # pragma: no cover - mypy checks that every op has a case
                assert_never(op)

    def _link(self, op: _LinkOp) -> None:
        match op:
            case AddVeth():
                self._add_veth(op)
            case DeleteLink():
                self._nl(op.side).delete_link(op.name)
            case SetLinkUp():
                self._nl(op.side).set_link(op.name, state="up")
            case SetLinkDown():
                self._nl(op.side).set_link(op.name, state="down")
            case SetMac():
                self._nl(op.side).set_link(op.name, address=op.mac)
            case SetTxQueueLen():
                self._nl(op.side).set_link(op.name, txqlen=op.qlen)
            case AddVlan() | AddBond():
                self._add_master(op)
            case Enslave():
                self._enslave(op)
            case Release():
                self._release(op)
            case _:  # pragma: no cover - mypy checks that every op has a case
                assert_never(op)

    def _add_master(self, op: AddVlan | AddBond) -> None:
        nl = self._nl(op.side)
        if isinstance(op, AddVlan):
            nl.add_vlan(op.name, op.parent, op.vlan_id)
        else:
            nl.add_bond(op.name, op.options)
        if op.alias:
            try:
                nl.set_alias(op.name, op.alias)
            except BaseException:
                nl.delete_link(op.name, missing_ok=True)
                raise

    def _enslave(self, op: Enslave) -> None:
        # Down, enslave, up: the order Spiderpool and ifenslave use.
        nl = self._nl(op.side)
        nl.set_link(op.name, state="down")
        try:
            nl.set_link(op.name, master=nl.index(op.master))
        except BaseException:
            if op.was_up:
                nl.set_link(op.name, state="up")
            raise
        try:
            nl.set_link(op.name, state="up")
        except BaseException:
            # Enslaved but not up: the op is not done, so no undo would release it.
            self._release(Release(op.side, op.name, op.was_up))
            raise

    def _release(self, op: Release) -> None:
        nl = self._nl(op.side)
        nl.set_link(op.name, master=0)
        if op.up:
            nl.set_link(op.name, state="up")

    def _add_veth(self, op: AddVeth) -> None:
        # Both MACs are given at creation: a MAC the kernel picked at random is one udev's
        # MACAddressPolicy may replace (systemd.link(5)); a set one (addr_assign_type
        # NET_ADDR_SET) it leaves alone.
        self._nl("host").add_veth(
            op.host_name,
            op.pod_name,
            peer_netns=self._target.pod_netns,
            mtu=op.mtu,
            mac=op.host_mac,
            peer_mac=op.pod_mac,
        )

    def _route(self, op: AddRoute | DeleteRoute, proto: int) -> Route:
        return Route(
            dst=op.dst,
            table=op.table,
            gateway=op.gateway,
            oif=self._nl(op.side).index(op.dev),
            prefsrc=op.src,
            proto=proto,
            scope=op.scope,
        )

    @staticmethod
    def _rule(op: AddRule | DeleteRule) -> Rule:
        return Rule(
            family=op.family,
            priority=op.priority,
            table=op.table,
            src=op.src,
            dst=op.dst,
            iifname=op.iifname,
            fwmark=op.fwmark,
        )

    def _add_rule(self, op: AddRule) -> None:
        try:
            self._nl(op.side).add_rule(self._rule(op))
        except NetlinkExists:
            # A shared rule (the host's `from all lookup <hostRuleTable>`) is there already
            # for every pod after the first; any other rule found in place is an error.
            if not op.shared:
                raise

    def _delete_rule(self, op: DeleteRule) -> None:
        nl = self._nl(op.side)
        if op.shared and self._table_in_use(nl, op.family, op.table):
            return  # other pods' routes still need it
        nl.delete_rule(self._rule(op))

    @staticmethod
    def _table_in_use(nl: Rtnetlink, family: int, table: int) -> bool:
        return any(r.table == table and r.family == family for r in nl.routes(table))

    def _sysctl(self, op: SetSysctl, *, missing_ok: bool) -> None:
        self._access.set_sysctl(self._path(op.side), op.key, op.value, missing_ok=missing_ok)


def apply(
    plan: Sequence[Op],
    target: Target,
    *,
    announce: Announcer | None = None,
    clients: Mapping[Side, Rtnetlink] | None = None,
    access: Reach | None = None,
) -> None:
    """Execute `plan` in order; on a failure undo what was done and raise ApplyFailed.

    An operation that finds its object there already fails (NetlinkExists): a plan never
    adopts state it did not make, since its undo would remove it. The exception is a
    `shared` AddRule, which many pods' plans add. `clients`: netlink clients already open
    in the target's namespaces, to reuse (the caller keeps owning them); `access`: how to
    reach the namespaces (default: a new process per reach, `Spawning`).
    """
    executor = _Executor(target, announce, clients, access)
    done: list[Op] = []
    try:
        for op in plan:
            try:
                executor.run(op, undoing=False)
            except BaseException as e:
                undo_errors = executor.run_all(undo_all(tuple(done)))
                if isinstance(e, Exception):
                    raise ApplyFailed(op, e, undo_errors) from e
                for line in undo_errors:  # KeyboardInterrupt and the like go on as they are
                    e.add_note(line)
                raise
            done.append(op)
    finally:
        executor.close()


def unwind(
    ops: Sequence[Op],
    target: Target,
    *,
    announce: Announcer | None = None,
    access: Reach | None = None,
) -> list[str]:
    """Run `ops` (undo operations, usually `undo_all(plan)`) in order, for DEL.

    Removing what is not there, adding back what is there, and a namespace that is gone
    all count as done; an error does not stop the operations after it. Returns the errors,
    one sentence each; running it twice is harmless.
    """
    executor = _Executor(target, announce, access=access)
    try:
        return executor.run_all(ops)
    finally:
        executor.close()
