"""The CNI_* environment: which variables each verb needs and what they may contain.

CNI spec, "Parameters": ADD and CHECK need CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME; DEL
needs CNI_CONTAINERID and CNI_IFNAME (the netns may already be gone); GC needs CNI_PATH;
STATUS and VERSION need only CNI_COMMAND.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import CNIError, Code

VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

REQUIRED: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}

# Container IDs and network names: an alphanumeric, then alphanumerics, '_', '.', '-'
# (CNI spec, "CNI_CONTAINERID" and "name").
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# Linux IFNAMSIZ is 16 including the terminating NUL.
MAX_IFNAME = 15


@dataclass(frozen=True)
class CniEnv:
    """The parsed CNI_* variables of one call."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()

    def arg(self, key: str, default: str = "") -> str:
        """The value of `key` in CNI_ARGS (K8S_POD_NAME and friends)."""
        for k, v in self.args:
            if k == key:
                return v
        return default


def validate_name(kind: str, value: str, code: int) -> None:
    """Raise CNIError(code) unless `value` is a valid CNI container id or network name."""
    if not _NAME_RE.match(value):
        raise CNIError(code, f"invalid characters in {kind}", value)


def validate_ifname(name: str) -> None:
    """Raise INVALID_ENVIRONMENT for a name the kernel would refuse as an interface name."""
    if not name:
        raise CNIError(Code.INVALID_ENVIRONMENT, "interface name is empty")
    if len(name) > MAX_IFNAME:
        raise CNIError(
            Code.INVALID_ENVIRONMENT,
            f"interface name '{name}' is too long",
            f"at most {MAX_IFNAME} characters",
        )
    if name in (".", "..") or any(c in {"/", ":"} or c.isspace() for c in name):
        raise CNIError(
            Code.INVALID_ENVIRONMENT,
            f"invalid interface name '{name}'",
            "must not be '.' or '..' nor contain '/', ':' or whitespace",
        )


def parse_cni_args(raw: str) -> tuple[tuple[str, str], ...]:
    """Split CNI_ARGS ("K1=V1;K2=V2"); raise INVALID_ENVIRONMENT on a pair without '='."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CNIError(
                Code.INVALID_ENVIRONMENT, f"invalid CNI_ARGS pair '{item}'", "expected KEY=VALUE"
            )
        pairs.append((key, value))
    return tuple(pairs)


def parse_env(environ: Mapping[str, str]) -> CniEnv:
    """Read and check the CNI_* variables for the verb in CNI_COMMAND.

    Raises CNIError(INVALID_ENVIRONMENT) naming every missing variable, or an unknown verb.
    """
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(Code.INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    if command not in VERBS:
        raise CNIError(Code.INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}")
    missing = [name for name in REQUIRED[command] if not environ.get(name)]
    if missing:
        raise CNIError(
            Code.INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing"
        )
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    if command in ("ADD", "CHECK", "DEL"):
        validate_name("containerID", container_id, Code.INVALID_ENVIRONMENT)
        validate_ifname(ifname)
    path = tuple(p for p in environ.get("CNI_PATH", "").split(":") if p)
    return CniEnv(
        command=command,
        container_id=container_id,
        netns=environ.get("CNI_NETNS", ""),
        ifname=ifname,
        args=parse_cni_args(environ.get("CNI_ARGS", "")),
        path=path,
    )
