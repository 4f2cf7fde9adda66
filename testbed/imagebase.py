"""The effects the image builds share (running the tools with their logs, writing a build
context), and the base image: debootstrap, slimmed like Debian's own images, imported.

The debootstrap result is kept as a tarball under the cache root (imagespec.Layout): it is the
slow step and the one that needs Debian's archive, while importing it takes seconds. So the
store may be wiped at will; the base is imported again from the tarball, which is made again
only when missing or when its recipe (basespec.base_key) changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidernet.testbed.basespec import (
    BASE,
    BASE_FILES,
    BASE_REMOVE,
    SLIM_ROOTS,
    base_key,
    base_tar_argv,
    debootstrap_argv,
    import_argv,
    slimmed,
)
from spidernet.testbed.imagespec import (
    LOG_TAIL_LINES,
    Layout,
    containers_conf,
    storage_conf,
    tool_env,
)
from spidernet.testbed.kubecluster import BuildFailed


@dataclass(frozen=True)
class Image:
    """One image in the test bed's store."""

    name: str
    id: str
    built: bool  # made (or, for an ArchivedImage, its archive written) by this call


def read_state(path: Path) -> dict[str, Any]:
    """An image's state file (imagespec.Layout.state), or {} when missing or unreadable."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


@dataclass(frozen=True)
class Tools:
    """podman, buildah and the rest, run with the test bed's configuration and store."""

    layout: Layout
    env: Mapping[str, str]  # the caller's environment

    def configure(self) -> None:
        """Write the configuration files (when they differ) and the directories they name."""
        write_if_changed(self.layout.containers_conf, containers_conf(self.layout).encode())
        write_if_changed(self.layout.storage_conf, storage_conf(self.layout).encode())
        self.layout.network_dir.mkdir(parents=True, exist_ok=True)
        self.layout.run.mkdir(parents=True, exist_ok=True)

    def run(self, argv: list[str], log: Path, what: str) -> str:
        """Run one step with its output (stdout and stderr) in `log`, which it replaces; the
        output is returned. Raises BuildFailed("failed to <what>: ...") with the log's end."""
        log.parent.mkdir(parents=True, exist_ok=True)
        header = f"$ {' '.join(argv)}\n"
        with log.open("w") as out:
            out.write(header)
            out.flush()
            try:
                code = subprocess.run(
                    argv,
                    env=tool_env(self.layout, self.env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                ).returncode
            except OSError as e:
                raise BuildFailed(f"failed to {what}: {e}") from e
        output = log.read_text(errors="replace")[len(header) :]
        if code != 0:
            tail = "\n".join(output.splitlines()[-LOG_TAIL_LINES:])
            raise BuildFailed(f"failed to {what}: `{argv[0]}` exited {code}; {log} ends:\n{tail}")
        return output

    def query(self, argv: list[str]) -> str:
        """A short command's stdout; raises BuildFailed with its stderr."""
        done = subprocess.run(
            argv, env=tool_env(self.layout, self.env), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BuildFailed(f"failed to run '{' '.join(argv)}': {done.stderr.strip()}")
        return done.stdout

    def image_ids(self) -> dict[str, str]:
        """Every name in the store -> its image ID."""
        listed = json.loads(self.query(["podman", "images", "--format", "json"]) or "[]")
        return {name: image["Id"] for image in listed for name in image.get("Names") or []}


def write_if_changed(path: Path, content: bytes) -> None:
    """Write `path` unless it holds `content` already (its time then stays, for COPY caches)."""
    if path.is_symlink() or not path.is_file() or path.read_bytes() != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_bytes(content)


def sync_tree(dest: Path, files: Mapping[str, tuple[str, bytes]]) -> None:
    """Make `dest` hold exactly `files` (path -> (kind, content), kinds as in tree_key). Files
    already right are left alone, keeping their times, so buildah's COPY cache stays valid."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, (kind, content) in files.items():
        path = dest / name
        if kind == "l":
            if path.is_symlink() and os.readlink(path).encode() == content:
                continue
        elif (
            not path.is_symlink()
            and path.is_file()
            and path.read_bytes() == content
            and os.access(path, os.X_OK) == (kind == "x")
        ):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.is_file():
            path.unlink()
        if kind == "l":
            path.symlink_to(content.decode())
        else:
            path.write_bytes(content)
            path.chmod(0o755 if kind == "x" else 0o644)
    _remove_below(dest, lambda path: str(path.relative_to(dest)) not in files)


def _remove_below(top: Path, unwanted: Callable[[Path], bool]) -> None:
    """Remove the files and symlinks below `top` that are `unwanted`, then the directories
    left empty (not `top`)."""
    for root, dirs, names in os.walk(top, topdown=False):  # symlinks to directories in `dirs`
        for name in [*names, *dirs]:
            path = Path(root) / name
            if path.is_symlink() or not path.is_dir():
                if unwanted(path):
                    path.unlink()
            elif not any(path.iterdir()):
                path.rmdir()


def _mounts_below(path: Path) -> list[Path]:
    """Mount points at or below `path` (proc_pid_mountinfo(5): the fifth field, octal-escaped)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == path or path in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Remove a root file system being built. debootstrap mounts /proc and /sys in it (and, in
    a container, binds /dev's nodes) and a failed run may leave them: unmount those first, and
    never descend into another file system."""
    for point in _mounts_below(path):
        subprocess.run(["umount", str(point)], capture_output=True, check=False)
    left = _mounts_below(path)
    if left:
        raise BuildFailed(f"failed to remove '{path}': still mounted: {', '.join(map(str, left))}")
    done = subprocess.run(
        ["rm", "-rf", "--one-file-system", str(path)], check=False, capture_output=True
    )
    if done.returncode != 0:
        raise BuildFailed(f"failed to remove '{path}': {done.stderr.decode().strip()}")


def slim(rootfs: Path) -> None:
    """What debootstrap installed, trimmed as Debian's slim images are (basespec)."""
    for relative, text in BASE_FILES.items():
        (rootfs / relative).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / relative).write_text(text)
    for pattern in BASE_REMOVE:
        for path in rootfs.glob(pattern):
            if path.is_symlink() or path.is_file():
                path.unlink()
    for top in SLIM_ROOTS:
        _remove_below(rootfs / top, lambda path: slimmed(f"/{path.relative_to(rootfs)}"))


def _debootstrap(tools: Tools, say: Callable[[str], None]) -> None:
    tarball = tools.layout.base_tarball
    rootfs = tools.layout.base_dir / "rootfs"
    remove_tree(rootfs)
    log = tools.layout.log("debootstrap")
    say(f"debootstrapping Debian's minbase (log: {log}) ...")
    started = time.monotonic()
    try:
        tools.run(debootstrap_argv(rootfs), log, "debootstrap the base")
        slim(rootfs)
        partial = tarball.with_name(tarball.name + ".partial")
        tools.run(base_tar_argv(rootfs, partial), tools.layout.log("base-tar"), "pack the base")
        partial.replace(tarball)
    finally:
        remove_tree(rootfs)
    for other in tools.layout.base_dir.glob("debian-*.tar"):
        if other != tarball:
            other.unlink()
    size = tarball.stat().st_size / 2**20
    say(f"made {tarball} ({size:.0f} MiB) in {time.monotonic() - started:.0f}s")


def ensure_base(tools: Tools, say: Callable[[str], None]) -> Image:
    """The base image in the store, imported from the cached tarball (made first if missing)."""
    key = base_key()
    state_file = tools.layout.state(BASE)
    state = read_state(state_file)
    current = tools.image_ids().get(BASE)
    if current and state.get("key") == key and state.get("id") == current:
        return Image(BASE, current, built=False)
    tools.layout.base_dir.mkdir(parents=True, exist_ok=True)
    if not tools.layout.base_tarball.is_file():
        _debootstrap(tools, say)
    tools.run(
        import_argv(tools.layout.base_tarball),
        tools.layout.log("base-import"),
        f"import image '{BASE}'",
    )
    image_id = tools.image_ids().get(BASE)
    if image_id is None:
        raise BuildFailed(f"failed to import image '{BASE}': the store does not list it")
    write_state(state_file, {"key": key, "id": image_id})
    say(f"imported {BASE} ({image_id[:12]}) from {tools.layout.base_tarball}")
    return Image(BASE, image_id, built=True)
