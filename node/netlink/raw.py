"""Synchronous rtnetlink reads: dumps and single gets on a plain socket.

pyroute2 (0.9) runs every request through an asyncio event loop, one loop turn per
message: about 1 ms for a dump of three links. Reads are most of what a CNI call does
(the coordinator gathers both namespaces before it plans), so they go here instead: the
request is one of pyroute2's own message classes, encoded by it, sent with `send`; the
answer is read with `recv` and decoded by pyroute2's marshal. Same messages, same
decoding, no event loop: dumps of addresses and routes take a fifth of the time.
Routes, rules and neighbours, the changes a plan makes most, are added and removed the same
way, and links' state, MAC, MTU, queue length and master are set the same way; the rest
(creating links, addresses) goes through pyroute2's IPRoute, on its own socket.
"""

from __future__ import annotations

import socket
from typing import Any

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

# A dump answer is at most 32 KiB per datagram (netlink_dump: max_recvmsg_len, capped).
RECV_BUFFER = 1 << 16
RECV_TIMEOUT_S = 10.0
# linux/netlink.h: with strict checking the kernel validates a request's header fields and
# honours the filters of a dump (a route dump of one table), instead of ignoring them.
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12


class Reader:
    """Requests and their answers on one NETLINK_ROUTE socket of its own (which it owns)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(RECV_TIMEOUT_S)  # a kernel that never answers is an error, not a hang
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.bind((0, 0))  # the kernel picks the port id
        self._sock = sock
        self._marshal = MarshalRtnl()
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def create(self, msg: nlmsg, msg_type: int) -> None:
        """Send a new object (NLM_F_CREATE | NLM_F_EXCL: one that exists is EEXIST) and wait
        for the kernel's acknowledgement."""
        self.request(msg, msg_type, dump=False, flags=NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    def change(self, msg: nlmsg, msg_type: int) -> None:
        """Send a change to an existing object and wait for the acknowledgement."""
        self.request(msg, msg_type, dump=False, flags=NLM_F_ACK)

    def delete(self, msg: nlmsg, msg_type: int) -> None:
        """Send a removal and wait for the kernel's acknowledgement."""
        self.request(msg, msg_type, dump=False, flags=NLM_F_ACK)

    def request(self, msg: nlmsg, msg_type: int, *, dump: bool, flags: int = 0) -> list[Any]:
        """Send `msg` as `msg_type` (a dump, a get, or with NLM_F_ACK in `flags` a change);
        the answering messages, decoded.

        Raises pyroute2's NetlinkError with the kernel's errno, or NetlinkDumpInterrupted
        when the kernel flagged the dump inconsistent (NLM_F_DUMP_INTR: state changed
        while it was read; the caller retries)."""
        self._seq += 1
        seq = self._seq
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0) | flags
        msg["header"]["sequence_number"] = seq
        msg.encode()
        self._sock.send(msg.data)
        out: list[Any] = []
        interrupted = False
        while True:
            data = self._sock.recv(RECV_BUFFER)
            for answer in self._marshal.parse(data):
                header = answer["header"]
                if header["sequence_number"] != seq:
                    continue  # a late answer to an earlier request that raised
                if header.get("error") is not None:
                    raise header["error"]
                interrupted = interrupted or bool(header["flags"] & NLM_F_DUMP_INTR)
                if header["type"] == NLMSG_DONE:
                    if interrupted:
                        raise NetlinkDumpInterrupted()
                    return out
                if header["type"] == 2:  # NLMSG_ERROR with error 0: an acknowledgement
                    return out
                out.append(answer)
                if not dump:
                    return out


__all__ = ["NetlinkError", "Reader"]
