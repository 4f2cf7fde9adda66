"""The test bed's container images, as data: names, cache layout, tool configuration, build
command lines and content keys (the base image's recipe is basespec).

No registry is reachable here, so every image starts from something made on this machine: a
Debian trixie `minbase` made with `debootstrap` from Debian's archive and imported as
`localhost/spidernet/debian:trixie`; `deploy/Dockerfile` built on it with buildah; a pause and a
workload image holding Debian's static busybox. Each is exported as a docker-archive, which
both `ctr -n k8s.io images import` (containerd 1.6) and `podman load` accept with the image's
name. Nothing here runs a process: `images` does.

Cache layout, under `<cache root>/images` (the cache root is $SPIDERNET_CACHE, else
/var/cache/spidernet):

    containers.conf, storage.conf   the configuration podman and buildah run with
    storage/                        their image store (graph root), the layer cache included
    cni/                            their CNI network directory: empty, nothing is ever set up
    base/debian-trixie-minbase-<key>.tar   the slimmed debootstrap result (kept: the slow step)
    context/spidernet/              the build context: the checkout's files as git lists them,
                                    less what deploy/Dockerfile.dockerignore leaves out
    context/spidernet.Dockerfile    deploy/Dockerfile, passed with -f (not in the context)
    context/busybox/                busybox, its applet links and the two Containerfiles
    archives/<image>.tar            one docker-archive per image
    state/<image>.json              the content key and image ID each image was made from
    logs/<step>.log                 what each tool printed

Run-time state (containers/storage's run root, podman's tmp dir and event log) lives in
`RUN_ROOT/images-<hash of the cache directory>`: /run is where these tools expect state that
a reboot clears, and one directory per cache root keeps two stores from sharing it.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.basespec import SUITE, base_key
from spidernet.testbed.kubespec import cache_root

# Bump when the code that makes an image changes in a way its content key cannot see.
RECIPE = "1"
PAUSE = "localhost/spidernet/pause:1"
BUSYBOX = "localhost/spidernet/busybox:1"
SPIDERNET_REPOSITORY = "localhost/spidernet/spidernet"
# The secret deploy/Dockerfile mounts (at /run/secrets/pip-ca) in its pip steps.
PIP_CA_SECRET = "pip-ca"
RUN_ROOT = Path("/run/spidernet-testbed")
# The path Debian's ca-certificates keeps the bundle at (what pip is configured with here).
DEBIAN_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOG_TAIL_LINES = 30


def spidernet_image(version: str) -> str:
    """The spidernet image's name for a package version: the kustomization's tag."""
    return f"{SPIDERNET_REPOSITORY}:{version}"


def short_name(image: str) -> str:
    """`localhost/spidernet/pause:1` -> `pause-1`: the file name of its archive and state."""
    repository, _, tag = image.rpartition(":")
    return f"{repository.rsplit('/', 1)[-1]}-{tag}"


@dataclass(frozen=True)
class Layout:
    """Where the images' inputs, store, archives and logs live; all outside the repository."""

    root: Path
    run: Path  # the run-time state of the store in `root`: its own, never shared

    @property
    def containers_conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def storage_conf(self) -> Path:
        return self.root / "storage.conf"

    @property
    def storage(self) -> Path:
        """containers/storage's graph root: images and buildah's layer cache."""
        return self.root / "storage"

    @property
    def network_dir(self) -> Path:
        """The CNI configuration directory podman and buildah are pointed at (kept empty)."""
        return self.root / "cni"

    @property
    def lock(self) -> Path:
        """Held while making images, so two runs never build at once."""
        return self.root / ".build.lock"

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    @property
    def base_tarball(self) -> Path:
        """The slimmed debootstrap result for the current base recipe."""
        return self.base_dir / f"debian-{SUITE}-minbase-{base_key()[:12]}.tar"

    @property
    def spidernet_context(self) -> Path:
        return self.root / "context" / "spidernet"

    @property
    def busybox_context(self) -> Path:
        return self.root / "context" / "busybox"

    def archive(self, image: str) -> Path:
        return self.root / "archives" / f"{short_name(image)}.tar"

    def state(self, image: str) -> Path:
        return self.root / "state" / f"{short_name(image)}.json"

    def log(self, step: str) -> Path:
        return self.root / "logs" / f"{step}.log"


def layout(env: Mapping[str, str]) -> Layout:
    """The layout under the cache root ($SPIDERNET_CACHE, else /var/cache/spidernet)."""
    root = cache_root(env) / "images"
    return Layout(root, RUN_ROOT / f"images-{hashlib.sha256(bytes(root)).hexdigest()[:12]}")


def containers_conf(layout: Layout) -> str:
    """containers.conf for podman and buildah here (containers.conf(5)).

    runc, because crun is refused setrlimit on this machine, and no default ulimits for the
    same reason; cgroupfs and a file event log, because no systemd runs; `netns = "none"` so a
    `podman run` without `--network` sets up nothing, and an empty CNI directory of our own so
    Debian's default `87-podman-bridge.conflist` (a bridge and iptables rules on the host) is
    never read. Builds pass `--network host` to the RUN steps that download.
    """
    return (
        "[containers]\n"
        "default_ulimits = []\n"
        'netns = "none"\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{layout.run / "events.log"}"\n'
        f'tmp_dir = "{layout.run / "libpod"}"\n'
        "\n[network]\n"
        'network_backend = "cni"\n'
        f'network_config_dir = "{layout.network_dir}"\n'
    )


def storage_conf(layout: Layout) -> str:
    """storage.conf: the test bed's own store, apart from the machine's /var/lib/containers."""
    return (
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{layout.storage}"\n'
        f'runroot = "{layout.run / "storage"}"\n'
    )


def tool_env(layout: Layout, env: Mapping[str, str]) -> dict[str, str]:
    """`env` with podman and buildah pointed at the test bed's configuration and store."""
    return {
        **env,
        "CONTAINERS_CONF": str(layout.containers_conf),
        "CONTAINERS_STORAGE_CONF": str(layout.storage_conf),
    }


# The pause image: busybox's shell as PID 1. The kernel delivers no signal to a PID 1 that has
# no handler for it (pid_namespaces(7)), so busybox on its own would ignore SIGTERM; the trap
# makes the shell exit on SIGTERM and SIGINT, and `wait` returns at once when one arrives.
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done"
PAUSE_CONTAINERFILE = f"""\
FROM scratch
COPY rootfs/bin/busybox /bin/busybox
ENTRYPOINT {json.dumps(["/bin/busybox", "sh", "-c", PAUSE_SCRIPT])}
"""
# The workload image: busybox and a link for each of its applets (sh, sleep, ping, ip, ...).
BUSYBOX_CONTAINERFILE = """\
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
"""
CONTAINERFILES: Mapping[str, str] = {
    PAUSE: PAUSE_CONTAINERFILE,
    BUSYBOX: BUSYBOX_CONTAINERFILE,
}


def applet_links(listing: str) -> list[str]:
    """The names `busybox --list` prints, each a link to busybox in /bin (not busybox itself)."""
    names = {line.strip() for line in listing.splitlines()}
    return sorted(n for n in names if n and n != "busybox" and "/" not in n)


def bud_argv(
    image: str,
    containerfile: Path,
    context: Path,
    *,
    network: str,
    build_args: Mapping[str, str] | None = None,
    secrets: Mapping[str, Path] | None = None,
    runtime_root: Path | None = None,
) -> list[str]:
    """`buildah bud` with the layer cache, never pulling (there is no registry), and the
    intermediate containers removed on failure too; `runtime_root` keeps runc's state of the
    RUN steps there (runc's default is this machine's /run/runc)."""
    argv = ["nice", "-n", "19", "buildah", "bud", "--layers", "--pull=never", "--force-rm"]
    # (No --iidfile: with it, buildah stops printing the ID of each step, which built_ids reads.)
    argv += [f"--network={network}"]
    if runtime_root is not None:
        argv += [f"--runtime-flag=root={runtime_root}"]
    for key, value in sorted((build_args or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    for sid, src in sorted((secrets or {}).items()):
        argv += ["--secret", f"id={sid},src={src}"]
    return [*argv, "-f", str(containerfile), "-t", image, str(context)]


def save_argv(image: str, archive: Path) -> list[str]:
    """A docker-archive: manifest.json's RepoTags carry the name to `ctr images import` and
    `podman load` (and `docker load`); the layers are stored uncompressed."""
    return ["podman", "save", "--format", "docker-archive", "-o", str(archive), image]


def dockerignore_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore: one per line, `#` comments and blank lines skipped, a
    leading `/` or `./` dropped. Exceptions (`!pattern`) are refused: `ignored` does not
    implement them, and a context that silently differed from BuildKit's would be worse."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise ValueError(f"unsupported .dockerignore exception: {line!r}")
        patterns.append(line.removeprefix("./").removeprefix("/").rstrip("/"))
    return patterns


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it (Go's filepath.Match, plus `**` for any
    number of directories): `*` and `?` never match `/`."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(path: str, patterns: Iterable[str]) -> bool:
    """Whether the patterns leave `path` (relative, `/`-separated) out of the build context: a
    pattern that matches the path or one of its parent directories excludes it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    regexes = [_pattern_regex(p) for p in patterns]
    return any(r.match(prefix) for r in regexes for prefix in prefixes)


def tree_key(files: Iterable[tuple[str, str, bytes]]) -> str:
    """A key for a tree of (path, kind, content) entries, whatever their order; kind is
    "x" (executable), "f" (other file) or "l" (a symlink, content = its target)."""
    digest = hashlib.sha256()
    for path, kind, content in sorted(files):
        digest.update(f"{path}\0{kind}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def content_key(*parts: str) -> str:
    """A key for an image's inputs, each already a string (other keys, IDs, argv, files)."""
    return hashlib.sha256(json.dumps([RECIPE, *parts]).encode()).hexdigest()


def built_ids(output: str) -> list[str]:
    """The image IDs (full or short) that `buildah bud --layers` reports for its steps, cache
    hits (`--> Using cache ID`) and new layers (`--> ID`) alike: what the build used."""
    return re.findall(r"^--> (?:Using cache )?([0-9a-f]{11,64})$", output, re.MULTILINE)


def is_static_elf(header: bytes) -> bool:
    """Whether an ELF file (its first bytes, program headers included) has no PT_INTERP, i.e.
    needs no dynamic loader: only such a busybox runs in an image holding nothing else."""
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:  # ELFCLASS64, LSB
        return False
    (phoff,) = struct.unpack_from("<Q", header, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
    end = phoff + phentsize * phnum
    if end > len(header):
        return False
    pt_interp = 3
    types = (struct.unpack_from("<I", header, phoff + i * phentsize)[0] for i in range(phnum))
    return pt_interp not in types
