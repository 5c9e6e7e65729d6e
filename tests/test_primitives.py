"""The v3 primitives (link.etcd.primitives) against a real etcd, on both v3 transports.

``create``, ``compare_and_swap``, ``set(if_revision=)``, ``transform``,
``update``, ``append``, ``snapshot(revision=)`` and ``rollback``.  What etcd
holds is checked with ``etcdctl`` (:func:`raw`), not with link.etcd, so "nothing
was written" means no key, value, mod revision or lease changed.  The examples
of docs/primitives.md run here too (:func:`test_docs_examples`).
"""

import base64
import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from link.etcd import (
    EtcdCompacted,
    EtcdCompareFailed,
    EtcdInvalidTree,
    EtcdKeyNotFound,
    EtcdMiddleware,
    EtcdTxnTooLarge,
    EtcdUnsupported,
    codec,
)

from .helpers import same

TRANSPORTS = ["grpc", "gateway"]
POSITION = "{:020d}".format  # a list position's key segment
#: A tree whose types only an exact round trip keeps.
TREE = {
    "db": {"host": "db1", "port": 5432, "ratio": 1.0, "tls": True, "note": None},
    "workers": ["a", "42", 42, [], {}],
    "names": {"a/b": 1, "": 2, "01234567890123456789": 3},
}
#: 20 leaves: a change too large for one txn of a client with ``max_txn_ops=8``.
BIG = {f"k{i:02d}": i for i in range(20)}


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(etcd_server: Any, etcd_prefix: str, transport: str) -> Iterator[EtcdMiddleware]:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    ) as mw:
        yield mw


@pytest.fixture
def small(etcd_server: Any, etcd_prefix: str, transport: str) -> Iterator[EtcdMiddleware]:
    """A client whose txns hold at most 8 operations (etcd itself allows 128)."""
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport, max_txn_ops=8
    ) as mw:
        yield mw


def raw(server: Any, prefix: str) -> dict[str, tuple[bytes, int, int]]:
    """Every key at or below ``prefix`` as etcd holds it, read with etcdctl:
    ``{key: (value, mod_revision, lease)}``."""
    answer = json.loads(server.etcdctl("get", "--prefix", prefix, "-w", "json").stdout)
    return {
        base64.b64decode(kv["key"]).decode(): (
            base64.b64decode(kv.get("value", "")),
            kv["mod_revision"],
            kv.get("lease", 0),
        )
        for kv in answer.get("kvs", [])
    }


def lease_ttl(server: Any, lease_id: int) -> tuple[int, int]:
    """``(remaining, granted)`` seconds of a lease, from etcdctl."""
    answer = json.loads(
        server.etcdctl("lease", "timetolive", format(lease_id, "x"), "-w", "json").stdout
    )
    return answer["ttl"], answer["granted-ttl"]


def revoke(server: Any, lease_id: int) -> None:
    server.etcdctl("lease", "revoke", format(lease_id, "x"))


def compact(server: Any, client: EtcdMiddleware) -> int:
    """Compact etcd's history up to the current revision (etcdctl); returns it."""
    revision = client.snapshot("/", None)[1]
    server.etcdctl("compact", str(revision))
    return revision


def in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` for i in range(count) in threads; re-raise the first error."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    if errors:
        raise errors[0]


# -- create ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [TREE, 0, "", None, {}, []], ids=repr)
def test_create_stores_on_an_empty_path(client: EtcdMiddleware, value: Any) -> None:
    assert client.create("/new", value) is True
    assert same(client["/new"], value)


def test_create_writes_nothing_when_a_leaf_or_a_tree_is_there(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    client.update({"/leaf": 1, "/tree": {"a": [1, 2]}, "/empty": {}, "/none": None})
    before = raw(etcd_server, etcd_prefix)
    for path in ("/leaf", "/tree", "/tree/a", "/tree/a/" + POSITION(0), "/empty", "/none"):
        assert client.create(path, {"x": "new"}) is False, path
    assert client.create("/leaf", 1) is False  # the value already there: still False
    assert raw(etcd_server, etcd_prefix) == before


def test_create_below_a_leaf_replaces_the_leaf(client: EtcdMiddleware) -> None:
    client["/a"] = 5
    assert client.create("/a/b", 1) is True  # nothing at /a/b; /a becomes a directory
    assert same(client["/a"], {"b": 1})


def test_create_with_ttl_or_lease_attaches_every_key(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    assert client.create("/t", {"a": 1, "b": [2]}, ttl=4.5) is True
    held = raw(etcd_server, etcd_prefix)
    leases = {lease for _, _, lease in held.values()}
    assert len(held) == 2
    assert len(leases) == 1
    assert 0 not in leases
    (lease_id,) = leases
    remaining, granted = lease_ttl(etcd_server, lease_id)
    assert granted == 5
    assert 0 < remaining <= 5  # ceil(4.5)
    revoke(etcd_server, lease_id)
    assert "/t" not in client

    with client.lease(30) as lease:
        assert client.create("/l", "x", lease=lease) is True
        assert [v[2] for v in raw(etcd_server, etcd_prefix).values()] == [lease.id]
    assert "/l" not in client  # the lease ended with the block


def test_create_concurrently_exactly_one_wins(client: EtcdMiddleware) -> None:
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        results[i] = client.create("/leader", {"id": i, "tags": [i, str(i)]})

    in_threads(8, work)
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1
    assert same(client["/leader"], {"id": winners[0], "tags": [winners[0], str(winners[0])]})


# -- compare_and_swap -------------------------------------------------------------------


def test_compare_and_swap_a_tree_and_a_scalar(client: EtcdMiddleware) -> None:
    client["/cfg"] = TREE
    new = {"db": {"host": "db2"}, "workers": []}
    assert client.compare_and_swap("/cfg", TREE, new) is True
    assert same(client["/cfg"], new)
    assert client.compare_and_swap("/cfg", TREE, {"x": 1}) is False  # TREE is gone
    assert same(client["/cfg"], new)

    client["/n"] = 1
    assert client.compare_and_swap("/n", 1, 2) is True
    assert same(client["/n"], 2)
    assert client.compare_and_swap("/n", 1, 3) is False
    assert same(client["/n"], 2)
    assert client.compare_and_swap("/n", 2, {"now": ["a tree"]}) is True
    assert same(client["/n"], {"now": ["a tree"]})


EXACT = [
    (1, 1.0),
    (1, True),
    (1, "1"),
    (1.0, 1),
    (True, 1),
    ("1", 1),
    ("true", True),
    (None, "null"),
    ({}, []),
    ({}, None),
    ([], {}),
    ("", None),
    ({"a": 1}, {"a": 1.0}),
    ({"a": 1}, {"a": 1, "b": 2}),
    ({"a": 1, "b": 2}, {"a": 1}),
    ([1, 2], [2, 1]),
    ([1, 2], {POSITION(0): 1, POSITION(1): 2}),
]


@pytest.mark.parametrize(("stored", "expected"), EXACT, ids=repr)
def test_compare_and_swap_is_exact(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str, stored: Any, expected: Any
) -> None:
    client["/v"] = stored
    before = raw(etcd_server, etcd_prefix)
    assert client.compare_and_swap("/v", expected, "swapped") is False
    assert raw(etcd_server, etcd_prefix) == before  # nothing written on False
    assert client.compare_and_swap("/v", stored, "swapped") is True
    assert same(client["/v"], "swapped")


@pytest.mark.parametrize("expected", [None, {}, [], "", 0], ids=repr)
def test_compare_and_swap_is_false_when_absent(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str, expected: Any
) -> None:
    assert client.compare_and_swap("/missing", expected, 1) is False
    assert raw(etcd_server, etcd_prefix) == {}


def test_compare_and_swap_a_list_with_a_gap(client: EtcdMiddleware) -> None:
    for item in ("a", "b", "c"):
        client.append("/q", item)
    del client["/q/" + POSITION(1)]  # a consumer took the middle item
    assert same(client["/q"], ["a", "c"])
    assert client.compare_and_swap("/q", ["a", "c"], ["c"]) is True
    assert same(client["/q"], ["c"])


# -- set(if_revision=) --------------------------------------------------------------------


def test_if_revision_writes_when_untouched(client: EtcdMiddleware) -> None:
    client["/cfg"] = {"db": {"host": "h", "port": 1}}
    old, revision = client.snapshot("/cfg")
    client["/cfg2"] = 1  # beside the path, not below it
    client["/other/x"] = 2
    client.set("/cfg", {**old, "debug": True}, if_revision=revision)
    assert same(client["/cfg"], {"db": {"host": "h", "port": 1}, "debug": True})

    absent, revision = client.snapshot("/fresh", None)
    assert absent is None
    client.set("/fresh", [1], if_revision=revision)  # still absent: written
    assert same(client["/fresh"], [1])


CONCURRENT: dict[str, Callable[[EtcdMiddleware], Any]] = {
    "change": lambda c: c.__setitem__("/cfg/db/port", 5433),
    "same value again": lambda c: c.__setitem__("/cfg/db/port", 5432),
    "new key": lambda c: c.__setitem__("/cfg/extra", {"x": 1}),
    "deleted key": lambda c: c.__delitem__("/cfg/db/host"),
    "deleted tree": lambda c: c.__delitem__("/cfg"),
    "leaf in place of the tree": lambda c: c.__setitem__("/cfg", "flat"),
}


@pytest.mark.parametrize("change", CONCURRENT.values(), ids=CONCURRENT.keys())
def test_if_revision_refuses_after_a_change(
    client: EtcdMiddleware,
    etcd_server: Any,
    etcd_prefix: str,
    change: Callable[[EtcdMiddleware], Any],
) -> None:
    client["/cfg"] = {"db": {"host": "h", "port": 5432}, "list": [1, 2]}
    _, revision = client.snapshot("/cfg")
    change(client)  # another writer, after our read
    theirs = raw(etcd_server, etcd_prefix)
    with pytest.raises(EtcdCompareFailed):
        client.set("/cfg", {"mine": True}, if_revision=revision)
    assert raw(etcd_server, etcd_prefix) == theirs  # their tree, untouched


def test_if_revision_compacted(client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str) -> None:
    client["/cfg"] = {"a": 1}
    _, revision = client.snapshot("/cfg")
    client["/elsewhere"] = 1
    client["/elsewhere"] = 2
    compact(etcd_server, client)
    before = raw(etcd_server, etcd_prefix)
    with pytest.raises(EtcdCompacted):
        client.set("/cfg", {"a": 2}, if_revision=revision)
    assert raw(etcd_server, etcd_prefix) == before


def test_if_revision_with_ttl(client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str) -> None:
    _, revision = client.snapshot("/s", None)
    client.set("/s", {"a": 1, "b": 2}, ttl=10, if_revision=revision)
    leases = {lease for _, _, lease in raw(etcd_server, etcd_prefix).values()}
    assert len(leases) == 1
    assert 0 not in leases
    revoke(etcd_server, leases.pop())
    assert "/s" not in client


# -- transform -------------------------------------------------------------------------


def test_transform_loses_no_increment(client: EtcdMiddleware, transport: str) -> None:
    per_thread = 200 if transport == "grpc" else 25  # the gateway is slower: keep time
    client["/counter"] = 0
    returned: list[int] = []
    calls = [0]

    def increment(n: int) -> int:
        calls[0] += 1
        return n + 1

    def work(_: int) -> None:
        for _ in range(per_thread):
            returned.append(client.transform("/counter", increment))

    in_threads(8, work)
    total = 8 * per_thread
    assert same(client["/counter"], total)
    assert sorted(returned) == list(range(1, total + 1))  # each stored value seen once
    assert calls[0] >= total


def test_transform_default_and_missing(client: EtcdMiddleware) -> None:
    seen: list[Any] = []

    def increment(n: int) -> int:
        seen.append(n)
        return n + 1

    with pytest.raises(EtcdKeyNotFound):
        client.transform("/hits", increment)
    assert seen == []
    assert "/hits" not in client
    assert client.transform("/hits", increment, default=0) == 1
    assert client.transform("/hits", increment, default=100) == 2  # default unused
    assert seen == [0, 1]
    assert same(client["/hits"], 2)


def test_transform_returns_what_it_stored_and_may_store_a_tree(client: EtcdMiddleware) -> None:
    client["/doc"] = {"n": 1, "tags": ["a"]}

    def bump(doc: dict[str, Any]) -> dict[str, Any]:
        return {"n": doc["n"] + 1, "tags": [*doc["tags"], "b"], "meta": {"ok": True}}

    result = client.transform("/doc", bump)
    assert same(result, {"n": 2, "tags": ["a", "b"], "meta": {"ok": True}})
    assert same(client["/doc"], result)
    assert same(client.transform("/doc", lambda doc: 0.5), 0.5)  # a tree becomes a leaf
    assert same(client["/doc"], 0.5)


def test_transform_writes_nothing_when_fn_fails(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    client["/doc"] = {"n": 1}
    before = raw(etcd_server, etcd_prefix)
    with pytest.raises(EtcdInvalidTree):
        client.transform("/doc", lambda doc: {"n": math.nan})
    with pytest.raises(ZeroDivisionError):
        client.transform("/doc", lambda doc: doc["n"] / 0)
    assert raw(etcd_server, etcd_prefix) == before


# -- update ------------------------------------------------------------------------------


def test_update_writes_every_path_in_one_txn(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    client["/a"] = {"old": 1, "x": 0}
    client["/untouched"] = "u"
    client.update({"/a": {"x": 1}, "/b": [1, "2"], "/c/d": TREE}, e=None)
    assert same(client["/a"], {"x": 1})
    assert same(client["/b"], [1, "2"])
    assert same(client["/c/d"], TREE)
    assert client["/e"] is None
    held = raw(etcd_server, etcd_prefix)
    assert f"{etcd_prefix}/a/old" not in held
    written = {rev for key, (_, rev, _) in held.items() if not key.endswith("/untouched")}
    assert len(written) == 1  # one txn: one revision
    assert held[f"{etcd_prefix}/untouched"][1] not in written


BAD_UPDATES = {
    "a set": {"/a": 1, "/b": {1, 2}},
    "NaN deep in a tree": {"/a": 1, "/b": {"x": [1, {"y": math.nan}]}},
    "a non-str dict key": {"/a": 1, "/b": {1: "x"}},
    "bad path": {"/a": 1, "/x/../y": 2},
    "the root": {"/a": 1, "/": 2},
}


@pytest.mark.parametrize("bad", BAD_UPDATES.values(), ids=BAD_UPDATES.keys())
def test_update_with_a_bad_value_writes_nothing(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str, bad: dict[str, Any]
) -> None:
    client["/a"] = {"before": True}
    before = raw(etcd_server, etcd_prefix)
    children = client.children("/")
    with pytest.raises(EtcdInvalidTree):
        client.update(bad)
    assert raw(etcd_server, etcd_prefix) == before
    assert client.children("/") == children


def test_update_of_overlapping_paths_writes_one_path_at_a_time(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    client.update([("/a", {"x": 1}), ("/a/y", 2)])  # in order: /a, then /a/y below it
    assert same(client["/a"], {"x": 1, "y": 2})
    held = raw(etcd_server, etcd_prefix)
    assert held[f"{etcd_prefix}/a/x"][1] < held[f"{etcd_prefix}/a/y"][1]  # two writes
    client.update([("/b/y", 2), ("/b", {"x": 1})])  # /b replaces what /b/y wrote
    assert same(client["/b"], {"x": 1})


def test_update_too_large_for_one_txn_writes_one_path_at_a_time(
    small: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    small.update({f"/p{i:02d}": i for i in range(20)})
    assert small.children("/") == [f"p{i:02d}" for i in range(20)]
    assert same([small[f"/p{i:02d}"] for i in range(20)], list(range(20)))
    assert len({rev for _, rev, _ in raw(etcd_server, etcd_prefix).values()}) == 20


def test_update_of_many_paths(client: EtcdMiddleware) -> None:
    paths = {f"/k{i:02d}": i for i in range(70)}
    client.update(paths)
    assert len(client.children("/")) == 70
    assert same(client.snapshot("/")[0], {k[1:]: v for k, v in paths.items()})


def test_update_leaves_no_key_under_a_lease(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    with client.lease(30) as lease:
        client.set("/t", {"a": 1, "b": 2}, lease=lease)
        client.update({"/t": {"a": 1, "b": 3}, "/u": 1})
        assert [lease for _, _, lease in raw(etcd_server, etcd_prefix).values()] == [0, 0, 0]


# -- append --------------------------------------------------------------------------------


def test_append_concurrently_keeps_every_item_in_order(client: EtcdMiddleware) -> None:
    paths: dict[int, list[str]] = {}

    def work(thread: int) -> None:
        paths[thread] = [client.append("/jobs", {"t": thread, "n": n}) for n in range(50)]

    in_threads(8, work)
    items = client["/jobs"]
    assert len(items) == 400
    assert len({(item["t"], item["n"]) for item in items}) == 400
    for thread in range(8):  # each thread's items in its own order
        assert [item["n"] for item in items if item["t"] == thread] == list(range(50))
    returned = sorted(
        (path, thread, n) for thread, ps in paths.items() for n, path in enumerate(ps)
    )
    assert [path for path, _, _ in returned] == [f"/jobs/{POSITION(i)}" for i in range(400)]
    assert [{"t": t, "n": n} for _, t, n in returned] == items  # in the order appends won


@pytest.mark.parametrize("held", [{"a": 1}, {}, 5, "x", None], ids=repr)
def test_append_to_a_dict_or_a_leaf_is_refused(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str, held: Any
) -> None:
    client["/q"] = held
    before = raw(etcd_server, etcd_prefix)
    with pytest.raises(EtcdInvalidTree):
        client.append("/q", "item")
    assert raw(etcd_server, etcd_prefix) == before


def test_append_to_an_empty_or_missing_list_and_a_tree_item(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    client["/q"] = []
    first = client.append("/q", "first")
    assert first == f"/q/{POSITION(0)}"
    item = {"job": {"id": 1, "args": [1, "2", 3.0]}, "tags": []}
    second = client.append("/q", item)
    assert second == f"/q/{POSITION(1)}"
    assert same(client[second], item)
    assert same(client["/q"], ["first", item])
    assert f"{etcd_prefix}/q" not in raw(etcd_server, etcd_prefix)  # the [] marker went

    assert client.append("new/list", [1, [2]]) == f"new/list/{POSITION(0)}"
    assert same(client["/new"], {"list": [[1, [2]]]})


def test_append_with_ttl(client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str) -> None:
    client.append("/q", "kept")
    expiring = client.append("/q", {"a": 1, "b": 2}, ttl=10)
    client.append("/q", "kept too")
    held = raw(etcd_server, etcd_prefix)
    leases = {key: lease for key, (_, _, lease) in held.items()}
    item_leases = {lease for key, lease in leases.items() if key.startswith(etcd_prefix + expiring)}
    assert len(item_leases) == 1
    assert 0 not in item_leases
    assert [lease for key, lease in leases.items() if lease not in item_leases] == [0, 0]
    (lease_id,) = item_leases
    assert lease_ttl(etcd_server, lease_id)[1] == 10
    revoke(etcd_server, lease_id)
    assert same(client["/q"], ["kept", "kept too"])


# -- snapshot(revision=) and rollback ---------------------------------------------------------


def test_snapshot_at_a_revision_and_rollback(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    client["/cfg"] = TREE
    client["/beside"] = 1
    _, good = client.snapshot("/cfg")
    client["/cfg/db/port"] = 6543  # a change
    client["/cfg/new"] = {"x": [1]}  # a new key
    del client["/cfg/names"]  # deleted keys
    client["/beside"] = 2  # not below the path
    now, latest = client.snapshot("/cfg")
    assert latest > good

    old, at = client.snapshot("/cfg", revision=good)
    assert same(old, TREE)
    assert at == good
    assert same(client.snapshot("/cfg", revision=latest)[0], now)
    assert client.snapshot("/nothing", "dflt", revision=good) == ("dflt", good)
    with pytest.raises(EtcdKeyNotFound):
        client.snapshot("/nothing", revision=good)

    written = client.rollback("/cfg", good)
    assert written > latest
    assert same(client["/cfg"], TREE)
    assert same(client["/beside"], 2)
    expected = {
        key for key in raw(etcd_server, etcd_prefix) if key.startswith(etcd_prefix + "/cfg/")
    }
    assert expected == {f"{etcd_prefix}/cfg/{k}" for k in _leaf_keys(TREE)}  # nothing stale
    assert client.snapshot("/cfg")[1] == written


def _leaf_keys(tree: Any) -> set[str]:
    return {key[1:] for key, _ in codec.flatten(codec.encode(tree), "")}


def test_rollback_to_before_the_path_existed_deletes_it(client: EtcdMiddleware) -> None:
    client["/beside"] = 1
    _, before = client.snapshot("/cfg", None)
    client["/cfg"] = {"a": [1, 2]}
    written = client.rollback("/cfg", before)
    assert written > before
    assert "/cfg" not in client
    assert same(client["/beside"], 1)


def test_rollback_of_a_tree_too_large_for_one_txn(small: EtcdMiddleware) -> None:
    small["/big"] = BIG  # a plain write: several txns
    _, revision = small.snapshot("/big")
    small["/big"] = {"other": [1, 2, 3]}
    assert small.rollback("/big", revision) > revision  # a plain replace, not one txn
    assert same(small["/big"], BIG)


def test_snapshot_and_rollback_after_compaction(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str
) -> None:
    client["/cfg"] = {"v": 1}
    _, old = client.snapshot("/cfg")
    client["/cfg"] = {"v": 2}
    client["/cfg"] = {"v": 3}
    kept = compact(etcd_server, client)
    before = raw(etcd_server, etcd_prefix)
    with pytest.raises(EtcdCompacted):
        client.snapshot("/cfg", revision=old)
    with pytest.raises(EtcdCompacted):
        client.rollback("/cfg", old)
    assert raw(etcd_server, etcd_prefix) == before
    assert same(client.snapshot("/cfg", revision=kept)[0], {"v": 3})  # the oldest kept


# -- conditional writes that do not fit one txn ------------------------------------------------

TOO_LARGE: dict[str, Callable[[EtcdMiddleware, int], Any]] = {
    "create": lambda c, rev: c.create("/big", BIG),
    "compare_and_swap": lambda c, rev: c.compare_and_swap("/small", {"a": 1}, BIG),
    "transform": lambda c, rev: c.transform("/small", lambda old: BIG),
    "set(if_revision=)": lambda c, rev: c.set("/small", BIG, if_revision=rev),
    "append": lambda c, rev: c.append("/list", BIG),
}


@pytest.mark.parametrize("write", TOO_LARGE.values(), ids=TOO_LARGE.keys())
def test_conditional_write_too_large_for_one_txn_writes_nothing(
    small: EtcdMiddleware,
    etcd_server: Any,
    etcd_prefix: str,
    write: Callable[[EtcdMiddleware, int], Any],
) -> None:
    small["/small"] = {"a": 1}
    small["/list"] = ["x"]
    _, revision = small.snapshot("/")
    before = raw(etcd_server, etcd_prefix)
    with pytest.raises(EtcdTxnTooLarge, match="one txn") as info:
        write(small, revision)
    assert isinstance(info.value, EtcdInvalidTree)  # what callers caught before
    assert raw(etcd_server, etcd_prefix) == before


def test_only_the_change_must_fit_one_txn(small: EtcdMiddleware) -> None:
    small["/big"] = BIG  # 20 leaves, written in several plain txns
    assert small.transform("/big", lambda t: {**t, "k00": -1})["k00"] == -1  # 1 change
    assert small.compare_and_swap("/big", {**BIG, "k00": -1}, BIG) is True
    assert same(small["/big"], BIG)


# -- v2 ------------------------------------------------------------------------------------------


def test_v2_refuses_what_needs_v3(etcd_server: Any, etcd_prefix: str) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix, api="v2") as v2:
        attempts: list[Callable[[], Any]] = [
            lambda: v2.set("/a", 1, if_revision=1),
            lambda: v2.set("/a", 1, lease=1),
            lambda: v2.snapshot("/a", revision=1),
            lambda: v2.rollback("/a", 1),
            lambda: v2.lease(5),
        ]
        for attempt in attempts:
            with pytest.raises(EtcdUnsupported):
                attempt()
        assert v2.children("/") == []
