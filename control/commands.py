"""The resource commands of the CLI: `apply`, `get`, `delete`, `serve` (kubectl-like).

Each returns an exit status: 0 success, 1 failure (a one-line reason on stderr), 2 usage.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from spidernet.control.client import Client, ServiceError, ServiceUnreachable
from spidernet.control.crds import printer
from spidernet.control.model.documents import load_documents
from spidernet.control.model.listing import Selector, applyable, as_list, name_line
from spidernet.control.model.printing import resolve_kind

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_WORKLOAD_NAMES = {
    "pod": "Pod",
    "pods": "Pod",
    "namespace": "Namespace",
    "namespaces": "Namespace",
    "ns": "Namespace",
    "node": "Node",
    "nodes": "Node",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "sts": "StatefulSet",
    "virtualmachine": "VirtualMachine",
    "virtualmachines": "VirtualMachine",
    "vm": "VirtualMachine",
    "vms": "VirtualMachine",
    "virtualmachineinstance": "VirtualMachineInstance",
    "virtualmachineinstances": "VirtualMachineInstance",
    "vmi": "VirtualMachineInstance",
    "vmis": "VirtualMachineInstance",
    "ipamclaim": "IPAMClaim",
    "ipamclaims": "IPAMClaim",
}


def kind_of(name: str) -> str:
    """The kind for a CLI name (`pools`, `sp`, `SpiderIPPool`, `pods`, ...); ValueError."""
    if name.lower() in _WORKLOAD_NAMES:
        return _WORKLOAD_NAMES[name.lower()]
    try:
        return resolve_kind(name)
    except ValueError as e:
        raise ValueError(
            f"{e}; or the embedded-mode records pods, namespaces, nodes, statefulsets, vms, "
            "vmis, ipamclaims"
        ) from e


def _fail(message: str) -> int:
    print(f"spidernet: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _label(key: dict[str, str]) -> str:
    where = f"{key['namespace']}/{key['name']}" if key["namespace"] else key["name"]
    return f"{key['kind'].lower()}/{where}"


def apply(client: Client, path: str, out: TextIO = sys.stdout) -> int:
    """Apply every document of a YAML/JSON file ('-' for stdin); keep going past rejections,
    fail at the end if any was rejected."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        return _fail(f"failed to read '{path}': {e.strerror}")
    try:
        docs = load_documents(text)
    except ValueError as e:
        return _fail(f"failed to read '{path}': {e}")
    if not docs:
        return _fail(f"no documents in '{path}'")
    failed = 0
    for doc in docs:
        try:
            answer = client.request("POST", "/v1/resources", doc)
        except ServiceUnreachable as e:
            return _fail(str(e))
        except ServiceError as e:
            print(f"spidernet: rejected: {e.message}", file=sys.stderr)
            failed += 1
            continue
        print(f"{_label(answer['key'])} {answer['action']}", file=out)
    return EXIT_FAILURE if failed else EXIT_OK


def _url(kind: str, name: str | None, namespace: str | None) -> str:
    url = f"/v1/resources/{kind}"
    if name:
        url += f"/{namespace}/{name}" if namespace else f"/{name}"
    return url


def _split(name: str | None, namespace: str | None) -> tuple[str | None, str | None]:
    if name and "/" in name and namespace is None:
        ns, _, rest = name.partition("/")
        return rest, ns
    return name, namespace


def _table(
    kind: str, items: Sequence[dict[str, Any]], wide: bool, out: TextIO, *, all_namespaces: bool
) -> None:
    if kind in _WORKLOAD_NAMES.values():
        cols: list[tuple[str, Any]] = [
            ("NAMESPACE", lambda d: d["metadata"].get("namespace", "")),
            ("NAME", lambda d: d["metadata"]["name"]),
        ]
    else:
        cols = [
            (c.header, functools.partial(c.cell, now=None))
            for c in printer().columns(kind, wide, namespaces=all_namespaces)
        ]
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for head, _ in cols:
        table.add_column(head, no_wrap=True)
    for d in items:
        table.add_row(*(str(fn(d)) for _, fn in cols))
    Console(file=out, width=250, highlight=False, soft_wrap=True).print(table)


def _ask(
    client: Client, method: str, kind_name: str, name: str | None, namespace: str | None
) -> tuple[str, Any] | int:
    """(kind, answer) of one resource request, or the exit status when it failed."""
    try:
        kind = kind_of(kind_name)
    except ValueError as e:
        print(f"spidernet: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return kind, client.request(method, _url(kind, name, namespace))
    except (ServiceUnreachable, ServiceError) as e:
        return _fail(str(e))


def get(
    client: Client,
    kind_name: str,
    name: str | None,
    namespace: str | None,
    *,
    output: str,
    selector: Selector | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print one object or a list: a table (the CRDs' printer columns), json or yaml (what
    `apply -f` takes back: a v1 List for a list), or names; `selector` filters the answer."""
    name, namespace = _split(name, namespace)
    got = _ask(client, "GET", kind_name, name, namespace)
    if isinstance(got, int):
        return got
    kind, answer = got
    items = [answer] if name else list(answer["items"])
    if namespace and not name:
        items = [d for d in items if d.get("metadata", {}).get("namespace") == namespace]
    if selector is not None and not name:
        items = [d for d in items if selector.matches(d.get("metadata", {}).get("labels") or {})]
    doc = applyable(answer) if name else as_list(items)
    if output == "json":
        print(json.dumps(doc, indent=2, sort_keys=True), file=out)
    elif output == "yaml":
        print(yaml.safe_dump(doc, sort_keys=True), file=out, end="")
    elif output == "name":
        for item in items:
            print(_name_of(kind, item), file=out)
    elif not items:
        print(f"No {kind} resources found.", file=sys.stderr)
    else:
        _table(kind, items, output == "wide", out, all_namespaces=namespace is None)
    return EXIT_OK


def _name_of(kind: str, doc: dict[str, Any]) -> str:
    """kubectl's `-o name` of an object (a workload record: `pod/NAME`, ...)."""
    info = printer().kinds.get(kind)
    if info is not None:
        return name_line({"kind": kind, **doc}, info.group)
    group = {"StatefulSet": ".apps", "IPAMClaim": ".k8s.cni.cncf.io"}.get(kind, "")
    if kind.startswith("VirtualMachine"):
        group = ".kubevirt.io"
    return f"{kind.lower()}{group}/{doc.get('metadata', {}).get('name', '')}"


def delete(
    client: Client, kind_name: str, name: str, namespace: str | None, out: TextIO = sys.stdout
) -> int:
    """Delete one object."""
    name_, namespace = _split(name, namespace)
    got = _ask(client, "DELETE", kind_name, name_, namespace)
    if isinstance(got, int):
        return got
    _, answer = got
    print(f"{_label(answer['deleted'])} deleted", file=out)
    return EXIT_OK


def gc(
    client: Client,
    *,
    now: bool,
    grace: float | None,
    output: str,
    out: TextIO = sys.stdout,
) -> int:
    """The embedded GC (node/agent/orphans.py): each endpoint of this node with its
    state and reason, then what was released (newest first); with `now`, a pass first."""
    url = "/v1/gc" if grace is None else f"/v1/gc?grace={grace:g}"
    try:
        answer = client.request("POST" if now else "GET", url)
    except (ServiceUnreachable, ServiceError) as e:
        return _fail(str(e))
    if output == "json":
        print(json.dumps(answer, indent=2, sort_keys=True), file=out)
        return EXIT_OK
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=250, highlight=False, soft_wrap=True)
    print(
        f"every {answer['intervalSeconds']:g} s (0: only when asked), grace "
        f"{answer['graceSeconds']:g} s{'; a pass ran now' if answer['ran'] else ''}",
        file=out,
    )
    heads = ("ENDPOINT", "CONTAINER", "NETNS", "ADDRESSES", "STATE", "WHY")
    for title, rows in (("", answer["endpoints"]), ("RELEASED", answer["released"])):
        if title:
            print(f"\n{title} (newest first)", file=out)
        table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for head in ("TIME", *heads) if title else heads:
            table.add_column(head, no_wrap=head != "WHY")
        for r in rows:
            cells = [
                r["endpoint"],
                r["container"][:12],
                r["netns"],
                " ".join(r["addresses"]),
                r["state"],
                r["reason"],
            ]
            table.add_row(*([r["time"], *cells] if title else cells))
        console.print(table)
    return EXIT_OK
