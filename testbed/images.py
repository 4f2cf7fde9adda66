"""The test bed's images, made here with no registry (the recipe and layout: imagespec).

`ensure_images` makes what is missing or out of date and returns the names, IDs and archives:

- the base `localhost/spidernet/debian:trixie`: debootstrap once (the tarball is kept under
  the cache root), imported into the test bed's store whenever the store lacks it;
- `localhost/spidernet/spidernet:<version>`: `deploy/Dockerfile` built with `buildah bud
  --layers` on that base, from a context holding the checkout's files as git lists them
  (tracked and untracked, not ignored, as they are in the working tree) less what the
  Dockerfile's .dockerignore leaves out of a public build. Its key hashes those files, the
  Dockerfile, the base's ID and the command line; a second call with the same
  key builds nothing, and a changed source redoes only the layers after `COPY .`;
- `localhost/spidernet/pause:1` and `localhost/spidernet/busybox:1` from the host's static
  busybox (Debian's busybox-static);
- a docker-archive of each of the last three, rewritten only when its image changed.

Everything runs under one lock, so concurrent callers wait for one build. Stale layers of
earlier builds are removed afterwards; the layers the last build used stay (the apt cache).

    python -m spidernet.testbed.images   # make what is missing; print what there is
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed import imagebase
from spidernet.testbed.basespec import BASE
from spidernet.testbed.imagebase import (
    Image,
    Tools,
    read_state,
    sync_tree,
    write_if_changed,
    write_state,
)
from spidernet.testbed.imagespec import (
    BUSYBOX,
    CONTAINERFILES,
    DEBIAN_CA_BUNDLE,
    PIP_CA_SECRET,
    SPIDERNET_REPOSITORY,
    Layout,
    applet_links,
    bud_argv,
    built_ids,
    content_key,
    dockerignore_patterns,
    ignored,
    is_static_elf,
    layout,
    save_argv,
    short_name,
    spidernet_image,
    tool_env,
    tree_key,
)
from spidernet.testbed.kubecluster import BuildFailed

CHECKOUT = Path(__file__).resolve().parents[1]
DOCKERFILE = "deploy/Dockerfile"
# BuildKit reads the ignore file beside the Dockerfile; the staged context applies it too.
DOCKERIGNORE = "deploy/Dockerfile.dockerignore"
# The Debian packages that provide each tool (`make deps` installs them).
TOOLS = {
    "podman": "podman",
    "buildah": "buildah",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "git": "git",
    "busybox": "busybox-static",
}


@dataclass(frozen=True)
class ArchivedImage(Image):
    """An image with its docker-archive, for `ctr -n k8s.io images import` and `podman load`."""

    archive: Path


@dataclass(frozen=True)
class Images:
    """What `ensure_images` made or found."""

    base: Image
    spidernet: ArchivedImage
    pause: ArchivedImage
    busybox: ArchivedImage
    layout: Layout

    @property
    def archived(self) -> tuple[ArchivedImage, ArchivedImage, ArchivedImage]:
        """The images with archives: spidernet, pause, busybox."""
        return (self.spidernet, self.pause, self.busybox)

    def env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment in which podman and buildah see the test bed's store."""
        return tool_env(self.layout, os.environ if env is None else env)


def pip_ca(env: Mapping[str, str]) -> Path | None:
    """The CA bundle pip uses here ($PIP_CERT, else Debian's bundle), handed to the build as
    the `pip-ca` secret; None leaves pip in the build with its own bundle."""
    for candidate in (env.get("PIP_CERT"), str(DEBIAN_CA_BUNDLE)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def context_files(checkout: Path) -> dict[str, tuple[str, bytes]]:
    """The build context: the checkout's files as git lists them (tracked, and untracked but
    not ignored), as they are in the working tree, less what deploy/Dockerfile.dockerignore
    leaves out of a public build's context: path -> (kind, content), as tree_key takes them."""
    argv = ["git", "-C", str(checkout), "ls-files", "-z", "--cached", "--others"]
    argv.append("--exclude-standard")
    ignore = checkout / DOCKERIGNORE
    try:
        done = subprocess.run(argv, capture_output=True, check=True)
        patterns = dockerignore_patterns(ignore.read_text()) if ignore.is_file() else []
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        raise BuildFailed(f"failed to list the files of checkout '{checkout}': {e}") from e
    files: dict[str, tuple[str, bytes]] = {}
    for name in sorted(set(filter(None, done.stdout.decode().split("\0")))):
        if ignored(name, patterns):
            continue
        path = checkout / name
        if path.is_symlink():
            files[name] = ("l", os.readlink(path).encode())
        elif path.is_file():  # (a tracked file deleted from the working tree is left out)
            files[name] = ("x" if os.access(path, os.X_OK) else "f", path.read_bytes())
    return files


def _ensure_built(
    tools: Tools, name: str, key: str, argv: list[str], say: Callable[[str], None]
) -> Image:
    """The image `name` as made from `key`: found in the store, or built now with `argv` (a
    `buildah bud`); the state records the key, the ID and the layers the build used."""
    state = read_state(tools.layout.state(name))
    current = tools.image_ids().get(name)
    if current and state.get("key") == key and state.get("id") == current:
        return Image(name, current, built=False)
    log = tools.layout.log(short_name(name))
    say(f"building {name} (log: {log}) ...")
    started = time.monotonic()
    output = tools.run(argv, log, f"build image '{name}'")
    image_id = tools.image_ids().get(name)
    if image_id is None:
        raise BuildFailed(f"failed to build image '{name}': the store does not list it after")
    write_state(tools.layout.state(name), {"key": key, "id": image_id, "keep": built_ids(output)})
    say(f"built {name} ({image_id[:12]}) in {time.monotonic() - started:.0f}s")
    return Image(name, image_id, built=True)


def _ensure_spidernet(
    tools: Tools, base: Image, checkout: Path, say: Callable[[str], None]
) -> Image:
    pyproject = tomllib.loads((checkout / "pyproject.toml").read_text())
    name = spidernet_image(pyproject["project"]["version"])
    context = tools.layout.spidernet_context
    files = context_files(checkout)
    sync_tree(context, files)
    # The Dockerfile is not in the context (the dockerignore leaves deploy/ out): it is staged
    # beside it, as BuildKit too receives it apart from the context.
    dockerfile = context.with_name("spidernet.Dockerfile")
    write_if_changed(dockerfile, (checkout / DOCKERFILE).read_bytes())

    def argv(secrets: Mapping[str, Path] | None) -> list[str]:
        # RUN steps download with apt and pip: host networking, because buildah's default (a
        # private namespace on podman's CNI bridge) would add a bridge and iptables rules here.
        return bud_argv(
            name,
            dockerfile,
            context,
            network="host",
            build_args={"BASE_IMAGE": BASE},
            secrets=secrets,
            runtime_root=tools.layout.run / "runc",
        )

    # The CA bundle changes nothing in the image: it stays out of the key.
    tree = [(p, k, c) for p, (k, c) in files.items()]
    tree.append((DOCKERFILE, "f", dockerfile.read_bytes()))
    key = content_key(base.id, tree_key(tree), *argv(None))
    ca = pip_ca(tools.env)
    return _ensure_built(tools, name, key, argv({PIP_CA_SECRET: ca} if ca else None), say)


def _busybox_tree(tools: Tools) -> dict[str, tuple[str, bytes]]:
    """The busybox context: the host's static busybox, a link per applet, the Containerfiles."""
    found = shutil.which("busybox", path=tools.env.get("PATH"))
    binary = Path(found) if found else Path("/bin/busybox")
    data = binary.read_bytes()
    if not is_static_elf(data[:4096]):
        raise BuildFailed(
            f"failed to build image '{BUSYBOX}': {binary} is not statically linked (install "
            "Debian's busybox-static)"
        )
    listing = tools.run([str(binary), "--list"], tools.layout.log("busybox-list"), "list applets")
    tree = {"rootfs/bin/busybox": ("x", data)}
    tree.update({f"rootfs/bin/{a}": ("l", b"busybox") for a in applet_links(listing)})
    for name, text in CONTAINERFILES.items():
        tree[f"Containerfile.{short_name(name)}"] = ("f", text.encode())
    return tree


def _ensure_busybox_images(tools: Tools, say: Callable[[str], None]) -> list[Image]:
    """The pause and workload images, from one context."""
    tree = _busybox_tree(tools)
    context = tools.layout.busybox_context
    sync_tree(context, tree)
    made = []
    for name in CONTAINERFILES:
        containerfile = context / f"Containerfile.{short_name(name)}"
        argv = bud_argv(
            name, containerfile, context, network="none", runtime_root=tools.layout.run / "runc"
        )
        key = content_key(tree_key((p, k, c) for p, (k, c) in tree.items()), *argv)
        made.append(_ensure_built(tools, name, key, argv, say))
    return made


def _ensure_archive(tools: Tools, image: Image, say: Callable[[str], None]) -> ArchivedImage:
    """The image with its docker-archive, written when missing or of another image ID."""
    archive = tools.layout.archive(image.name)
    state_file = tools.layout.state(image.name)
    state = read_state(state_file)
    if archive.is_file() and state.get("archive") == image.id:
        return ArchivedImage(image.name, image.id, image.built, archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    log = tools.layout.log(f"archive-{short_name(image.name)}")
    started = time.monotonic()
    tools.run(save_argv(image.name, partial), log, f"export image '{image.name}'")
    partial.replace(archive)
    write_state(state_file, {**state, "archive": image.id})
    size = archive.stat().st_size / 2**20
    say(f"wrote {archive} ({size:.0f} MiB) in {time.monotonic() - started:.0f}s")
    return ArchivedImage(image.name, image.id, True, archive)


def _prune(tools: Tools, current: list[Image], say: Callable[[str], None]) -> None:
    """Remove what earlier builds left: other versions' spidernet tags, archives and states,
    and untagged leaf images that no current image's build used. `podman rmi` also removes
    their untagged parents that nothing else uses; the cached layers the last builds used stay.
    A failure here is reported, never raised: the images are made."""
    names = {image.name for image in current}
    for stale in tools.layout.root.glob("archives/*.tar"):
        if stale not in {tools.layout.archive(n) for n in names}:
            stale.unlink()
    keep = [image.id for image in current]
    for image in current:
        keep += read_state(tools.layout.state(image.name)).get("keep", [])
    for stale in tools.layout.root.glob("state/*"):
        if stale not in {tools.layout.state(n) for n in names}:
            stale.unlink()
    ids = tools.image_ids()
    old_tags = [n for n in ids if n.startswith(f"{SPIDERNET_REPOSITORY}:") and n not in names]
    dangling = tools.query(
        ["podman", "images", "--all", "--no-trunc", "--quiet", "--filter", "dangling=true"]
    )
    stale_ids = [i.removeprefix("sha256:") for i in dangling.split()]
    # `keep` holds full and short IDs (buildah prints both).
    stale_ids = [i for i in stale_ids if not any(i.startswith(k) for k in keep)]
    if old_tags or stale_ids:
        try:
            tools.run(["podman", "rmi", *old_tags, *stale_ids], tools.layout.log("prune"), "prune")
        except BuildFailed as e:
            say(f"(left stale images in the store: {e})")


def ensure_images(
    progress: Callable[[str], None] | None = None,
    *,
    checkout: Path = CHECKOUT,
    env: Mapping[str, str] | None = None,
) -> Images:
    """The test bed's images and archives, made first where missing or out of date; raises
    BuildFailed (with the end of the failing tool's log)."""
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    env = dict(os.environ if env is None else env)
    missing = [
        f"{t} ({pkg})" for t, pkg in TOOLS.items() if not shutil.which(t, path=env.get("PATH"))
    ]
    if missing:
        raise BuildFailed(f"failed to make images: missing {', '.join(missing)}; `make deps`")
    tools = Tools(layout(env), env)
    tools.layout.root.mkdir(parents=True, exist_ok=True)
    with tools.layout.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building: wait for it
        tools.configure()
        base = imagebase.ensure_base(tools, say)
        spidernet = _ensure_spidernet(tools, base, checkout, say)
        pause, busybox = _ensure_busybox_images(tools, say)
        spidernet, pause, busybox = (
            _ensure_archive(tools, i, say) for i in (spidernet, pause, busybox)
        )
        _prune(tools, [base, spidernet, pause, busybox], say)
    return Images(base, spidernet, pause, busybox, tools.layout)


def _made(image: Image) -> str:
    return "made now" if image.built else "cached"


def main(argv: list[str]) -> int:
    """Make what is missing; print each image, its ID, archive and whether it was made now."""
    if argv:
        print("usage: python -m spidernet.testbed.images", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        images = ensure_images()
    except BuildFailed as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{images.base.name:<40} {images.base.id[:12]}  {_made(images.base)}")
    for image in images.archived:
        size = image.archive.stat().st_size / 2**20
        print(
            f"{image.name:<40} {image.id[:12]}  {_made(image):<8}  {image.archive} ({size:.0f} MiB)"
        )
    env = images.env({})
    print(
        f"in {time.monotonic() - started:.0f}s; the store: "
        + " ".join(f"{k}={v}" for k, v in env.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
