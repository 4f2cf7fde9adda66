"""The embedded store's faults through the real service and the real forwarder: a full disk
(a small tmpfs in a mount namespace of the service's own, filled through /proc/PID/root)
fails an ADD with a clear error and writes nothing; freed, the same ADD succeeds. A state
file that is damaged or from a newer release is refused at start, naming the file, and left
exactly as it was."""

from __future__ import annotations

import errno
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from spidernet.cni.errors import Code
from spidernet.control.client import Client
from spidernet.control.store.schema import APPLICATION_ID
from spidernet.node.lab.runtime import Outcome, invoke
from spidernet.testbed.conflists import macvlan, plugin_conf, spidernet_ipam
from spidernet.testbed.pools import allocated
from spidernet.testbed.pools import ippool as pool

CHUNK = b"\0" * 65536


def add(exe: str, sock: Path, cid: str) -> Outcome:
    conf = plugin_conf(macvlan(spidernet_ipam(sock, default_ipv4_ippool=["disk"])))
    return invoke(
        exe, "ADD", conf, container_id=cid, netns_path="/run/netns/none", ifname="eth0", timeout=60
    )


def fill(path: Path) -> None:
    """Write zeros to `path` until its file system has no room left."""
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(CHUNK)
            except OSError as e:
                stopped = e.errno
                break
    assert stopped == errno.ENOSPC, errno.errorcode.get(stopped or 0)


def test_a_full_disk_fails_an_add_clearly_and_writes_nothing(
    cni_path: tuple[str, ...], record_testsuite_property: Callable[[str, object], None]
) -> None:
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    base = Path(tempfile.mkdtemp(prefix="snt-full-"))
    sock, state, log = base / "s.sock", base / "state", base / "log"
    state.mkdir(mode=0o700)
    # The service's state directory is a 4 MiB tmpfs that only its own mount namespace sees.
    script = (
        f"mount -t tmpfs -o size=4m,mode=0700 spidernet-test {state} && exec {sys.executable} "
        f"-m spidernet serve --socket {sock} --state-dir {state} --metrics-address off"
    )
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    try:
        client = Client(sock)
        deadline = time.monotonic() + 20
        while not client.healthy():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        client.request(
            "POST", "/v1/resources", pool("disk", "10.33.0.0/24", ["10.33.0.10-10.33.0.250"])
        )
        assert add(exe, sock, "before").ok
        fill(Path(f"/proc/{proc.pid}/root{state}/filler"))
        # ADDs until one needs room the disk no longer has (the WAL may still hold a few).
        answered = 1
        failed: Outcome | None = None
        for i in range(200):
            out = add(exe, sock, f"full-{i}")
            if not out.ok:
                failed = out
                break
            answered += 1
        assert failed is not None, "every ADD succeeded on a full disk"
        record_testsuite_property("disk_adds_answered_when_full", answered - 1)
        assert failed.error is not None, failed.stdout
        assert failed.error.code == Code.TRY_AGAIN_LATER
        assert "database or disk is full" in failed.error.msg
        assert "has no room; the write was rolled back" in failed.error.msg
        assert "Traceback" not in failed.stdout + failed.stderr
        assert proc.poll() is None  # the service lives on, and still reads
        Path(f"/proc/{proc.pid}/root{state}/filler").unlink()
        # Nothing of the failed ADD was kept: the count is the answered ones'.
        assert allocated(client, "disk") == answered
        retry = add(exe, sock, f"full-{i}")
        assert retry.ok, retry.stdout
        assert allocated(client, "disk") == answered + 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def sqlite_file(path: Path, app_id: int, version: int) -> None:
    """A SQLite file with one table: a later release's store (our id, a newer version) or
    another program's database (no id)."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id={app_id}")
    conn.execute(f"PRAGMA user_version={version}")
    conn.execute("CREATE TABLE objects (kind TEXT, namespace TEXT, name TEXT, body TEXT)")
    conn.commit()
    conn.close()


def test_a_damaged_foreign_or_newer_state_file_is_refused_by_name_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = state / "spidernet.db"
    for make, why in (
        (lambda: db.write_bytes(bytes(range(256)) * 32), "file is not a database"),
        (
            lambda: sqlite_file(db, APPLICATION_ID, 9),
            "has schema version 9, newer than the 1 this spidernet knows",
        ),
        (lambda: sqlite_file(db, 0, 0), "is a database of another program, not a store"),
    ):
        db.unlink(missing_ok=True)
        make()
        before = db.read_bytes()
        argv = [sys.executable, "-m", "spidernet", "serve", "--socket", str(tmp_path / "s.sock")]
        argv += ["--state-dir", str(state), "--metrics-address", "off"]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert f"spidernet: failed to open store '{db}': {why}" in done.stderr or (
            f"store '{db}' {why}" in done.stderr or f"'{db}' {why}" in done.stderr
        ), done.stderr
        assert "Traceback" not in done.stderr
        assert db.read_bytes() == before
        assert not (tmp_path / "s.sock").exists()
