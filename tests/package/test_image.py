"""The images built here with no registry (spidernet.testbed.images), run for real: the
spidernet image runs its CLI, imports bcc and answers CNI VERSION from its compiled
executables; the pause image stays up as PID 1 and stops on SIGTERM and SIGINT; the workload
image has busybox's applets; every archive is imported with its name by containerd's `ctr`
(a throw-away containerd) and by `podman load` (a throw-away store).

The first run builds the images (about five minutes); later runs find them in the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spidernet.testbed.imagebase import remove_tree
from spidernet.testbed.images import Images, ensure_images
from spidernet.testbed.imagespec import Layout, containers_conf, storage_conf, tool_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="podman and containerd need root")


@pytest.fixture(scope="module")
def images() -> Images:
    return ensure_images()


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_spidernet_image_runs_its_cli_bcc_and_cni_executables(images: Images) -> None:
    env, image = images.env(), images.spidernet.name
    podman = ["podman", "run", "--rm", "--network", "none"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image.endswith(f":{version}")
    assert "usage: spidernet" in run([*podman, image, "spidernet", "--help"], env)
    assert version in run([*podman, image, "spidernet", "--version"], env)
    where = run([*podman, image, "python3", "-c", "import bcc; print(bcc.__file__)"], env)
    assert where.startswith("/usr/lib/python3/dist-packages/bcc/")  # Debian's python3-bpfcc
    for plugin in ("spidernet-ipam", "spidernet-coordinator", "spidernet-ifacer"):
        argv = [*podman, "-e", "CNI_COMMAND=VERSION", image, f"/opt/spidernet/cni-bin/{plugin}"]
        answer = json.loads(run(argv, env))
        assert "1.1.0" in answer["supportedVersions"], plugin


def _wait_exit(env: dict[str, str], name: str, timeout: float) -> str:
    return run(["podman", "wait", name], env, timeout=timeout).strip()


@pytest.mark.parametrize("signal", ["TERM", "INT"])
def test_pause_stays_up_and_stops_on_a_signal(images: Images, signal: str) -> None:
    env = images.env()
    name = f"spidernet-test-pause-{signal.lower()}-{os.getpid()}"
    run(["podman", "run", "-d", "--name", name, "--network", "none", images.pause.name], env)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            _wait_exit(env, name, timeout=3)  # still running after 3 s
        top = run(["podman", "top", name, "pid", "args"], env)
        assert any(line.split()[0] == "1" and "trap" in line for line in top.splitlines()[1:])
        started = time.monotonic()
        run(["podman", "kill", "--signal", signal, name], env)
        assert _wait_exit(env, name, timeout=10) == "0"
        assert time.monotonic() - started < 5
    finally:
        subprocess.run(["podman", "rm", "-f", name], env=env, capture_output=True, check=False)


def test_workload_image_has_busybox_applets_on_path(images: Images) -> None:
    applets = ("sh", "sleep", "ping", "ip", "nc", "wget")
    # (`command -v` names busybox's built-in applets without a path: `which` reads PATH.)
    script = f"which {' '.join(applets)} && sleep 0 && ip -o link show lo"
    argv = ["podman", "run", "--rm", "--network", "none", images.busybox.name, "sh", "-c", script]
    lines = run(argv, images.env()).splitlines()
    assert lines[: len(applets)] == [f"/bin/{a}" for a in applets]
    assert ": lo: <LOOPBACK" in lines[-1]


@contextmanager
def containerd(workdir: Path) -> Iterator[Path]:
    """A throw-away containerd (no CRI plugin) with its root, state and socket in `workdir`;
    stopped by its pid on leaving."""
    socket = workdir / "containerd.sock"
    config = workdir / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{workdir / "root"}"\nstate = "{workdir / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
    )
    with (workdir / "containerd.log").open("wb") as log:
        proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert proc.poll() is None, (workdir / "containerd.log").read_text()
            assert time.monotonic() < deadline, "containerd did not listen in 30 s"
            time.sleep(0.05)
        yield socket
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_archives_are_imported_with_their_names(images: Images) -> None:
    names = [image.name for image in images.archived]
    workdir = Path(tempfile.mkdtemp(prefix="spidernet-ctr-"))
    try:
        with containerd(workdir) as socket:
            ctr = ["ctr", "--address", str(socket), "-n", "k8s.io", "images"]
            for image in images.archived:
                run([*ctr, "import", str(image.archive)], dict(os.environ))
            listed = run([*ctr, "ls", "-q"], dict(os.environ)).split()
            assert sorted(listed) == sorted(names)
            checked = run([*ctr, "check"], dict(os.environ)).splitlines()[1:]
            assert all("complete" in line for line in checked), checked
        # podman load, into a store of its own.
        store = Layout(workdir / "podman", run=workdir / "podman-run")
        store.root.mkdir()
        store.containers_conf.write_text(containers_conf(store))
        store.storage_conf.write_text(storage_conf(store))
        env = tool_env(store, os.environ)
        for image in images.archived:
            run(["podman", "load", "-i", str(image.archive)], env)
        loaded = json.loads(run(["podman", "images", "--format", "json"], env))
        by_name = {name: image["Id"] for image in loaded for name in image["Names"]}
        assert by_name == {image.name: image.id for image in images.archived}
        run(["podman", "rmi", "--all"], env)
    finally:
        remove_tree(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
