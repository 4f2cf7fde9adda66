"""Traffic control through the netlink client (tc-bpf(8)): a clsact qdisc on a link, and
BPF programs attached as filters at its ingress hook."""

from __future__ import annotations

from functools import partial

from .errors import NetlinkExists
from .session import Session

# pkt_sched.h: TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS), the parent of a clsact qdisc's
# ingress filters (`tc filter add ... ingress`).
TC_H_CLSACT_INGRESS = 0xFFFFFFF2
# A filter added without a priority gets one of its own (tc_new_tfilter, tcf_auto_prio), so
# every filter of ours can have handle 1 in it.
TC_BPF_HANDLE = 1


class TrafficControl(Session):
    """The client's clsact qdiscs and ingress BPF filters."""

    def add_clsact(self, name: str) -> bool:
        """Give link `name` a clsact qdisc; False when it has one already (or an ingress
        qdisc, which holds the same handle ffff:), which is then not this caller's to
        remove."""
        index = self.index(name)
        try:
            self._call(
                "add", f"clsact qdisc on '{name}'", lambda: self._ipr.tc("add", "clsact", index)
            )
        except NetlinkExists:
            return False
        return True

    def delete_clsact(self, name: str) -> None:
        """Remove link `name`'s clsact qdisc, and every filter on it with it."""
        index = self.index(name)
        self._call(
            "delete", f"clsact qdisc on '{name}'", lambda: self._ipr.tc("del", "clsact", index)
        )

    def attach_bpf_ingress(self, name: str, prog_fd: int, label: str) -> None:
        """Attach the SCHED_CLS program `prog_fd` (a descriptor of this process) to link
        `name`'s ingress hook in direct-action mode, as filter `label` (TCA_BPF_NAME, the
        name `detach_bpf_ingress` finds it by). The link needs a clsact qdisc."""
        index = self.index(name)
        self._call(
            "attach",
            f"bpf filter '{label}' to the ingress of '{name}'",
            lambda: self._ipr.tc(
                "add-filter",
                "bpf",
                index,
                TC_BPF_HANDLE,
                parent=TC_H_CLSACT_INGRESS,
                fd=prog_fd,
                name=label,
                classid=1,
                direct_action=True,
            ),
        )

    def detach_bpf_ingress(self, name: str, label: str) -> int:
        """Remove the BPF filters called `label` from link `name`'s ingress hook; how many
        there were."""
        index = self.index(name)
        where = f"bpf filter '{label}' on the ingress of '{name}'"
        found = self._call(
            "list",
            where,
            lambda: list(self._ipr.get_filters(index=index, parent=TC_H_CLSACT_INGRESS)),
        )
        removed = 0
        for m in found:
            # A dump lists each priority's head (handle 0, no options) before its filters.
            options = m.get_attr("TCA_OPTIONS")
            if m.get_attr("TCA_KIND") != "bpf" or options is None:
                continue
            if options.get_attr("TCA_BPF_NAME") != label:
                continue
            # The filter by its handle and `info` (priority << 16 | protocol).
            delete = partial(
                self._ipr.tc,
                "del-filter",
                "bpf",
                index,
                m["handle"],
                parent=TC_H_CLSACT_INGRESS,
                info=m["info"],
            )
            self._call("detach", where, delete)
            removed += 1
        return removed


__all__ = ["TC_BPF_HANDLE", "TC_H_CLSACT_INGRESS", "TrafficControl"]
