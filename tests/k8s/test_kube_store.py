"""The Kubernetes store on a real kube-apiserver, beyond the shared contract: the API server as
the arbiter between two clients, its optimistic concurrency, `commit`'s undo, Strict field
validation, Spiderpool's kinds under their CRDs (status subresource included), Expired and
Unavailable, and what a write costs on loopback (recorded in the JUnit report).

Every test uses keys of its own (a random suffix), so nothing depends on another test's objects.
"""

from __future__ import annotations

import json
import queue
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client

from spidernet.control.store import kube_api
from spidernet.control.store.base import (
    CLAIM,
    AlreadyExists,
    Conflict,
    Create,
    Delete,
    EventType,
    Expired,
    Invalid,
    Key,
    NotFound,
    ReadOnly,
    Unavailable,
    Update,
    Write,
)
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_api import NotApplied
from spidernet.control.store.kube_names import INTERNAL, SPIDER_KINDS
from spidernet.testbed.kubecluster import Cluster, free_port
from spidernet.testbed.relay import Relay

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "crds"


@pytest.fixture
def store(k8s_api: client.ApiClient, store_crds: list[str]) -> Iterator[KubeStore]:
    s = KubeStore(k8s_api)
    yield s
    s.close()


@pytest.fixture
def pool() -> str:
    """A pool name of this test's own."""
    return f"pool-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(k8s_api: client.ApiClient) -> str:
    name = f"store-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s_api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def ippool(name: str, **status: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": "172.20.0.0/16", "ips": ["172.20.10.1-172.20.10.9"]},
    }
    if status:
        doc["status"] = status
    return doc


def test_resources_match_deploy_crds(store_crds: list[str]) -> None:
    crds = [yaml.safe_load(p.read_text()) for p in sorted(CRDS.glob("*.yaml"))]
    found = {}
    for crd in crds:
        spec = crd["spec"]
        (version,) = spec["versions"]
        found[spec["names"]["kind"]] = (
            spec["group"],
            version["name"],
            spec["names"]["plural"],
            spec["scope"] == "Namespaced",
            "status" in version.get("subresources", {}),
        )
    internal = found.pop("SpidernetObject")
    nad = found.pop("NetworkAttachmentDefinition")  # Multus' CRD, for the multus controller
    assert nad == ("k8s.cni.cncf.io", "v1", "network-attachment-definitions", True, False)
    assert internal == (INTERNAL.group, INTERNAL.version, INTERNAL.plural, False, False)
    assert found == {
        kind: (r.group, r.version, r.plural, r.namespaced, r.status)
        for kind, r in SPIDER_KINDS.items()
    }
    every = [*found.values(), internal, nad]
    assert sorted(store_crds) == sorted(f"{v[2]}.{v[0]}" for v in every)


def test_two_clients_race_for_each_address(
    k8s_cluster: Cluster, store_crds: list[str], pool: str
) -> None:
    """Two stores, each with its own ApiClient (own connections), create the same claims at
    the same moments: the API server lets exactly one create of each address through."""
    stores = [KubeStore.from_kubeconfig(str(k8s_cluster.kubeconfig)) for _ in range(2)]
    addresses = [f"10.9.0.{n}" for n in range(1, 41)]
    barrier = threading.Barrier(2)
    wins: list[list[str]] = [[], []]
    losses = [0, 0]

    def grab(i: int) -> None:
        for address in addresses:
            barrier.wait()
            try:
                stores[i].create(Key(CLAIM, pool, address), {"node": f"node-{i}"})
            except AlreadyExists:
                losses[i] += 1
                continue
            wins[i].append(address)

    try:
        threads = [threading.Thread(target=grab, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins[0] + wins[1]) == sorted(addresses)
        assert not set(wins[0]) & set(wins[1])
        assert losses[0] + losses[1] == len(addresses)
        listing = stores[0].list(CLAIM, pool)
        assert [c.key.name for c in listing.items] == sorted(addresses)
        for claim in listing.items:
            winner = 0 if claim.key.name in wins[0] else 1
            assert claim.body == {"node": f"node-{winner}"}
    finally:
        for s in stores:
            s.close()


def test_stale_resource_version_is_conflict(store: KubeStore, pool: str) -> None:
    key = Key(CLAIM, pool, "10.9.1.1")
    first = store.create(key, {"pod": "a"})
    second = store.update(key, {"pod": "b"}, first.version)
    with pytest.raises(Conflict) as caught:
        store.update(key, {"pod": "c"}, first.version)
    assert "the object has been modified" in str(caught.value)
    with pytest.raises(Conflict):
        store.delete(key, first.version)
    assert store.get(key) == second
    store.delete(key, second.version)
    with pytest.raises(NotFound):
        store.get(key)


def test_commit_undoes_applied_writes_when_a_later_one_fails(store: KubeStore, pool: str) -> None:
    """The last write passes the store's own checks but the API server refuses it (an unknown
    field): the writes already applied are undone and the server's error is raised."""
    a, b, c = (Key(CLAIM, pool, f"10.9.2.{n}") for n in (1, 2, 3))
    b_stored = store.create(b, {"n": "b"})
    c_stored = store.create(c, {"n": "c"})
    bad = ippool(f"bad-{pool}")
    bad["spec"]["noSuchField"] = True
    start = store.list(CLAIM, pool)
    with pytest.raises(Invalid) as caught:
        store.commit(
            [
                Create(a, {"n": "a"}),
                Update(b, {"n": "b2"}, b_stored.version),
                Delete(c, c_stored.version),
                Create(Key("SpiderIPPool", "", bad["metadata"]["name"]), bad),
            ]
        )
    assert "noSuchField" in str(caught.value)
    assert not getattr(caught.value, "__notes__", [])  # every undo succeeded
    after = store.list(CLAIM, pool)
    assert [(s.key, s.body) for s in after.items] == [(b, {"n": "b"}), (c, {"n": "c"})]
    with pytest.raises(NotFound):
        store.get(Key("SpiderIPPool", "", bad["metadata"]["name"]))
    # Not isolated: a watcher saw the writes and their undo.
    events, _ = store.changes(CLAIM, start.revision)
    assert [(e.type, e.obj.key) for e in events] == [
        (EventType.ADDED, a),
        (EventType.MODIFIED, b),
        (EventType.DELETED, c),
        (EventType.ADDED, c),  # re-created: a new object, new uid
        (EventType.MODIFIED, b),
        (EventType.DELETED, a),
    ]


def relayed(cluster: Cluster, relay: Relay, tmp_path: Path) -> Path:
    """A kubeconfig naming the relay in front of `cluster`'s API server."""
    conf = json.loads(cluster.kubeconfig.read_text())
    conf["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(conf))
    return path


def test_commit_undoes_nothing_when_a_write_may_have_been_applied(
    k8s_cluster: Cluster, store_crds: list[str], pool: str, tmp_path: Path
) -> None:
    """The last write reaches the API server but its answer is lost (the relay drops every
    answer from then on): the store cannot know whether it was applied, so it leaves the
    writes before it in place instead of undoing them. It was applied here; undone claims
    under it are how one address gets answered to two pods."""
    url = urlsplit(k8s_cluster.server)
    relay = Relay((str(url.hostname), int(url.port or 443)))
    muted = KubeStore.connect(str(relayed(k8s_cluster, relay, tmp_path)), timeout=2.0)
    direct = KubeStore.from_kubeconfig(str(k8s_cluster.kubeconfig))
    a, b, last = (Key(CLAIM, pool, f"10.9.4.{n}") for n in (1, 2, 3))
    send = muted._apply

    def apply(write: Write, body: Any) -> Any:
        if write.key == last:
            relay.mute()
        return send(write, body)

    try:
        muted._apply = apply  # type: ignore[method-assign]
        with pytest.raises(Unavailable) as caught:
            muted.commit([Create(a, {"n": "a"}), Create(b, {"n": "b"}), Create(last, {})])
        assert not isinstance(caught.value, NotApplied)
        assert any("not undone" in n for n in getattr(caught.value, "__notes__", []))
        assert {s.key for s in direct.list(CLAIM, pool).items} == {a, b, last}
    finally:
        relay.close()
        muted.close()
        direct.close()


def test_a_write_whose_answer_is_lost_is_not_sent_again(
    k8s_cluster: Cluster, store_crds: list[str], pool: str, tmp_path: Path
) -> None:
    """An update reaches the API server, its answer is lost and the connection then closes.
    Sent again, it would find its own write applied and answer Conflict, a definite "not
    written" that `commit` would undo around; the store raises Unavailable instead (it may
    have been applied), and it was."""
    url = urlsplit(k8s_cluster.server)
    relay = Relay((str(url.hostname), int(url.port or 443)))
    store = KubeStore.connect(str(relayed(k8s_cluster, relay, tmp_path)), timeout=30.0)
    key = Key(CLAIM, pool, "10.9.5.1")
    try:
        first = store.create(key, {"n": 1})
        relay.mute()
        healer = threading.Timer(1.0, relay.heal)  # ends the connection that waits
        healer.start()
        with pytest.raises(Unavailable) as caught:
            store.update(key, {"n": 2}, first.version)
        healer.join()
        assert not isinstance(caught.value, NotApplied)
        time.sleep(kube_api.UNANSWERED_HOLD_S)
        assert store.get(key).body == {"n": 2}
    finally:
        relay.close()
        store.close()


def test_commit_checks_first_and_writes_nothing(store: KubeStore, pool: str) -> None:
    a, b = Key(CLAIM, pool, "10.9.3.1"), Key(CLAIM, pool, "10.9.3.2")
    store.create(b, {"taken": True})
    start = store.list(CLAIM, pool)
    with pytest.raises(AlreadyExists) as caught:
        store.commit([Create(a, {}), Create(b, {})])
    assert caught.value.key == b
    # A first write that creates is not read first: its POST is the check, before any other.
    with pytest.raises(AlreadyExists) as caught:
        store.commit([Create(b, {}), Create(a, {})])
    assert caught.value.key == b
    # Written again in the same commit, it is read first (the sequence is checked whole).
    with pytest.raises(AlreadyExists) as caught:
        store.commit([Create(b, {}), Delete(b), Delete(b)])
    assert caught.value.key == b
    assert store.changes(CLAIM, start.revision)[0] == ()
    assert [s.key for s in store.list(CLAIM, pool).items] == [b]


def test_follow_gives_each_change_as_it_happens_until_shut(store: KubeStore, pool: str) -> None:
    start = store.list(CLAIM).revision
    closers: list[Callable[[], None]] = []
    seen: queue.Queue[tuple[EventType, str]] = queue.Queue()
    ended = threading.Event()

    def watch() -> None:
        for event, _ in store.follow(CLAIM, start, closers.append):
            if event is not None and event.obj.key.namespace == pool:
                seen.put((event.type, event.obj.key.name))
        ended.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    key = Key(CLAIM, pool, "10.9.4.1")
    store.create(key, {"n": 1})
    assert seen.get(timeout=10) == (EventType.ADDED, "10.9.4.1")
    store.delete(key)
    assert seen.get(timeout=10) == (EventType.DELETED, "10.9.4.1")
    assert not ended.is_set()  # still watching: it ends when shut, not when quiet
    closers[0]()
    thread.join(timeout=10)
    assert ended.is_set()


def test_unknown_fields_are_refused(store: KubeStore, pool: str) -> None:
    name = f"strict-{pool}"
    in_spec = ippool(name)
    in_spec["spec"]["unknownField"] = 1
    at_top = ippool(name) | {"extra": {"x": 1}}
    for sent in (in_spec, at_top):
        with pytest.raises(Invalid) as caught:
            store.create(Key("SpiderIPPool", "", name), sent)
        assert isinstance(caught.value, ValueError)
        assert ("unknownField" in str(caught.value)) or ("extra" in str(caught.value))
    with pytest.raises(NotFound):
        store.get(Key("SpiderIPPool", "", name))
    # The key decides the name: a body naming another object is refused before any request.
    with pytest.raises(Invalid):
        store.create(Key("SpiderIPPool", "", name), ippool("another"))


def test_spider_kind_round_trip_with_status_subresource(store: KubeStore, pool: str) -> None:
    key = Key("SpiderIPPool", "", pool)
    created = store.create(key, ippool(pool, allocatedIPCount=0, totalIPCount=9))
    assert created.body["status"] == {"allocatedIPCount": 0, "totalIPCount": 9}
    assert created.body["spec"]["default"] is False  # the CRD's default
    assert "resourceVersion" not in created.body["metadata"]
    assert store.get(key) == created
    # A status-only change goes to /status; a spec change keeps the stored status unless the
    # body says otherwise.
    body = dict(created.body) | {"status": {"allocatedIPCount": 1, "totalIPCount": 9}}
    updated = store.update(key, body, created.version)
    assert updated.body["status"]["allocatedIPCount"] == 1
    assert store.get(key) == updated
    spec_only = dict(updated.body)
    spec_only["spec"] = dict(spec_only["spec"]) | {"excludeIPs": ["172.20.10.9"]}
    again = store.update(key, spec_only, updated.version)
    assert again.body == spec_only
    assert store.get(key) == again
    (listed,) = [s for s in store.list("SpiderIPPool").items if s.key == key]
    assert listed == again
    store.delete(key, again.version)


def test_namespaced_spider_kind(store: KubeStore, namespace: str) -> None:
    body = {
        "metadata": {"annotations": {"ipam.spidernet.io/container-id": "abc"}},
        "status": {
            "current": {"uid": "u-1", "node": "node-1", "ips": [{"interface": "eth0", "vlan": 0}]},
            "ownerControllerType": "Pod",
            "ownerControllerName": "web-0",
        },
    }
    keys = [Key("SpiderEndpoint", namespace, n) for n in ("web-1", "web-0")]
    for k in keys:
        store.create(k, body)
    listed = store.list("SpiderEndpoint", namespace).items
    assert [s.key for s in listed] == sorted(keys)
    assert listed[0].body["status"] == body["status"]
    assert listed[0].body["metadata"]["namespace"] == namespace
    everywhere = store.list("SpiderEndpoint").items
    assert set(keys) <= {s.key for s in everywhere}
    with pytest.raises(ValueError, match="namespaced"):
        store.get(Key("SpiderEndpoint", "", "web-0"))
    assert store.list("SpiderEndpoint", "").items == ()
    assert store.list("SpiderIPPool", namespace).items == ()


def test_the_clusters_pods_namespaces_and_nodes_are_read_only(
    store: KubeStore, k8s_api: client.ApiClient, namespace: str
) -> None:
    """Kubernetes' own kinds are the real objects (uid, labels, owner), read through the store,
    watched through `changes`, and never written by it."""
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    )
    before = store.list("Pod", namespace)
    assert before.items == ()
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="web-0", labels={"app": "web"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="pause")]),
    )
    created = core.create_namespaced_pod(namespace, pod).metadata
    assert created is not None

    got = store.get(Key("Pod", namespace, "web-0"))
    assert got.version == created.resource_version
    assert got.body["kind"] == "Pod"
    assert got.body["metadata"]["uid"] == created.uid
    assert got.body["metadata"]["labels"] == {"app": "web"}
    assert [s.key for s in store.list("Pod", namespace).items] == [got.key]
    assert store.list("Pod", "").items == ()
    events, _ = store.changes("Pod", before.revision)
    assert [(e.type, e.obj.key) for e in events] == [(EventType.ADDED, got.key)]
    ns = store.get(Key("Namespace", "", namespace))
    assert ns.body["metadata"]["name"] == namespace
    assert any(s.key == ns.key for s in store.list("Namespace").items)
    with pytest.raises(NotFound):
        store.get(Key("Node", "", f"node-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(NotFound):
        store.get(Key("Pod", namespace, "web-1"))

    for write in (
        lambda: store.create(Key("Pod", namespace, "web-1"), {"metadata": {}}),
        lambda: store.update(got.key, dict(got.body), got.version),
        lambda: store.delete(got.key),
        lambda: store.commit([Delete(got.key), Create(Key(CLAIM, "p", "10.0.0.1"), {})]),
    ):
        with pytest.raises(ReadOnly, match="read-only"):
            write()
    assert store.get(got.key).version == got.version
    with pytest.raises(NotFound):
        store.get(Key(CLAIM, "p", "10.0.0.1"))


def test_revisions_the_server_never_had_or_forgot_are_expired(store: KubeStore) -> None:
    with pytest.raises(Expired):
        store.changes(CLAIM, "1")  # older than the watch cache of the internal CRD
    now = int(store.list(CLAIM).revision)
    with pytest.raises(Expired, match="ahead"):
        store.changes(CLAIM, str(now + 1_000_000))
    with pytest.raises(ValueError, match="revision"):
        store.changes(CLAIM, "not-a-revision")


def test_unreachable_api_server_is_unavailable(k8s_api: client.ApiClient) -> None:
    config = client.Configuration()
    config.host = f"https://127.0.0.1:{free_port()}"
    config.verify_ssl = False
    config.retries = False
    with KubeStore(client.ApiClient(config), timeout=2.0, owns_client=True) as store:
        with pytest.raises(Unavailable):
            store.get(Key(CLAIM, "pool", "10.0.0.1"))
        with pytest.raises(Unavailable):
            store.create(Key(CLAIM, "pool", "10.0.0.1"), {})
    with pytest.raises(ValueError, match="closed"):
        store.get(Key(CLAIM, "pool", "10.0.0.1"))


def _timed(n: int, call: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def test_latency_on_loopback(
    store: KubeStore, pool: str, record_testsuite_property: Callable[[str, object], None]
) -> None:
    """Milliseconds per call against the local API server (median, in the JUnit report)."""
    keys = [Key(CLAIM, pool, f"10.9.4.{n}") for n in range(50)]
    create = _timed(50, lambda i: store.create(keys[i], {"pod": f"p-{i}"}))
    get = _timed(50, lambda i: store.get(keys[i]))
    start = store.list(CLAIM, pool).revision
    commit = _timed(
        20,
        lambda i: store.commit([Create(Key(CLAIM, pool, f"10.9.5.{i}"), {}), Delete(keys[i])]),
    )
    watch = _timed(1, lambda _: store.changes(CLAIM, start))
    for name, values in (("create", create), ("get", get), ("commit2", commit), ("changes", watch)):
        record_testsuite_property(
            f"kube_store_{name}_ms_median", f"{statistics.median(values):.1f}"
        )
    assert statistics.median(get) < 100
