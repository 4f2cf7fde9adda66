"""A minimal container runtime: run CNI plugins exactly as libcni does.

Each call is a new process with the CNI_* environment and the config on stdin, started in
the "host" namespace given (a real runtime runs plugins in the node's namespace), and in a
mount namespace of its own when one is given (a runtime with private mounts). `Chain`
runs a network config list: ADD in order with each result passed on as `prevResult`, DEL in
reverse order with the cached ADD result, CHECK in order, GC and STATUS on every plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spidernet.cni.config import Attachment, ConfList, plugin_config
from spidernet.cni.errors import CNIError, Code
from spidernet.cni.result import Result, parse_result
from spidernet.node import netns
from spidernet.node.errors import NodeError

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome:
    """One plugin process: its exit status, output, and the decoded result or error."""

    plugin: str
    command: str
    returncode: int
    stdout: str
    stderr: str
    result: Result | None = None
    error: CNIError | None = None

    @property
    def ok(self) -> bool:
        """True when the plugin exited 0."""
        return self.returncode == 0


class PluginFailed(NodeError):
    """Raised by Chain when a plugin answers an error; `outcome` holds what it printed."""

    def __init__(self, outcome: Outcome) -> None:
        err = outcome.error
        what = f"code {err.code}: {err.msg}" if err else f"exit {outcome.returncode}"
        super().__init__(f"{outcome.command} failed in plugin '{outcome.plugin}': {what}")
        self.outcome = outcome


def find_plugin(plugin_type: str, path: Sequence[str]) -> str:
    """The executable for `plugin_type` in the CNI_PATH directories (libcni FindInPath)."""
    for directory in path:
        candidate = Path(directory, plugin_type)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError(f"failed to find plugin '{plugin_type}' in path {list(path)}")


def _decode_error(stdout: str, returncode: int) -> CNIError:
    try:
        obj = json.loads(stdout)
        return CNIError(int(obj["code"]), str(obj.get("msg", "")), str(obj.get("details", "")))
    except (ValueError, KeyError, TypeError):
        text = stdout.strip() or f"exit status {returncode} with no error object"
        return CNIError(Code.INTERNAL, f"plugin did not print a CNI error: {text}")


def invoke(
    executable: str,
    command: str,
    config: Mapping[str, Any] | bytes,
    *,
    container_id: str = "",
    netns_path: str = "",
    ifname: str = "",
    cni_args: str = "",
    cni_path: Sequence[str] = (),
    host_netns: str | None = None,
    mount_ns: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Outcome:
    """Run one plugin process; never raises for a plugin error (see Outcome.error).
    `mount_ns`: a path (`/proc/PID/ns/mnt`) of the mount namespace to run it in."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command}
    for key, value in (
        ("CNI_CONTAINERID", container_id),
        ("CNI_NETNS", netns_path),
        ("CNI_IFNAME", ifname),
        ("CNI_ARGS", cni_args),
        ("CNI_PATH", ":".join(cni_path)),
    ):
        if value:
            env[key] = value
    env.update(extra_env or {})
    stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
    argv = _argv(executable, host_netns, mount_ns)
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, env=env, timeout=timeout, check=False
    )
    stdout, stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    name = Path(executable).name
    if proc.returncode != 0:
        error = _decode_error(stdout, proc.returncode)
        return Outcome(name, command, proc.returncode, stdout, stderr, error=error)
    result = None
    if command == "ADD":
        try:
            result = parse_result(json.loads(stdout), f"result of '{name}'")
        except (ValueError, CNIError) as e:
            error = CNIError(Code.DECODING_FAILURE, f"bad ADD result from '{name}': {e}")
            return Outcome(name, command, proc.returncode, stdout, stderr, error=error)
    return Outcome(name, command, proc.returncode, stdout, stderr, result=result)


def _argv(executable: str, host_netns: str | None, mount_ns: str | None) -> list[str]:
    if mount_ns is None:
        return [executable] if host_netns is None else netns.exec_argv(host_netns, [executable])
    # nsenter opens every namespace file before it enters any, so the host namespace's path
    # is looked up here, in this process's mounts.
    argv = ["nsenter", f"--mount={mount_ns}"]
    if host_netns is not None:
        argv.append(f"--net={netns.path_of(host_netns)}")
    return [*argv, "--", executable]


@dataclass(frozen=True)
class Target:
    """The container interface a chain call is about."""

    container_id: str = ""
    netns_path: str = ""
    ifname: str = ""
    cni_args: str = ""
    runtime_config: Mapping[str, Any] | None = None


@dataclass
class Chain:
    """A network config list run against one container, with libcni's result cache."""

    conflist: ConfList
    cni_path: Sequence[str]
    host_netns: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    cache: dict[tuple[str, str], Result] = field(default_factory=dict)
    mount_ns: str | None = None  # see `invoke`

    def _run(
        self,
        index: int,
        command: str,
        target: Target,
        *,
        prev: Result | None = None,
        attachments: tuple[Attachment, ...] | None = None,
    ) -> Outcome:
        conf = plugin_config(
            self.conflist,
            index,
            prev_result=prev,
            runtime_config=target.runtime_config,
            valid_attachments=attachments,
        )
        outcome = invoke(
            find_plugin(conf["type"], self.cni_path),
            command,
            conf,
            container_id=target.container_id,
            netns_path=target.netns_path,
            ifname=target.ifname,
            cni_args=target.cni_args,
            cni_path=self.cni_path,
            host_netns=self.host_netns,
            mount_ns=self.mount_ns,
            extra_env=self.extra_env,
        )
        if not outcome.ok:
            raise PluginFailed(outcome)
        return outcome

    @property
    def _indices(self) -> range:
        return range(len(self.conflist.plugins))

    def add(self, target: Target) -> Result:
        """ADD through every plugin; raises PluginFailed (the caller then runs DEL)."""
        prev: Result | None = None
        for index in self._indices:
            prev = self._run(index, "ADD", target, prev=prev).result
        assert prev is not None
        self.cache[(target.container_id, target.ifname)] = prev
        return prev

    def delete(self, target: Target) -> None:
        """DEL through every plugin in reverse order with the cached result."""
        prev = self.cache.get((target.container_id, target.ifname))
        for index in reversed(self._indices):
            self._run(index, "DEL", target, prev=prev)
        self.cache.pop((target.container_id, target.ifname), None)

    def check(self, target: Target) -> None:
        """CHECK through every plugin with the cached result."""
        prev = self.cache.get((target.container_id, target.ifname))
        if prev is None:
            raise CNIError(Code.UNKNOWN_CONTAINER, f"no cached result for '{target.container_id}'")
        for index in self._indices:
            self._run(index, "CHECK", target, prev=prev)

    def status(self) -> None:
        """STATUS of every plugin."""
        for index in self._indices:
            self._run(index, "STATUS", Target())

    def gc(self, keep: tuple[Attachment, ...]) -> None:
        """GC on every plugin, keeping the attachments in `keep`."""
        for index in self._indices:
            self._run(index, "GC", Target(), attachments=keep)
