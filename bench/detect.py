"""What ARP/NDP detection costs: one probe per timing profile, and the ADD latency it adds.

    python -m bench.detect [--quick] [--out DIR]

In network namespaces: a segment with a gateway (192.0.2.1, 2001:db8:1::1), a "host" whose
eth0 is the macvlan master, and a pod.

- Probe cost: `node.detect.probe.resolve` through the namespace broker, per profile
  (fast, rfc), family, and case: "answered" (the gateway) and "silent" (a free address:
  the healthy answer to a conflict probe, which waits out every window).
- ADD latency: macvlan + spidernet-ipam through a running `spidernet serve`, ADD then DEL,
  with detection off, conflict detection on, and conflict + gateway detection on (fast
  profile), and the Go reference macvlan + host-local beside them, in rotating order.

Numbers only, never a pass or fail; written to DIR/detect.json (default bench/results/).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from spidernet.cni.config import parse_conflist
from spidernet.node import netns
from spidernet.node.access.broker import Broker
from spidernet.node.detect.probe import PROFILES, profile, resolve
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6, HOST4, HOST6
from spidernet.node.lab.runtime import Chain, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Segment, Topology, iface
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_ipam

from .ipam_calls import HOST_LOCAL, install_plugins
from .ipam_common import pool_doc
from .runs import OwnStack, machine_facts, machine_line, sigterm_as_exit

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
POD4, POD6 = "192.0.2.10", "2001:db8:1::10"
FREE4, FREE6 = "192.0.2.99", "2001:db8:1::99"
SIDES = ("reference", "off", "conflict", "conflict+gateway")


def _median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def probe_costs(
    topo: Topology, broker: Broker, segment: Segment, quick: bool
) -> list[dict[str, Any]]:
    """The time of one probe per profile, family and case."""
    pod = topo.namespace("probe")
    topo.attach(segment, pod, "eth0", (iface(f"{POD4}/24"), iface(f"{POD6}/64")))
    path = netns.path_of(pod)
    rows = []
    for name in PROFILES:
        reps = (3 if quick else 10) if name == "fast" else (1 if quick else 3)
        for version, gateway, free, src in (
            (4, GATEWAY4, FREE4, POD4),
            (6, GATEWAY6, FREE6, POD6),
        ):
            timing = profile(name, version)
            for case, target, source in (("answered", gateway, src), ("silent", free, None)):
                address = ipaddress.ip_address(target)
                origin = ipaddress.ip_address(source) if source else None
                samples, answers = [], 0
                for _ in range(reps):
                    start = time.perf_counter()
                    found = resolve(broker, path, "eth0", address, src=origin, timing=timing)
                    samples.append(time.perf_counter() - start)
                    answers += bool(found)
                rows.append(
                    {
                        "profile": name,
                        "family": f"IPv{version}",
                        "case": case,
                        "probes": reps,
                        "answered": answers,
                        "median_ms": _median_ms(samples),
                        "max_ms": max(samples) * 1000,
                    }
                )
    return rows


def _chain(conf: dict[str, Any], cni_path: tuple[str, ...], host: str) -> Chain:
    return Chain(parse_conflist(json.dumps(conf).encode()), cni_path, host_netns=host)


def add_latency(
    topo: Topology, svc: ServiceProcess, host: str, *, bin_dir: Path, base: Path, calls: int
) -> dict[str, dict[str, float]]:
    """Median ADD and DEL per side, in rotating order."""
    svc.client.request(
        "POST",
        "/v1/resources",
        pool_doc("det", "192.0.2.0/24", ["192.0.2.100-192.0.2.200"], gateway=GATEWAY4),
    )
    cni_path = (str(bin_dir), str(HOST_LOCAL.parent))

    def conflist(ipam: dict[str, Any]) -> dict[str, Any]:
        return chain_conf(macvlan(ipam), name="det")

    spider = spidernet_ipam(svc.socket, default_ipv4_ippool=["det"])
    reference = {
        "type": "host-local",
        "subnet": "192.0.2.0/24",
        "rangeStart": "192.0.2.201",
        "rangeEnd": "192.0.2.250",
        "gateway": GATEWAY4,
        "dataDir": str(base / "hl"),
    }
    chains = {
        "reference": _chain(conflist(reference), cni_path, host),
        "off": _chain(conflist(spider), cni_path, host),
        "conflict": _chain(conflist({**spider, "enableIPConflictDetection": True}), cni_path, host),
        "conflict+gateway": _chain(
            conflist({**spider, "enableIPConflictDetection": True, "enableGatewayDetection": True}),
            cni_path,
            host,
        ),
    }
    pod = topo.namespace("pod")
    times: dict[str, dict[str, list[float]]] = {s: {"ADD": [], "DEL": []} for s in SIDES}
    for i in range(calls + 2):  # the first two rounds warm up
        for side in SIDES[i % len(SIDES) :] + SIDES[: i % len(SIDES)]:
            target = Target(
                f"det-{SIDES.index(side)}-{i}",
                netns.path_of(pod),
                "eth0",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=b;K8S_POD_NAME=p",
            )
            start = time.perf_counter()
            chains[side].add(target)
            mid = time.perf_counter()
            chains[side].delete(target)
            end = time.perf_counter()
            if i >= 2:
                times[side]["ADD"].append(mid - start)
                times[side]["DEL"].append(end - mid)
    return {s: {v: _median_ms(t) for v, t in by.items()} for s, by in times.items()}


def run(quick: bool, out: Path, console: Console, calls: int | None = None) -> None:
    began = time.monotonic()
    machine = machine_facts()
    console.rule("spidernet detection benchmark" + (" (--quick)" if quick else ""))
    console.print(machine_line(machine))
    base = Path(tempfile.mkdtemp(prefix="snt-bdet-"))
    with OwnStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        topo = Topology()
        stack.callback(topo.teardown)
        segment = topo.segment()
        topo.gateway(segment, (iface(f"{GATEWAY4}/24"), iface(f"{GATEWAY6}/64")))
        host = topo.namespace("host")
        topo.attach(segment, host, "eth0", (iface(f"{HOST4}/24"), iface(f"{HOST6}/64")))
        broker = Broker()
        stack.callback(broker.close)
        with console.status("probing"):
            probes = probe_costs(topo, broker, segment, quick)
        bin_dir = base / "bin"
        bin_dir.mkdir()
        install_plugins(bin_dir, "auto")
        svc = ServiceProcess(socket=base / "s.sock", state_dir=base / "state", log=base / "log")
        stack.callback(svc.stop)
        svc.start()
        with console.status("chain ADD/DEL with detection off and on"):
            adds = add_latency(
                topo, svc, host, bin_dir=bin_dir, base=base, calls=calls or (4 if quick else 20)
            )
    table = Table(title="One probe (through the namespace broker)")
    for column in ("profile", "family", "case", "probes", "answered", "median ms", "max ms"):
        table.add_column(column)
    for r in probes:
        table.add_row(
            r["profile"],
            r["family"],
            r["case"],
            str(r["probes"]),
            str(r["answered"]),
            f"{r['median_ms']:.1f}",
            f"{r['max_ms']:.1f}",
        )
    console.print(table)
    chain = Table(title="macvlan + IPAM, ADD and DEL (medians, ms)")
    for column in ("side", "ADD", "DEL", "ADD over detection off", "ADD over reference"):
        chain.add_column(column)
    for side in SIDES:
        add, delete = adds[side]["ADD"], adds[side]["DEL"]
        chain.add_row(
            side,
            f"{add:.1f}",
            f"{delete:.1f}",
            f"+{add - adds['off']['ADD']:.1f} ms",
            f"{add / adds['reference']['ADD']:.2f}x",
        )
    console.print(chain)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": machine,
        "quick": quick,
        "probes": probes,
        "chain_ms": adds,
        "runtime_s": time.monotonic() - began,
    }
    (out / "detect.json").write_text(json.dumps(doc, indent=1) + "\n")
    console.print(f"wrote {out / 'detect.json'}; total runtime {doc['runtime_s']:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detect", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer probes and calls")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write results")
    parser.add_argument("--calls", type=int, help="ADD/DEL rounds per side (default 20, 4 quick)")
    args = parser.parse_args(argv)
    if args.calls is not None and args.calls < 1:
        parser.error("--calls must be at least 1")
    console = Console(highlight=False)
    with sigterm_as_exit():
        run(args.quick, args.out, console, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
