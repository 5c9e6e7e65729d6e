"""The primitives on the v2 API (python-etcd), against the real etcd the suite starts.

v2 guards one key per request (``prevExist``, ``prevValue``, ``prevIndex``) and
has node TTLs instead of leases: what one key can do works, what needs a
multi-key transaction raises :class:`EtcdUnsupported` before any write.

Timing: v2 TTLs are whole seconds and etcd removes expired nodes about twice a
second, so the expiry tests use ``ttl=1`` and wait at most 4 s each.
"""

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import etcd
import pytest

from link.etcd import (
    EtcdConnectionFailed,
    EtcdInvalidTree,
    EtcdKeyNotFound,
    EtcdMiddleware,
    EtcdUnsupported,
)
from link.etcd.backends.v2 import V2Backend

THREADS = 8
TREE = {"db": {"host": "h", "port": 5432}, "workers": ["a", {"w": [1, 2]}], "empty": {}}


@pytest.fixture
def client(etcd_server: Any, etcd_prefix: str) -> Iterator[EtcdMiddleware]:
    """A v2 middleware on a fresh prefix."""
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix) as mw:
        yield mw


def _raw(client: EtcdMiddleware) -> etcd.Client:
    """python-etcd's client under the middleware, to look at nodes (TTLs, dirs)."""
    backend = client.backend
    assert isinstance(backend, V2Backend)
    return backend.client


def _ttl(client: EtcdMiddleware, path: str) -> int | None:
    """The TTL etcd reports for the node at ``path`` (None: the node has none)."""
    return _raw(client).read(client.key(path)).ttl  # type: ignore[no-any-return]


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` every 0.05 s for at most ``seconds``; its last answer."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _run_threads(target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


class _Counter:
    """Counts python-etcd requests (every read, write and delete goes through
    ``api_execute``; pipelined tree writes do not)."""

    def __init__(self, client: EtcdMiddleware, monkeypatch: pytest.MonkeyPatch) -> None:
        raw = _raw(client)
        execute = raw.api_execute
        self.calls: list[str] = []

        def counting(path: str, method: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(method)
            return execute(path, method, *args, **kwargs)

        monkeypatch.setattr(raw, "api_execute", counting)

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


# -- ttl ----------------------------------------------------------------------


def test_ttl_leaf_expires(client: EtcdMiddleware) -> None:
    client.set("/leaf", "v", ttl=0.2)  # rounded up to 1 s
    assert client.create("/created", 1, ttl=1)
    item = client.append("/list", "x", ttl=1)
    client["/kept"] = 1
    assert client["/leaf"] == "v"
    assert client["/created"] == 1
    assert client["/list"] == ["x"]
    assert _ttl(client, "/leaf") == 1
    assert _ttl(client, "/created") == 1
    assert _ttl(client, item) == 1
    assert _ttl(client, "/kept") is None
    gone = ("/leaf", "/created", item)
    assert _within(4, lambda: not any(path in client for path in gone))
    assert client["/kept"] == 1


def test_ttl_tree_expires_as_a_whole(client: EtcdMiddleware) -> None:
    client.set("/tree", TREE, ttl=1)
    assert client.create("/created", {"a": [1, 2]}, ttl=1)
    item = client.append("/list", {"x": [1, {"y": 2}]}, ttl=1)
    client.append("/list", "stays")
    assert client["/tree"] == TREE
    # the directory at the path holds the TTL; the leaves and items below carry it too
    assert _ttl(client, "/tree") == 1
    assert _ttl(client, "/tree/db/host") == 1
    assert _ttl(client, "/created") == 1
    first = client.children(f"{item}/x")[0]
    assert _ttl(client, item) == 1
    assert _ttl(client, f"{item}/x/{first}") == 1

    seen = []

    def expired() -> bool:
        value = client.get("/tree")
        seen.append(value)
        return value is None and "/created" not in client and item not in client

    assert _within(4, expired)
    assert all(value in (TREE, None) for value in seen)  # never a partial tree
    assert client["/list"] == ["stays"]
    client["/tree"] = {"a": 1}  # a plain write afterwards has no TTL
    assert _ttl(client, "/tree/a") is None


@pytest.mark.parametrize("ttl", [0, -1, "1", True, float("nan"), float("inf")])
def test_bad_ttl_writes_nothing(client: EtcdMiddleware, ttl: Any) -> None:
    with pytest.raises(EtcdInvalidTree, match="ttl"):
        client.set("/a", 1, ttl=ttl)
    with pytest.raises(EtcdInvalidTree, match="ttl"):
        client.create("/a", {"b": 1}, ttl=ttl)
    with pytest.raises(EtcdInvalidTree, match="ttl"):
        client.append("/l", 1, ttl=ttl)
    assert list(client) == []


# -- create -------------------------------------------------------------------


def test_create_leaf(client: EtcdMiddleware, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter(client, monkeypatch)
    assert client.create("/a", "42") is True
    assert counter.take() == ["PUT"]  # one PUT prevExist=false
    assert client.create("/a", 1) is False
    assert counter.take() == ["PUT"]
    assert client["/a"] == "42"
    client["/d"] = {"x": 1}
    assert client.create("/d", 1) is False  # a directory is something
    _raw(client).write(client.key("/e"), None, dir=True)
    assert client.create("/e", 1) is False  # even an empty one (reads as {})
    assert client["/d"] == {"x": 1}
    assert client["/e"] == {}


def test_create_tree(client: EtcdMiddleware) -> None:
    assert client.create("/t", TREE) is True
    assert client["/t"] == TREE
    assert client.create("/t", {"other": 1}) is False
    assert client.create("/t", 1) is False
    assert client["/t"] == TREE
    client["/leaf"] = 1
    assert client.create("/leaf", {"a": 1}) is False
    assert client["/leaf"] == 1
    client["/above"] = "leaf"  # a leaf at an ancestor goes, as in a replace
    assert client.create("/above/t", [1, 2]) is True
    assert client["/above"] == {"t": [1, 2]}


def test_create_has_one_winner(client: EtcdMiddleware) -> None:
    wins: list[int] = []

    def create(index: int) -> None:
        if client.create("/t", {"by": index, "items": [index, index]}):
            wins.append(index)

    _run_threads(create)
    assert len(wins) == 1
    assert client["/t"] == {"by": wins[0], "items": [wins[0], wins[0]]}


def test_create_bad_input_and_lease(client: EtcdMiddleware) -> None:
    with pytest.raises(EtcdInvalidTree):
        client.create("/t", {"a": {1, 2}})
    with pytest.raises(EtcdUnsupported, match="lease"):
        client.create("/t", 1, lease=7)
    assert "/t" not in client


# -- compare_and_swap ---------------------------------------------------------


def test_compare_and_swap_leaf(client: EtcdMiddleware, monkeypatch: pytest.MonkeyPatch) -> None:
    client["/a"] = 1
    counter = _Counter(client, monkeypatch)
    assert client.compare_and_swap("/a", 1, "one") is True
    assert counter.take() == ["PUT"]  # one PUT prevValue=
    assert client["/a"] == "one"
    assert client.compare_and_swap("/a", 1, 2) is False
    assert client["/a"] == "one"
    assert client.compare_and_swap("/missing", 1, 2) is False
    assert "/missing" not in client
    client["/n"] = 1
    assert client.compare_and_swap("/n", 1.0, 2) is False  # compared as stored
    assert client.compare_and_swap("/n", True, 2) is False
    assert client.compare_and_swap("/n", 1, {}) is True  # {} and [] are leaves
    assert client.compare_and_swap("/n", {}, []) is True
    assert client["/n"] == []
    client["/d"] = {"x": 1}
    assert client.compare_and_swap("/d", 1, 2) is False  # a directory
    client["/e"] = ""  # v2 refuses an empty prevValue: GET, then PUT prevIndex=
    assert client.compare_and_swap("/e", "", "full") is True
    assert client.compare_and_swap("/e", "", "again") is False
    assert client["/e"] == "full"


def test_compare_and_swap_tree_is_unsupported(client: EtcdMiddleware) -> None:
    client["/t"] = {"a": 1}
    with pytest.raises(EtcdUnsupported, match="multi-key transaction"):
        client.compare_and_swap("/t", {"a": 1}, {"a": 2})
    client["/s"] = 1
    with pytest.raises(EtcdUnsupported, match="multi-key transaction"):
        client.compare_and_swap("/s", 1, {"a": 2})
    with pytest.raises(EtcdUnsupported):
        client.compare_and_swap("/s", [1], 2)
    with pytest.raises(EtcdInvalidTree):
        client.compare_and_swap("/s", 1, float("nan"))
    assert client["/t"] == {"a": 1}
    assert client["/s"] == 1


# -- transform ----------------------------------------------------------------


def test_transform_counter_loses_no_update(client: EtcdMiddleware) -> None:
    def increment(_: int) -> None:
        for _ in range(50):
            client.transform("/counter", lambda n: n + 1, default=0)

    _run_threads(increment)
    assert client["/counter"] == THREADS * 50


def test_transform_leaf(client: EtcdMiddleware, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EtcdKeyNotFound):
        client.transform("/x", lambda v: v)
    assert "/x" not in client
    counter = _Counter(client, monkeypatch)
    assert client.transform("/x", lambda v: v + "b", default="") == "b"
    assert counter.take() == ["GET", "PUT"]  # GET, then PUT prevExist=false
    assert client.transform("/x", lambda v: f"{v}!") == "b!"
    assert counter.take() == ["GET", "PUT"]  # GET, then PUT prevIndex=
    assert client.transform("/x", lambda v: 42) == 42
    assert client["/x"] == 42


def test_transform_tree_is_unsupported(client: EtcdMiddleware) -> None:
    client["/t"] = {"a": 1}
    calls: list[Any] = []
    with pytest.raises(EtcdUnsupported, match="multi-key transaction"):
        client.transform("/t", calls.append)
    assert calls == []
    client["/s"] = 1
    with pytest.raises(EtcdUnsupported, match="multi-key transaction"):
        client.transform("/s", lambda v: {"a": v})
    with pytest.raises(EtcdInvalidTree):
        client.transform("/s", lambda v: object())
    assert client["/t"] == {"a": 1}
    assert client["/s"] == 1


# -- append -------------------------------------------------------------------


def test_concurrent_appends_keep_every_item_in_order(client: EtcdMiddleware) -> None:
    paths: dict[int, list[str]] = {}

    def append(index: int) -> None:
        paths[index] = [client.append("/q", f"{index}-{n}") for n in range(25)]

    _run_threads(append)
    every = [path for own in paths.values() for path in own]
    assert len(set(every)) == THREADS * 25
    for own in paths.values():  # each thread's items in its own order
        assert own == sorted(own)
    items = client["/q"]
    assert len(items) == THREADS * 25
    by_path = {path: f"{index}-{n}" for index, own in paths.items() for n, path in enumerate(own)}
    assert items == [by_path[path] for path in sorted(every)]  # in append order
    for index in range(THREADS):
        own_items = [item for item in items if item.startswith(f"{index}-")]
        assert own_items == [f"{index}-{n}" for n in range(25)]


def test_append(client: EtcdMiddleware, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter(client, monkeypatch)
    first = client.append("/l", "a")
    assert counter.take() == ["GET", "POST"]
    assert first.startswith("/l/")
    assert len(first.rsplit("/", 1)[1]) == 20
    second = client.append("/l", {"k": [1, {"z": None}]})
    assert second > first
    assert client["/l"] == ["a", {"k": [1, {"z": None}]}]
    assert client[second] == {"k": [1, {"z": None}]}
    client["/empty"] = []
    client.append("/empty", 1)  # the empty list's marker goes
    assert client["/empty"] == [1]
    client["/w"] = ["x", "y"]  # a list written by a replace appends too
    client.append("/w", "z")
    assert client["/w"] == ["x", "y", "z"]


def test_append_refuses_what_is_not_a_list(client: EtcdMiddleware) -> None:
    client["/leaf"] = 1
    client["/dict"] = {"a": 1}
    raw = _raw(client)  # a directory with a position and a name (another client's)
    raw.write(client.key("/mixed/00000000000000000001"), "1")
    raw.write(client.key("/mixed/b"), "2")
    for path in ("/leaf", "/dict", "/mixed"):
        with pytest.raises(EtcdInvalidTree, match="not a list"):
            client.append(path, 1)
    with pytest.raises(EtcdInvalidTree):
        client.append("/new", {"a": {1}})
    assert client["/leaf"] == 1
    assert client["/dict"] == {"a": 1}
    assert client["/mixed"] == {"00000000000000000001": 1, "b": 2}
    assert "/new" not in client


# -- what v2 cannot do --------------------------------------------------------


def test_v3_only_options_raise_unsupported(client: EtcdMiddleware) -> None:
    client["/a"] = 1
    _, index = client.snapshot("/a")
    with pytest.raises(EtcdUnsupported, match="lease"):
        client.set("/a", 2, lease=5)
    with pytest.raises(EtcdUnsupported, match="if_revision"):
        client.set("/a", 2, if_revision=index)
    with pytest.raises(EtcdUnsupported, match="if_revision"):
        client.set("/a", 2, ttl=5, if_revision=index)
    with pytest.raises(EtcdUnsupported, match="rollback"):
        client.rollback("/a", index)
    with pytest.raises(EtcdUnsupported, match="revision"):
        client.snapshot("/a", revision=index)
    with pytest.raises(EtcdUnsupported):
        client.lease(5)
    assert client["/a"] == 1
    assert _ttl(client, "/a") is None


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create("/a", 1),
        lambda c: c.create("/a", {"b": [1]}),
        lambda c: c.compare_and_swap("/a", 1, 2),
        lambda c: c.transform("/a", lambda v: v, default=0),
        lambda c: c.append("/l", 1),
        lambda c: c.set("/a", {"b": 1}, ttl=5),
    ],
    ids=["create-leaf", "create-tree", "compare_and_swap", "transform", "append", "set-ttl"],
)
def test_no_server_is_a_connection_error(call: Callable[[EtcdMiddleware], Any]) -> None:
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens on it here
    with (
        EtcdMiddleware(endpoints=[dead], api="v2", read_timeout=1) as c,
        pytest.raises(EtcdConnectionFailed) as raised,
    ):
        call(c)
    assert dead in str(raised.value)
    assert not isinstance(raised.value, KeyError)
