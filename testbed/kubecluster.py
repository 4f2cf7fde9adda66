"""Run a throw-away cluster of etcd and kube-apiserver on loopback, and kubectl against it.

The binaries come from `kubebuild` (`ensure_binaries`, re-exported here with `Binaries` and
`BuildFailed` for the lanes and benchmarks). `running_cluster` starts etcd and the API server on
free loopback ports with a PKI made by the `openssl` CLI, waits for /readyz, writes a
kubeconfig for an admin identity (client certificate in `system:masters`) and, on leaving,
stops both processes by their pids and removes the directory, on failure too. `kubectl` runs
the release's own kubectl (`kubebuild.ensure_node_binaries`) against such a cluster.

    python -m spidernet.testbed.kubecluster build   # build or find both; print their paths
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.kubebuild import Binaries, BuildFailed, ensure_binaries, log_tail
from spidernet.testbed.kubespec import (
    OPENSSL_CNF,
    ClusterFiles,
    Ports,
    Versions,
    apiserver_argv,
    etcd_argv,
    kubeconfig,
    kubectl_argv,
    kubectl_env,
    openssl_commands,
)

# Binaries, BuildFailed and ensure_binaries lived here before kubebuild; the lanes and benchmarks
# still import them from here.
__all__ = [
    "Binaries",
    "BuildFailed",
    "Cluster",
    "ClusterStartFailed",
    "KubectlFailed",
    "ensure_binaries",
    "free_port",
    "kubectl",
    "main",
    "make_pki",
    "running_cluster",
]

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
KUBECTL_TIMEOUT_S = 300.0


class ClusterStartFailed(Exception):
    """etcd or kube-apiserver exited or was not ready in time; the message holds its log tail."""


class KubectlFailed(Exception):
    """kubectl exited non-zero or did not finish in time; the message holds what it printed."""


class Member:
    """One process of the cluster, etcd or kube-apiserver, which a fault test may stop and
    start again: the same argv, data directory, ports and certificates, its output appended
    to the same log. Stopped by its pid: SIGTERM, then SIGKILL."""

    def __init__(self, what: str, argv: list[str], log: Path, ready: Callable[[], bool]) -> None:
        self.what = what
        self.argv = argv
        self.log = log
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self) -> None:
        """Start it and wait until it answers (ClusterStartFailed otherwise)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        _wait(self.what, self.proc, self.log, self.ready)

    def stop(self) -> None:
        """Stop it (and wait for its exit); nothing when it does not run."""
        proc, self.proc = self.proc, None
        _stop(proc)


@dataclass(frozen=True)
class Cluster:
    """A running throw-away cluster: where to reach it and what it wrote."""

    server: str
    kubeconfig: Path
    files: ClusterFiles
    versions: Versions
    etcd_pid: int
    apiserver_pid: int
    ready_seconds: float  # from starting etcd to /readyz answering ok
    # Its two processes, to stop and start again (fault tests); None where none runs.
    etcd: Member | None = None
    apiserver: Member | None = None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_pki(files: ClusterFiles) -> None:
    """The CA, the serving and admin certificates and the service-account key, with openssl."""
    if shutil.which("openssl") is None:
        raise ClusterStartFailed("failed to make the cluster's certificates: no `openssl` on PATH")
    files.openssl_cnf.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.openssl_cnf.write_text(OPENSSL_CNF)
    serials = [secrets.randbits(63) for _ in range(2)]
    for argv in openssl_commands(files, serials):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ClusterStartFailed(f"failed to run '{' '.join(argv[:2])}': {done.stderr.strip()}")


@contextmanager
def _process(
    argv: list[str], log: Path, preexec: Callable[[], None] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` with its output in `log` (`preexec` runs in the child before the exec); on
    leaving, SIGTERM its pid, then SIGKILL."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            # The node lane's preexec only writes files and calls prctl, from its main
            # thread, before any other thread of the lane starts a process.
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=preexec,  # noqa: PLW1509
        )
    try:
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM `proc` and wait for it; SIGKILL after STOP_TIMEOUT_S. Nothing if it ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _get(port: int, path: str, context: ssl.SSLContext | None) -> tuple[int, str]:
    """One GET on loopback; (0, error) when nothing answers. No proxy, whatever the env says."""
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e)
    finally:
        conn.close()


def _wait(what: str, proc: subprocess.Popen[bytes], log: Path, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not probe():
        if proc.poll() is not None:
            raise ClusterStartFailed(f"{what} exited ({proc.returncode}):\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise ClusterStartFailed(
                f"{what} not ready in {READY_TIMEOUT_S:.0f}s:\n{log_tail(log)}"
            )
        time.sleep(0.1)


@contextmanager
def running_cluster(binaries: Binaries, parent: Path | None = None) -> Iterator[Cluster]:
    """etcd + kube-apiserver on loopback in a throw-away directory, ready on entry."""
    with ExitStack() as stack:
        files = ClusterFiles(Path(tempfile.mkdtemp(prefix="spidernet-k8s-", dir=parent)))
        stack.callback(shutil.rmtree, files.dir, ignore_errors=True)  # runs after the stops
        make_pki(files)
        ports = Ports(free_port(), free_port(), free_port())
        started = time.monotonic()

        def etcd_healthy() -> bool:
            status, body = _get(ports.etcd_client, "/health", None)
            return status == 200 and '"true"' in body

        etcd = Member(
            "etcd", etcd_argv(binaries.etcd, files, ports), files.log("etcd"), etcd_healthy
        )
        stack.callback(etcd.stop)
        etcd.start()
        context = ssl.create_default_context(cafile=str(files.ca_crt))
        context.load_cert_chain(str(files.crt("admin")), str(files.key("admin")))

        def apiserver_ready() -> bool:
            return _get(ports.apiserver, "/readyz", context) == (200, "ok")

        argv = apiserver_argv(binaries.apiserver, files, ports)
        apiserver = Member("kube-apiserver", argv, files.log("kube-apiserver"), apiserver_ready)
        stack.callback(apiserver.stop)  # before etcd's
        apiserver.start()
        server = f"https://127.0.0.1:{ports.apiserver}"
        files.kubeconfig.write_text(json.dumps(kubeconfig(server, files), indent=2) + "\n")
        yield Cluster(
            server=server,
            kubeconfig=files.kubeconfig,
            files=files,
            versions=binaries.versions,
            etcd_pid=etcd.pid,
            apiserver_pid=apiserver.pid,
            ready_seconds=time.monotonic() - started,
            etcd=etcd,
            apiserver=apiserver,
        )


def kubectl(
    binary: Path,
    cluster: Cluster,
    args: Sequence[str],
    *,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = KUBECTL_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run `binary` (the release's kubectl: `ensure_node_binaries().kubectl`, never one found on
    PATH) with `args` against `cluster`, e.g. `kubectl(k, cluster, ["apply", "-k", "deploy/"])`;
    raises KubectlFailed when it fails and `check` is set."""
    argv = kubectl_argv(binary, cluster.kubeconfig, args)
    shown = " ".join(["kubectl", *args])
    try:
        done = subprocess.run(
            argv,
            env=kubectl_env(os.environ),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise KubectlFailed(f"failed to run '{shown}': no answer in {timeout:.0f}s") from e
    if check and done.returncode != 0:
        cause = (done.stderr or done.stdout).strip()
        raise KubectlFailed(f"failed to run '{shown}' (exit {done.returncode}): {cause}")
    return done


def main(argv: list[str]) -> int:
    """`build`: build or find the binaries and print their paths."""
    if argv != ["build"]:
        print("usage: python -m spidernet.testbed.kubecluster build", file=sys.stderr)
        return 2
    try:
        binaries = ensure_binaries()
    except BuildFailed as e:
        print(e, file=sys.stderr)
        return 1
    print(binaries.apiserver)
    print(binaries.etcd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
