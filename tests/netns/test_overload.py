"""`spidernet serve` under overload, as a real process called by the real forwarders: a
connection flood past its open-file limit, 500 ADDs at once, a full queue, and a liveness
probe that asks the CNI socket itself. The service keeps answering, hands out no address
twice and recovers without a restart (issue: an accept loop that returned on EMFILE left a
live process that answered nothing)."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from spidernet.cni.errors import Code
from spidernet.node.lab.runtime import Outcome, invoke
from spidernet.node.lab.service import ServiceProcess
from spidernet.testbed.conflists import macvlan, plugin_conf, spidernet_ipam
from spidernet.testbed.flood import flood as open_flood
from spidernet.testbed.pools import allocated
from spidernet.testbed.pools import ippool as pool
from spidernet.testbed.waiting import wait_for

FD_LIMIT = 256


def conf(svc: ServiceProcess, pool_name: str) -> dict[str, object]:
    return plugin_conf(macvlan(spidernet_ipam(svc.socket, default_ipv4_ippool=[pool_name])))


def call(exe: str, command: str, config: dict[str, object], cid: str) -> Outcome:
    return invoke(
        exe,
        command,
        config,
        container_id=cid,
        netns_path="/run/netns/none",
        ifname="eth0",
        timeout=60,
    )


def healthz(svc: ServiceProcess) -> tuple[int, str]:
    url = f"http://127.0.0.1:{svc.metrics_port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextmanager
def open_files(limit: int) -> Iterator[None]:
    """This test process's own soft fd limit raised for a while (500 plugin processes'
    pipes), then put back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(limit, hard)), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_connection_flood_past_the_fd_limit_leaves_the_socket_serving(
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    client = service.client
    client.request(
        "POST", "/v1/resources", pool("flood", "10.30.0.0/24", ["10.30.0.10-10.30.0.99"])
    )
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    config = conf(service, "flood")
    pid = service.pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    assert healthz(service)[0] == 200
    flood: list[socket.socket] = []
    try:
        # Twice the service's limit: half send nothing, half half a request; those beyond
        # what it holds wait in its listen queue (or, while that is full, are retried).
        flood.extend(open_flood(service.socket, 2 * FD_LIMIT))
        assert len(flood) == 2 * FD_LIMIT
        # It holds connections up to its limit (the fd limit less 128 kept for other work),
        # then sheds the longest-waiting ones for the callers queued behind them.
        wait_for(
            "the service to reach its limit",
            lambda: "connections open, the limit" in service.log.read_text(),
        )
        # A CNI ADD behind the flood is answered, by the same process.
        start = time.monotonic()
        out = call(exe, "ADD", config, "after-flood")
        record_testsuite_property("flood_connections_opened", len(flood))
        record_testsuite_property("flood_add_behind_it_s", round(time.monotonic() - start, 3))
        assert out.ok, out.stdout + out.stderr
        assert out.result is not None
        assert service.alive()
        assert service.pid == pid
    finally:
        for s in flood:
            s.close()
    # The flood over, the service serves as before: probes, ADD, DEL.
    assert healthz(service) == (200, "ok\n")
    again = call(exe, "ADD", config, "after-flood-2")
    assert again.ok, again.stdout
    assert allocated(client, "flood") == 2
    for cid in ("after-flood", "after-flood-2"):
        assert call(exe, "DEL", config, cid).ok
    assert allocated(client, "flood") == 0
    log = service.log.read_text()
    assert "connections open, the limit" in log
    assert "Traceback" not in log


def test_500_adds_at_once_get_500_distinct_addresses(
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    client = service.client
    client.request(
        "POST", "/v1/resources", pool("burst", "10.31.0.0/22", ["10.31.0.1-10.31.3.254"])
    )
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    config = conf(service, "burst")
    start = time.monotonic()
    with open_files(8192), ThreadPoolExecutor(500) as ex:
        outcomes = list(ex.map(lambda i: call(exe, "ADD", config, f"b{i}"), range(500)))
    record_testsuite_property("burst_500_adds_s", round(time.monotonic() - start, 2))
    assert [o.stdout for o in outcomes if not o.ok] == []
    ips = {str(o.result.ips[0].address.ip) for o in outcomes if o.result}
    assert len(ips) == 500
    assert allocated(client, "burst") == 500
    with open_files(8192), ThreadPoolExecutor(500) as ex:
        dels = list(ex.map(lambda i: call(exe, "DEL", config, f"b{i}"), range(500)))
    assert [o.stdout for o in dels if not o.ok] == []
    assert allocated(client, "burst") == 0


def listen_queue(path: Path) -> int:
    """How many connections wait in the listen queue of the unix socket at `path`."""
    out = subprocess.run(
        ["ss", "-xlnH", "src", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()  # u_str LISTEN Recv-Q Send-Q path ...; Recv-Q is the queue
    return int(out[2]) if len(out) > 2 else 0


def test_a_full_queue_answers_try_again_later_and_hands_out_nothing(
    cni_path: tuple[str, ...],
    start_service: Callable[..., ServiceProcess],
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    svc = start_service("--max-pending", "4")
    client = svc.client
    client.request(
        "POST", "/v1/resources", pool("queue", "10.32.0.0/24", ["10.32.0.10-10.32.0.99"])
    )
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    config = conf(svc, "queue")
    # Sixty ADDs arrive while the service is stopped, and reach it all at once.
    os.kill(svc.pid, signal.SIGSTOP)
    with ThreadPoolExecutor(60) as ex:
        try:
            futures = [ex.submit(call, exe, "ADD", config, f"q{i}") for i in range(60)]
            wait_for("60 callers in the listen queue", lambda: listen_queue(svc.socket) == 60)
        finally:
            os.kill(svc.pid, signal.SIGCONT)
        outcomes = [f.result() for f in futures]
    ok = [o for o in outcomes if o.ok]
    busy = [o for o in outcomes if not o.ok]
    assert busy, "no call found the queue full"
    record_testsuite_property("queue_refused_busy", len(busy))
    record_testsuite_property("queue_answered", len(ok))
    for o in busy:
        assert o.error is not None, o.stdout
        assert o.error.code == Code.TRY_AGAIN_LATER
        assert o.error.msg == "try again later: the spidernet service is busy"
    # Refused calls took nothing; answered ones hold distinct addresses.
    assert allocated(client, "queue") == len(ok)
    assert len({str(o.result.ips[0].address.ip) for o in ok if o.result}) == len(ok)
    # A runtime retries: every refused ADD then succeeds.
    cids = [f"q{i}" for i, o in enumerate(outcomes) if not o.ok]
    retried = [call(exe, "ADD", config, cid) for cid in cids]
    assert all(o.ok for o in retried), [o.stdout for o in retried if not o.ok]
    assert allocated(client, "queue") == 60
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port()}/metrics") as r:
        metrics = r.read().decode()
    assert f"spidernet_service_busy_counts_total {len(busy)}.0" in metrics


def test_liveness_fails_when_the_cni_socket_stops_answering(service: ServiceProcess) -> None:
    assert healthz(service) == (200, "ok\n")
    # The socket file is gone (a host clean-up removed /run/spidernet): the process and
    # its metrics port live on, but no plugin can reach it, so liveness must fail.
    service.socket.unlink()
    status, text = healthz(service)
    assert status == 503
    assert f"the CNI socket {service.socket} cannot be reached" in text
