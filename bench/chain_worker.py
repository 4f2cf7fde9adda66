"""The runtime half of `bench.chain`: a small CNI runtime that runs inside the "host" namespace.

    ip netns exec <host> python -m bench.chain_worker     (started by bench.chain only)

A real runtime runs plugins in the node's namespace. This process is started there once,
so every plugin it spawns starts in that namespace without paying `ip netns exec` (or
`nsenter`) per plugin. It speaks JSON lines: the first line on stdin names the networks,
`{"networks": {KEY: {"conflist": {...}, "cni_path": [...], "env": {...}}}}`; every further
line is one request and gets one answer line:

- `{"op": "chain", "net": KEY, "verb": "ADD"|"DEL", "container": ID, "netns": PATH,
  "args": CNI_ARGS}`: the whole chain, as libcni (and `spidernet.node.lab.runtime.Chain`)
  runs it: ADD through every plugin in order, each result fed to the next as `prevResult`;
  DEL in reverse order with the cached ADD result. Answers `seconds` (the chain, first
  spawn to last reap, the runtime's own work between plugins included), `plugins` (each
  process's type and seconds, spawn to reap) and `ips` (ADD: the final result's addresses).
- `{"op": "ipam", ...}` (same keys): the first plugin's IPAM plugin alone, spawned with
  the stdin and environment that plugin hands its delegate; answers `seconds` and `ips`.

Failures answer `{"ok": false, "error": ...}`; EOF on stdin ends the worker.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from spidernet.cni.config import ConfList, parse_conflist, plugin_config
from spidernet.cni.errors import CNIError
from spidernet.cni.result import Result, parse_result
from spidernet.node.lab.runtime import find_plugin

from .timing import Spawned, Spawner, SpawnError

IFNAME = "eth0"
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Network:
    """One network config list and the runtime's result cache for it."""

    conflist: ConfList
    cni_path: tuple[str, ...]
    env: Mapping[str, str]
    cache: dict[str, Result] = field(default_factory=dict)

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Network:
        """From the JSON form the first line carries."""
        return cls(
            parse_conflist(json.dumps(doc["conflist"]).encode()),
            tuple(doc["cni_path"]),
            {str(k): str(v) for k, v in doc.get("env", {}).items()},
        )

    def environ(self, verb: str, req: Mapping[str, Any]) -> dict[str, str]:
        """A plugin's environment, as libcni sets it."""
        return {
            "PATH": os.environ.get("PATH", DEFAULT_PATH),
            "CNI_COMMAND": verb,
            "CNI_CONTAINERID": str(req["container"]),
            "CNI_NETNS": str(req["netns"]),
            "CNI_IFNAME": IFNAME,
            "CNI_ARGS": str(req.get("args", "")),
            "CNI_PATH": ":".join(self.cni_path),
            **self.env,
        }


def _spawn(
    spawner: Spawner, plugin: str, cni_path: tuple[str, ...], env: dict[str, str], conf: bytes
) -> Spawned:
    done = spawner.run((find_plugin(plugin, cni_path),), env, conf)
    if done.status != 0:
        verb = env["CNI_COMMAND"]
        raise SpawnError(
            f"{plugin} {verb} exited {done.status}: "
            f"{done.stdout.decode(errors='replace').strip()} "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return done


def _ips(result: Result | None, what: str) -> list[str]:
    ips = [str(ip.address) for ip in result.ips] if result is not None else []
    if not ips:
        raise SpawnError(f"{what} ADD answered without addresses")
    return ips


def run_chain(spawner: Spawner, net: Network, req: Mapping[str, Any]) -> dict[str, Any]:
    """One chain call (see the module's docstring)."""
    verb, container = str(req["verb"]), str(req["container"])
    env = net.environ(verb, req)
    count = len(net.conflist.plugins)
    add = verb == "ADD"
    prev = None if add else net.cache.get(container)
    timed: list[tuple[str, float]] = []
    start = time.perf_counter()
    for index in range(count) if add else reversed(range(count)):
        conf = plugin_config(net.conflist, index, prev_result=prev)
        done = _spawn(spawner, conf["type"], net.cni_path, env, json.dumps(conf).encode())
        if add:
            prev = parse_result(json.loads(done.stdout), f"result of '{conf['type']}'")
        timed.append((conf["type"], done.seconds))
    seconds = time.perf_counter() - start
    if add:
        ips = _ips(prev, net.conflist.name)
        assert prev is not None  # _ips raised otherwise
        net.cache[container] = prev
        return {"seconds": seconds, "plugins": timed, "ips": ips}
    net.cache.pop(container, None)
    return {"seconds": seconds, "plugins": timed, "ips": []}


def run_ipam(spawner: Spawner, net: Network, req: Mapping[str, Any]) -> dict[str, Any]:
    """The first plugin's IPAM delegate alone, with the stdin and environment it gets."""
    verb = str(req["verb"])
    conf = plugin_config(net.conflist, 0)
    ipam_type = str(conf["ipam"]["type"])
    done = _spawn(
        spawner, ipam_type, net.cni_path, net.environ(verb, req), json.dumps(conf).encode()
    )
    if verb == "ADD":
        _ips(parse_result(json.loads(done.stdout), f"result of '{ipam_type}'"), ipam_type)
    return {"seconds": done.seconds, "plugins": [(ipam_type, done.seconds)], "ips": []}


OPS = {"chain": run_chain, "ipam": run_ipam}


def serve(lines: TextIO, out: TextIO, spawner: Spawner) -> None:
    """Answer requests from `lines` on `out` until EOF."""
    first = lines.readline()
    if not first:
        return
    networks = {key: Network.of(doc) for key, doc in json.loads(first)["networks"].items()}
    for line in lines:
        req = json.loads(line)
        try:
            answer = {"ok": True, **OPS[req["op"]](spawner, networks[req["net"]], req)}
        except (SpawnError, CNIError, ValueError, KeyError, FileNotFoundError) as e:
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def main() -> int:
    """Entry point; 130 on Ctrl-C (the plugin in flight, if any, is killed and reaped)."""
    spawner = Spawner()
    try:
        serve(sys.stdin, sys.stdout, spawner)
    except KeyboardInterrupt:
        return 130
    finally:
        spawner.kill_live()
    return 0


if __name__ == "__main__":
    sys.exit(main())
