"""Build `kube-apiserver` and `etcd` with Go, and run a throw-away cluster of the two on loopback.

`ensure_binaries` builds each binary once into the cache (kubespec.Layout) and afterwards only
checks that the cached binary reports the expected `--version`. `running_cluster` starts etcd
and the API server on free loopback ports with a PKI made by the `openssl` CLI, waits for
/readyz, writes a kubeconfig for an admin identity (client certificate in `system:masters`)
and, on leaving, stops both processes by their pids and removes the directory, on failure too.

    python -m spidernet.testbed.kubecluster build   # build or find both; print their paths
"""

from __future__ import annotations

import fcntl
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.kubespec import (
    APISERVER_PACKAGE,
    ETCD_MODULE,
    OPENSSL_CNF,
    ClusterFiles,
    Layout,
    Ports,
    Versions,
    apiserver_argv,
    apiserver_gomod,
    cache_root,
    etcd_argv,
    etcd_gomod,
    go_build_argv,
    go_env,
    kubeconfig,
    openssl_commands,
    reported_version,
    staging_modules,
    version_ldflags,
)

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 30


class BuildFailed(Exception):
    """Go is missing, or `go` failed; the message holds the end of its output."""


class ClusterStartFailed(Exception):
    """etcd or kube-apiserver exited or was not ready in time; the message holds its log tail."""


@dataclass(frozen=True)
class Binaries:
    """Cached binaries that report the expected versions."""

    apiserver: Path
    etcd: Path
    versions: Versions


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _version_of(binary: Path) -> str | None:
    if not binary.is_file():
        return None
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return reported_version(binary.name, out.stdout + out.stderr)


def _go(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> str:
    """Run one `go` command, appending its output to `log`; its stdout is returned."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        done = subprocess.run(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True, check=False
        )
        out.write(done.stdout)
    if done.returncode != 0:
        raise BuildFailed(
            f"failed to run '{' '.join(argv[:4])} ...' (exit {done.returncode}):\n{_tail(log)}"
        )
    return done.stdout


def _prepare(layout: Layout, name: str, go: str, env: dict[str, str]) -> tuple[str, str, Path]:
    """Write `name`'s throw-away module; its package to build, -ldflags and binary path."""
    versions = layout.versions
    moddir = layout.module_dir(name)
    moddir.mkdir(parents=True, exist_ok=True)
    if name == "etcd":
        (moddir / "go.mod").write_text(etcd_gomod(versions))
        return ETCD_MODULE, "-s -w", layout.etcd
    # k8s.io/kubernetes's go.mod names the staging modules to replace, and its release time
    # (from the module proxy's .info) is stamped in as the build date.
    argv = [go, "mod", "download", "-json", f"k8s.io/kubernetes@{versions.kubernetes}"]
    got = json.loads(_go(argv, moddir, env, layout.build_log(name)))
    staging = staging_modules(Path(got["GoMod"]).read_text())
    build_date = json.loads(Path(got["Info"]).read_text())["Time"]
    (moddir / "go.mod").write_text(apiserver_gomod(versions, staging))
    return APISERVER_PACKAGE, version_ldflags(versions, build_date), layout.apiserver


def _build(layout: Layout, name: str, progress: Callable[[str], None]) -> None:
    """Build `name` (kube-apiserver or etcd) in its throw-away module and install it atomically."""
    go = shutil.which("go")
    if go is None:
        raise BuildFailed("failed to build the k8s lane's binaries: no `go` on PATH")
    env = go_env(layout, os.environ)
    log = layout.build_log(name)
    log.write_text("")
    started = time.monotonic()
    package, ldflags, output = _prepare(layout, name, go, env)
    moddir = layout.module_dir(name)
    progress(f"downloading the modules of {package} ...")
    _go([go, "list", "-deps", package], moddir, env, log)
    progress(f"compiling {package} (log: {log}) ...")
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    _go(go_build_argv(go, package, partial, ldflags), moddir, env, log)
    partial.replace(output)
    progress(f"built {output} in {time.monotonic() - started:.0f}s")


def ensure_binaries(
    layout: Layout | None = None, progress: Callable[[str], None] | None = None
) -> Binaries:
    """The cached kube-apiserver and etcd, built first if missing or of another version."""
    layout = layout or Layout(cache_root(os.environ))
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    layout.release_dir.mkdir(parents=True, exist_ok=True)
    wanted = {
        "kube-apiserver": (layout.apiserver, layout.versions.kubernetes),
        "etcd": (layout.etcd, layout.versions.etcd),
    }
    with layout.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building: wait for it
        for name, (binary, version) in wanted.items():
            if _version_of(binary) != version:
                say(f"building {name} {version} with {shutil.which('go')} ...")
                _build(layout, name, say)
                found = _version_of(binary)
                if found != version:
                    raise BuildFailed(f"built {binary}, but it reports version {found}")
    return Binaries(layout.apiserver, layout.etcd, layout.versions)


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
        if proc.poll() is None:
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
            raise ClusterStartFailed(f"{what} exited ({proc.returncode}):\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ClusterStartFailed(f"{what} not ready in {READY_TIMEOUT_S:.0f}s:\n{_tail(log)}")
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
        etcd_log = files.log("etcd")
        etcd = stack.enter_context(_process(etcd_argv(binaries.etcd, files, ports), etcd_log))

        def etcd_healthy() -> bool:
            status, body = _get(ports.etcd_client, "/health", None)
            return status == 200 and '"true"' in body

        _wait("etcd", etcd, etcd_log, etcd_healthy)
        api_log = files.log("kube-apiserver")
        argv = apiserver_argv(binaries.apiserver, files, ports)
        apiserver = stack.enter_context(_process(argv, api_log))
        context = ssl.create_default_context(cafile=str(files.ca_crt))
        context.load_cert_chain(str(files.crt("admin")), str(files.key("admin")))

        def apiserver_ready() -> bool:
            return _get(ports.apiserver, "/readyz", context) == (200, "ok")

        _wait("kube-apiserver", apiserver, api_log, apiserver_ready)
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
        )


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
